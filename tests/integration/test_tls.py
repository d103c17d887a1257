"""TLS listeners with client certificates, certificates from `relayrouter pki`."""

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor

from ..security_support import Pki, start, stop
from ..support import connect_rawsocket, connect_ws, within

TLS_RULE = {"subject_cn": "(?P<realm>[^:]+):(?P<authid>.+)", "role": "device"}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def tls_router(certs, tmp_path, mode="required"):
    tls = certs.listener_tls(mode)
    data = {
        "listeners": [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1", "tls": tls},
                      {"type": "rawsocket", "endpoint": "tcp:0:interface=127.0.0.1", "tls": tls}],
        "realms": [{"name": "tenant", "auth": {"tls": {"rules": [TLS_RULE]}, "anonymous": {}}}],
    }
    return pytest_twisted.blockon(start(data, tmp_path / "state"))


@pytest.fixture
def required(certs, tmp_path):
    running = tls_router(certs, tmp_path)
    yield running
    pytest_twisted.blockon(stop(running))


@pytest.fixture
def optional(certs, tmp_path):
    running = tls_router(certs, tmp_path, "optional")
    yield running
    pytest_twisted.blockon(stop(running))


@pytest.mark.parametrize("connect", [connect_ws, connect_rawsocket])
@pytest_twisted.inlineCallbacks
def test_mtls_maps_the_certificate_to_realm_authid_and_role(required, certs, connect):
    client = yield connect(required, realm="tenant", authmethods=["tls"], tls=certs.client_options())
    assert (client.details.realm, client.details.authid, client.details.authrole, client.details.authmethod) \
        == ("tenant", "device-7", "device", "tls")
    [session] = required.router.realms["tenant"].sessions.values()
    assert session.transport.is_secure and session.transport.peer_cert["subject"]["cn"] == "tenant:device-7"
    assert len(session.transport.channel_id["tls-unique"]) == 32


class _Probe(protocol.Protocol):
    """Says something once TLS is up, and records whether anything came back."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.received = b""
        self.lost = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.lost.callback(reason.getErrorMessage())


@defer.inlineCallbacks
def _never_joins(running, connect, options):
    """The TLS handshake fails: the server never answers the HTTP request or RawSocket handshake."""
    port = running.ws_port if connect is connect_ws else running.rawsocket_port
    payload = (b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n" if connect is connect_ws
               else bytes([0x7F, 0xF1, 0, 0]))
    probe = _Probe(payload)
    endpoint = endpoints.wrapClientTLS(options, endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    yield endpoint.connect(protocol.Factory.forProtocol(lambda: probe))
    reason = yield within(probe.lost)
    assert probe.received == b"", probe.received[:100]
    return reason


@pytest.mark.parametrize("who, alert", [
    ("stranger", "unknown ca"),  # signed by another CA
    ("expired", "certificate expired"),
    (None, "certificate required"),  # none where one is required
])
@pytest.mark.parametrize("connect", [connect_ws, connect_rawsocket])
@pytest_twisted.inlineCallbacks
def test_refused_client_certificates(required, certs, connect, who, alert):
    reason = yield _never_joins(required, connect, certs.client_options(who))
    assert alert in reason
    assert list(required.router.sessions()) == []


@pytest_twisted.inlineCallbacks
def test_optional_client_certificate(optional, certs):
    anonymous = yield connect_ws(optional, realm="tenant", tls=certs.client_options(None))
    assert anonymous.details.authmethod == "anonymous"
    device = yield connect_ws(optional, realm="tenant", authmethods=["tls"], tls=certs.client_options())
    assert device.details.authid == "device-7"
    yield _never_joins(optional, connect_ws, certs.client_options("stranger"))


@pytest_twisted.inlineCallbacks
def test_tls_method_without_a_certificate_is_refused(optional, certs):
    from ..support import LeftBeforeJoining

    with pytest.raises(LeftBeforeJoining) as info:
        yield connect_ws(optional, realm="tenant", authmethods=["tls"], tls=certs.client_options(None))
    assert info.value.reason == "wamp.error.authentication_failed"
    assert "no TLS client certificate" in info.value.message
