"""``[http] trusted_proxies``: behind a reverse proxy every connection comes
from the proxy's address; the clients it names in ``X-Forwarded-For`` get
their own failed-login budgets, session counts and mailbox shares, and the
header is ignored from anyone else (a client cannot pick its own address)."""

import json
import tempfile

import pytest
import pytest_twisted
import treq
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer

from relayrouter import config as cfg
from relayrouter.config import ConfigError
from relayrouter.proxies import TrustedProxies, parse

from ..support import LeftBeforeJoining, connect_ws, start_router

SECRETS = {"RR_PROXY_ALICE": "alice-secret-1", "RR_PROXY_BOB": "bob-secret-1",
           "RR_PROXY_MAILBOX": "mailbox-token-secret-0123456789"}
ADDRESS_REFUSAL = "too many failed authentication attempts from your address"


@pytest.fixture(autouse=True)
def secrets(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@defer.inlineCallbacks
def started(trusted=None):
    http = {"trusted_proxies": trusted} if trusted is not None else {}
    data = {"listeners": [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1"}],
            "http": http,
            "auth_limits": {"burst": 3, "per_minute": 0.001, "address_burst": 3, "address_per_minute": 0.001},
            "realms": [{"name": "realm1",
                        "auth": {"ticket": {"principals": [
                            {"authid": "alice", "role": "user", "secret_env": "RR_PROXY_ALICE"},
                            {"authid": "bob", "role": "user", "secret_env": "RR_PROXY_BOB"}]}},
                        "mailboxes": [{"uri": "mailbox.{authid}", "token_secret_env": "RR_PROXY_MAILBOX",
                                       "max_messages_per_sender": 2}]}]}
    config = cfg.replace(cfg.parse(data), state_dir=tempfile.mkdtemp(prefix="relayrouter-proxy-"))
    return (yield start_router(config))


def via(client: str) -> dict:
    return {"X-Forwarded-For": f"198.51.100.9, {client}"}  # the client's own claim, then what the proxy saw


@defer.inlineCallbacks
def attempt(running, authid, secret, headers):
    try:
        session = yield connect_ws(running, authmethods=["ticket"], authid=authid, ticket=secret,
                                   headers=headers)
    except LeftBeforeJoining as e:
        return e.message
    return session


@defer.inlineCallbacks
def spend_address_budget(running, headers):
    for i in range(4):  # random authids: the address ceiling (3), not one authid's budget
        yield attempt(running, f"nobody-{i}", "wrong", headers)


@pytest_twisted.inlineCallbacks
def test_clients_behind_a_listed_proxy_have_their_own_login_budgets_and_addresses():
    running = yield started(["127.0.0.1"])
    try:
        yield spend_address_budget(running, via("203.0.113.5"))
        refused = yield attempt(running, "alice", SECRETS["RR_PROXY_ALICE"] + "x", via("203.0.113.5"))
        assert refused.startswith(ADDRESS_REFUSAL), refused
        bob = yield attempt(running, "bob", "wrong", via("203.0.113.6"))  # another client: its own budget
        assert bob == "wrong authid or ticket", bob
        alice = yield attempt(running, "alice", SECRETS["RR_PROXY_ALICE"], via("203.0.113.6"))
        assert not isinstance(alice, str), alice
        session = yield alice.call("wamp.session.get", alice.session_id)
        assert session["transport"]["peer"] == "tcp4:203.0.113.6:0"
        alice.leave()
    finally:
        yield running.service.stopService()


@pytest.mark.parametrize("trusted", [None, ["10.0.0.0/8"]], ids=["none", "elsewhere"])
@pytest_twisted.inlineCallbacks
def test_the_header_is_ignored_from_an_address_not_listed(trusted):
    running = yield started(trusted)  # no proxy, or one elsewhere: 127.0.0.1 is a client
    try:
        yield spend_address_budget(running, via("203.0.113.5"))
        refused = yield attempt(running, "bob", "wrong", via("203.0.113.77"))  # claims another address
        assert refused.startswith(ADDRESS_REFUSAL), refused
    finally:
        yield running.service.stopService()


@pytest_twisted.inlineCallbacks
def test_mailbox_http_senders_behind_the_proxy_each_get_their_share():
    running = yield started(["127.0.0.1"])
    try:
        alice = yield connect_ws(running, authmethods=["ticket"], authid="alice", ticket=SECRETS["RR_PROXY_ALICE"])
        endpoint = yield alice.call("relayrouter.mailbox.endpoint", "mailbox.alice")
        url = running.http_url + endpoint["path"]
        codes = {}
        for client in ("203.0.113.5", "203.0.113.6"):
            codes[client] = []
            for i in range(3):
                response = yield treq.post(url, data=b"m%d" % i, headers={"X-Forwarded-For": client})
                codes[client].append(response.code)
                answer = yield response.content()
        assert codes == {"203.0.113.5": [202, 202, 429], "203.0.113.6": [202, 202, 429]}
        assert "HTTP sender 203.0.113.6 holds 2 messages" in json.loads(answer)["message"]
        yield alice.publish("mailbox.alice", "own", options=PublishOptions(acknowledge=True))
        alice.leave()
    finally:
        yield running.service.stopService()


@pytest.mark.parametrize("value, message", [
    ("10.0.0.1", "http.trusted_proxies: must be a list of addresses or networks"),
    (["10.0.0.1", "proxy.example"], "http.trusted_proxies[1]: 'proxy.example' is not an IP address or network"),
    (["0.0.0.0/0"], "http.trusted_proxies[0]: '0.0.0.0/0' would trust every address as a proxy"),
    (["::/0"], "http.trusted_proxies[0]: '::/0' would trust every address as a proxy"),
])
def test_configuration_errors_name_the_key(value, message):
    with pytest.raises(ConfigError) as info:
        cfg.parse({"http": {"trusted_proxies": value}})
    assert message in str(info.value)


@pytest.mark.parametrize("peer, header, client", [
    ("tcp4:127.0.0.1:5000", "203.0.113.5", "tcp4:203.0.113.5:0"),
    ("tcp4:127.0.0.1:5000", "203.0.113.5, 127.0.0.2", "tcp4:203.0.113.5:0"),  # listed hops skipped
    ("tcp4:127.0.0.1:5000", "not-an-address", "tcp4:127.0.0.1:5000"),
    ("tcp4:127.0.0.1:5000", None, "tcp4:127.0.0.1:5000"),
    ("tcp4:192.0.2.1:5000", "203.0.113.5", "tcp4:192.0.2.1:5000"),  # not a listed proxy
    ("tcp6:::1:5000", "2001:db8::7", "tcp6:2001:db8::7:0"),
    ("unix:/run/x.sock", "203.0.113.5", "unix:/run/x.sock"),
])
def test_the_client_peer(peer, header, client):
    proxies = TrustedProxies(parse(["127.0.0.0/8", "::1"], "http.trusted_proxies"))
    assert proxies.client_peer(peer, header) == client
