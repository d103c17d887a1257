"""Micronets connections that have not joined their pair are bounded like a
WAMP listener's: ``limits.hello_timeout`` closes one that sends no
``CONN:HELLO`` (even though it answers pings), and one certificate holds at
most two such connections at once.

The seed proxy (cablelabs/micronets-ws-proxy ``bin/websocket-proxy.py``,
``recv_hello_message``) waits for the HELLO without a deadline, and
``ws_connected`` admits two clients per meetup id before any HELLO; here the
pair table admits its two peers at join, so the connections before it are
bounded on their own. The router is ``twistd relayrouter`` over mTLS with
the seed-shaped certificates of ``test_micronets``; the peers are real TLS
WebSocket clients with client certificates.
"""

import pytest
import pytest_twisted
from twisted.internet import defer

from ..connectors.processes import RouterProcess
from ..support import within
from .test_micronets import CONFIG, connect, fingerprint, hello, paired, seed_shaped_pki

HELLO_TIMEOUT = 2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("micronets-pending")
    certs = seed_shaped_pki(base / "pki")
    config = (CONFIG.replace("PKI", str(base / "pki")).replace("DPP", fingerprint(certs["dpp-client"]))
              + f"\n[limits]\nhello_timeout = {HELLO_TIMEOUT}\n")
    router = RouterProcess(base, config)
    router.start()
    yield {"router": router, "pki": base / "pki", "certs": certs}
    router.stop()


@pytest_twisted.inlineCallbacks
def test_a_connection_that_sends_no_hello_is_closed_at_hello_timeout(world):
    """It answers every ping (1 s apart), so only the deadline can end it; a pair
    that joined before it is untouched by the deadline."""
    manager, gateway = yield paired(world)
    silent = yield connect(world, "manager")
    code, reason = yield within(silent.factory.closed, HELLO_TIMEOUT + 15)
    assert (code, reason) == (1008, f"no CONN:HELLO and join within limits.hello_timeout ({HELLO_TIMEOUT} seconds)")
    gateway.send({"message": {"messageId": 3, "messageType": "EVENT:still", "requiresResponse": False}})
    assert (yield manager.next())["message"]["messageType"] == "EVENT:still"
    for peer in (manager, gateway):
        peer.drop()
        yield peer.closed()


@pytest_twisted.inlineCallbacks
def test_a_certificate_holds_at_most_two_connections_that_have_not_joined(world):
    first = yield connect(world, "manager")
    second = yield connect(world, "manager")
    refused = yield connect(world, "manager")
    assert isinstance(refused, tuple), "a third connection without HELLO was admitted"
    assert "upgrade failed [429]: authid 'manager:8675309:00224dd149bb' already has 2 Micronets connections" \
        in refused[1]
    # Another certificate is not affected; a HELLO frees its connection's place.
    gateway = yield connect(world, "test-client")
    gateway.send(hello("micronets-gw", "gw-1"))
    first.send(hello("micronets-manager", "mm-1"))
    assert (yield gateway.next()) == hello("micronets-manager", "mm-1")
    third = yield connect(world, "manager")
    assert not isinstance(third, tuple), f"refused after one of the two joined: {third}"
    for peer in (first, second, third, gateway):
        peer.drop()
    yield defer.DeferredList([within(p.factory.closed) for p in (first, second, third, gateway)])
