"""relay.trusted_proxies: X-Forwarded-For names the client only from a listed proxy."""

import pytest

from relayrouter.proxies import client_host, parse

TRUSTED = parse(["127.0.0.1", "10.0.0.0/8", "::1"], "relay.trusted_proxies")


@pytest.mark.parametrize("peer, forwarded, client", [
    ("127.0.0.1", "203.0.113.7", "203.0.113.7"),                  # from a listed proxy
    ("192.0.2.1", "203.0.113.7", "192.0.2.1"),                    # from anyone else: ignored
    ("127.0.0.1", None, "127.0.0.1"),                             # no header
    ("127.0.0.1", "198.51.100.9, 203.0.113.7, 10.1.2.3", "203.0.113.7"),  # rightmost not a proxy
    ("127.0.0.1", "10.1.1.1, 10.2.2.2", "10.1.1.1"),              # all proxies: the first
    ("127.0.0.1", "not-an-address", "127.0.0.1"),                 # garbage: the peer
    ("::1", "2001:db8::7", "2001:db8::7"),
])
def test_the_client_behind_proxies(peer, forwarded, client):
    assert client_host(peer, forwarded, TRUSTED) == client


def test_without_trusted_proxies_the_header_is_never_read():
    assert client_host("127.0.0.1", "203.0.113.7", ()) == "127.0.0.1"
