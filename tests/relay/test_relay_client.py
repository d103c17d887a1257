"""The raw-relay client: the seed's access flow, reconnection, and an uplink
that backs up drops frames instead of buffering them without bound."""

import json

import pytest_twisted
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer, endpoints, reactor, task
from twisted.web import resource, server

from relayrouter.relay.client import UPLINK_BUFFER, AccessRefused, Reconnecting, access

from ..support import eventually


class _Stalled(WebSocketServerProtocol):
    """Accepts the connection, then reads nothing more."""

    def onOpen(self):
        self.factory.opened.append(self)
        self.transport.pauseProducing()


class _Access(resource.Resource):
    isLeaf = True

    def __init__(self, ws_url, refuse=False):
        super().__init__()
        self.ws_url, self.refuse, self.posts = ws_url, refuse, 0

    def render_POST(self, request):
        self.posts += 1
        request.setHeader(b"content-type", b"application/json")
        if self.refuse or request.getHeader(b"authorization") != b"the-token":
            request.setResponseCode(401)
            return json.dumps({"error": "x", "message": "bad token"}).encode()
        return json.dumps({"uri": self.ws_url + "?code=abc"}).encode()


@defer.inlineCallbacks
def _site(refuse=False):
    ws = WebSocketServerFactory()
    ws.protocol = _Stalled
    ws.opened = []
    root = resource.Resource()
    root.putChild(b"stream", WebSocketResource(ws))
    port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(server.Site(root))
    base = f"127.0.0.1:{port.getHost().port}"
    access_resource = _Access(f"ws://{base}/stream", refuse)
    root.putChild(b"access", access_resource)
    return port, ws, access_resource, f"http://{base}/access"


@pytest_twisted.inlineCallbacks
def test_a_backed_up_uplink_drops_frames_instead_of_buffering_them():
    port, ws, _, url = yield _site()
    client = Reconnecting(reactor, url, lambda: "the-token", lambda payload, binary: None)
    client.start()
    try:
        yield eventually(lambda: client.connected and ws.opened)
        frame = b"\x47" * 65536
        sent = dropped = 0
        for _ in range(2000):  # 128 MB offered to a peer that reads nothing
            if client.send(frame, True):
                sent += 1
            else:
                dropped += 1
            if dropped > 50:
                break
            yield task.deferLater(reactor, 0, lambda: None)  # let the reactor write
        assert dropped > 50
        transport = client.proto.transport
        waiting = len(transport.dataBuffer) + sum(map(len, transport._tempDataBuffer))
        assert waiting <= UPLINK_BUFFER + 2 * 65600, waiting
    finally:
        client.stop()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_refused_token_is_retried_slowly():
    port, _, access_resource, url = yield _site(refuse=True)
    try:
        try:
            yield access(url, "wrong")
        except AccessRefused as e:
            assert e.code == 401 and "bad token" in str(e)
        else:
            raise AssertionError("the access point should refuse")
        client = Reconnecting(reactor, url, lambda: "the-token", lambda p, b: None, initial=0.05, maximum=30)
        client.start()
        yield eventually(lambda: access_resource.posts >= 2)
        timer = client._timer
        assert timer is not None and timer.getTime() - reactor.seconds() > 20  # waits the maximum
        client.stop()
    finally:
        yield port.stopListening()
