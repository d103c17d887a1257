"""`Origin: null` (a page opened from a file) on the WebSocket upgrade: admitted
by "*", and by an explicit list only when it names "null".  The status line of
the upgrade answer is read as a browser would see it; a WAMP session then
joins with that Origin to show the upgrade really led somewhere."""

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor

from relayrouter.config import ConfigError, parse
from relayrouter.transport.origins import OriginPolicy

from ..security_support import start, stop
from ..support import connect_ws, within

APP = "https://app.example.com"


class _Upgrade(protocol.Protocol):
    """Sends one WebSocket upgrade request; ``status`` fires with the answer's status line."""

    def __init__(self, origin: str | None) -> None:
        self.origin = origin
        self.status = defer.Deferred()
        self.buffer = b""

    def connectionMade(self) -> None:
        lines = ["GET /ws HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
                 "Sec-WebSocket-Protocol: wamp.2.json"]
        if self.origin is not None:
            lines.append(f"Origin: {self.origin}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if b"\r\n" in self.buffer and not self.status.called:
            self.status.callback(self.buffer.split(b"\r\n", 1)[0].decode())
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        if not self.status.called:
            self.status.errback(reason)


@defer.inlineCallbacks
def upgrade_status(running, origin: str | None) -> str:
    client = _Upgrade(origin)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", running.ws_port)
    yield endpoint.connect(protocol.Factory.forProtocol(lambda: client))
    status = yield within(client.status)
    return status


def router_with(origins):
    data = {"realms": [{"name": "realm1"}]}
    if origins is not None:
        data["http"] = {"allowed_origins": origins}
    return pytest_twisted.blockon(start(data))


@pytest.fixture
def running(request):
    router = router_with(request.param)
    yield router
    pytest_twisted.blockon(stop(router))


@pytest.mark.parametrize("running", [None, ["*"]], indirect=True, ids=["default", "star"])
@pytest_twisted.inlineCallbacks
def test_star_admits_a_page_opened_from_a_file(running):
    for origin in ("null", "file://", APP, None):
        status = yield upgrade_status(running, origin)
        assert status.startswith("HTTP/1.1 101 "), (origin, status)
    client = yield connect_ws(running, headers={"Origin": "null"})
    assert client.details.realm == "realm1"


@pytest.mark.parametrize("running", [[APP]], indirect=True)
@pytest_twisted.inlineCallbacks
def test_an_explicit_list_without_null_refuses_it_with_403(running):
    for origin in ("null", "NULL", "file://", "file:///home/u/page.html", "https://evil.example"):
        status = yield upgrade_status(running, origin)
        assert status == f"HTTP/1.1 403 origin {origin!r} not allowed (http.allowed_origins)", (origin, status)
    for origin in (APP, APP + ":443", None):
        status = yield upgrade_status(running, origin)
        assert status.startswith("HTTP/1.1 101 "), (origin, status)


@pytest.mark.parametrize("running", [[APP, "null"]], indirect=True)
@pytest_twisted.inlineCallbacks
def test_an_explicit_list_naming_null_admits_it_and_nothing_more(running):
    for origin in ("null", "file://", APP):
        status = yield upgrade_status(running, origin)
        assert status.startswith("HTTP/1.1 101 "), (origin, status)
    status = yield upgrade_status(running, "https://evil.example")
    assert status == "HTTP/1.1 403 origin 'https://evil.example' not allowed (http.allowed_origins)"
    client = yield connect_ws(running, headers={"Origin": "null"})
    assert client.details.realm == "realm1"


@pytest.mark.parametrize("allowed, origin, admitted", [
    (("*",), "null", True), (("*",), "file://", True),
    ((APP,), "null", False), ((APP,), " Null ", False), ((APP,), "file:///tmp/x.html", False),
    ((APP, "null"), "null", True), ((APP, "null"), "file:///tmp/x.html", True),
    ((APP, "null"), "https://evil.example", False), (("null",), APP, False),
    (("null",), None, True),
])
def test_origin_policy(allowed, origin, admitted):
    # Chromium sends "null" for a file:// page; some older browsers sent "file://".
    assert OriginPolicy(allowed).allows(origin) is admitted


def test_null_is_a_valid_allowed_origin_and_lookalikes_are_not():
    assert parse({"http": {"allowed_origins": ["null", APP]}}).security.http.allowed_origins == ("null", APP)
    with pytest.raises(ConfigError, match=r"http.allowed_origins: 'nul' is not an origin.*\"null\""):
        parse({"http": {"allowed_origins": ["nul"]}})


@pytest.mark.parametrize("origins, code", [(None, 204), ([APP, "null"], 204), ([APP], 403)])
@pytest_twisted.inlineCallbacks
def test_the_ticket_endpoint_answers_a_file_page_the_same_way(monkeypatch, tmp_path, origins, code):
    """A page opened from a file fetching POST /ticket: preflight with Origin: null."""
    from ..security_support import HS_SECRET, http

    monkeypatch.setenv("JWT_SECRET", HS_SECRET)
    data = {"realms": [{"name": "realm1", "auth": {
        "jwt": {"algorithms": ["HS256"], "authrole": "device", "keys": [{"secret_env": "JWT_SECRET"}]},
        "one_time_tickets": {"lifetime": 30}}}]}
    if origins is not None:
        data["http"] = {"allowed_origins": origins}
    running = yield start(data, tmp_path / "state")
    try:
        status, headers, _ = yield http("OPTIONS", f"{running.http_url}/ticket", headers={"Origin": "null"})
        assert status == code
        allowed = headers.getRawHeaders("access-control-allow-origin")
        assert allowed == (["null"] if code == 204 else None)
    finally:
        yield stop(running)
