"""Helpers for integration tests: an in-process router on loopback port 0,
Autobahn-Python clients, and a raw WAMP client for sending anything at all."""

import json
import tempfile

import txaio

txaio.use_twisted()

from autobahn.twisted.rawsocket import WampRawSocketClientFactory  # noqa: E402
from autobahn.twisted.wamp import ApplicationSession  # noqa: E402
from autobahn.twisted.websocket import (  # noqa: E402
    WampWebSocketClientFactory,
    WebSocketClientFactory,
    WebSocketClientProtocol,
)
from autobahn.wamp import auth  # noqa: E402
from autobahn.wamp import serializer as ser  # noqa: E402
from autobahn.wamp.types import ComponentConfig  # noqa: E402
from twisted.internet import defer, endpoints, reactor  # noqa: E402
from twisted.internet.protocol import Protocol  # noqa: E402

from relayrouter import config as cfg  # noqa: E402
from relayrouter.service import RouterService  # noqa: E402

TIMEOUT = 10

SERIALIZERS = {
    "json": ser.JsonSerializer,
    "msgpack": ser.MsgPackSerializer,
    "cbor": ser.CBORSerializer,
}


class RunningRouter:
    def __init__(self, service: RouterService, ports) -> None:
        self.service = service
        self.router = service.router
        self.ws_port = None
        self.rawsocket_port = None
        for listening, port in zip(service.listeners, ports):
            if listening.listener.kind == "websocket" and self.ws_port is None:
                self.ws_port = port.getHost().port
            elif listening.listener.kind == "rawsocket" and self.rawsocket_port is None:
                self.rawsocket_port = port.getHost().port

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ws_port}"

    def realm(self, name: str = "realm1"):
        return self.router.realms[name]


@defer.inlineCallbacks
def start_router(config: cfg.Config | None = None):
    config = config or cfg.Config(listeners=(
        cfg.Listener("websocket", "tcp:0:interface=127.0.0.1"),
        cfg.Listener("rawsocket", "tcp:0:interface=127.0.0.1"),
    ))
    if config.state_dir == cfg.Config().state_dir:
        config = cfg.replace(config, state_dir=tempfile.mkdtemp(prefix="relayrouter-test-"))
    service = RouterService(config.with_defaults(), reactor)
    service.startService()
    ports = yield service.when_listening()
    return RunningRouter(service, ports)


class Client(ApplicationSession):
    """An Autobahn session that reports when it joined and left."""

    def __init__(self, config=None) -> None:
        super().__init__(config)
        self.joined = defer.Deferred()
        self.left = defer.Deferred()
        self.disconnected = defer.Deferred()
        self.details = None

    def onConnect(self) -> None:
        extra = self.config.extra or {}
        authextra = dict(extra.get("authextra") or {})
        if extra.get("key") is not None:
            authextra.setdefault("pubkey", extra["key"].public_key())
        self.join(self.config.realm, authmethods=extra.get("authmethods"),
                  authid=extra.get("authid"), authextra=authextra or None)

    def onChallenge(self, challenge):
        """Answers ticket (extra ticket=), wampcra (secret=) and cryptosign (key=) challenges."""
        extra = self.config.extra or {}
        if challenge.method in ("ticket", "jwt"):
            return extra["ticket"]
        if challenge.method == "wampcra":
            key = extra["secret"]
            if "salt" in challenge.extra:
                key = auth.derive_key(key, challenge.extra["salt"], challenge.extra.get("iterations"),
                                      challenge.extra.get("keylen"))
            return auth.compute_wcs(key, challenge.extra["challenge"]).decode("ascii")
        if challenge.method == "cryptosign":
            return extra["key"].sign_challenge(challenge)
        raise ValueError(f"test client cannot answer a {challenge.method} challenge")

    def onJoin(self, details) -> None:
        self.details = details
        self.joined.callback(self)

    def onLeave(self, details) -> None:
        if not self.joined.called:
            self.joined.errback(LeftBeforeJoining(details))
        if not self.left.called:
            self.left.callback(details)
        self.disconnect()

    def onDisconnect(self) -> None:
        if not self.joined.called:
            self.joined.errback(ConnectionClosed("disconnected before joining"))
        if not self.disconnected.called:
            self.disconnected.callback(None)


class LeftBeforeJoining(Exception):
    def __init__(self, details) -> None:
        super().__init__(f"{details.reason}: {details.message}")
        self.reason = details.reason
        self.message = details.message


@defer.inlineCallbacks
def connect_ws(running: RunningRouter, serializer: str = "json", realm: str = "realm1",
               url: str | None = None, tls=None, headers=None, **extra):
    """A joined Autobahn session; ``tls``: client TLS options (wss), ``url``: e.g. with ?ticket=."""
    session = Client(ComponentConfig(realm, extra))
    url = url or (running.ws_url.replace("ws://", "wss://") if tls is not None else running.ws_url)
    factory = WampWebSocketClientFactory(lambda: session, url=url, headers=headers,
                                         serializers=[SERIALIZERS[serializer]()])
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", running.ws_port)
    if tls is not None:
        endpoint = endpoints.wrapClientTLS(tls, endpoint)
    yield endpoint.connect(factory)
    yield _within(session.joined)
    return session


@defer.inlineCallbacks
def connect_rawsocket(running: RunningRouter, serializer: str = "json", realm: str = "realm1",
                      tls=None, **extra):
    session = Client(ComponentConfig(realm, extra))
    factory = WampRawSocketClientFactory(lambda: session, serializer=SERIALIZERS[serializer]())
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", running.rawsocket_port)
    if tls is not None:
        endpoint = endpoints.wrapClientTLS(tls, endpoint)
    yield endpoint.connect(factory)
    yield _within(session.joined)
    return session


def _within(d: defer.Deferred, seconds: float = TIMEOUT) -> defer.Deferred:
    return d.addTimeout(seconds, reactor)


def within(d: defer.Deferred, seconds: float = TIMEOUT) -> defer.Deferred:
    return _within(d, seconds)


# ------------------------------------------------------------ raw client


class RawProtocol(WebSocketClientProtocol):
    """Sends whatever the test says; records every message and the close."""

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onPing(self, payload) -> None:
        self.factory.pings += 1  # then answered, as Autobahn does
        super().onPing(payload)

    def onMessage(self, payload, isBinary) -> None:
        factory = self.factory
        message = json.loads(payload) if not isBinary else payload
        if factory.waiting:
            factory.waiting.pop(0).callback(message)
        else:
            factory.inbox.append(message)

    def onClose(self, wasClean, code, reason) -> None:
        self.factory.close_info = (wasClean, code, reason)
        if not self.factory.closed.called:
            self.factory.closed.callback((code, reason))
        for waiting in self.factory.waiting:
            waiting.errback(ConnectionClosed(code, reason))
        self.factory.waiting = []


class ConnectionClosed(Exception):
    pass


class RawClient:
    """A WAMP-over-WebSocket JSON client with no protocol logic at all."""

    def __init__(self, factory, protocol) -> None:
        self.factory = factory
        self.protocol = protocol

    def send(self, raw) -> None:
        self.protocol.sendMessage(json.dumps(raw).encode())

    def send_bytes(self, payload: bytes, binary: bool = False) -> None:
        self.protocol.sendMessage(payload, isBinary=binary)

    def next(self) -> defer.Deferred:
        if self.factory.inbox:
            return defer.succeed(self.factory.inbox.pop(0))
        if self.factory.closed.called:
            return defer.fail(ConnectionClosed())
        d = defer.Deferred()
        self.factory.waiting.append(d)
        return _within(d)

    def closed(self) -> defer.Deferred:
        return _within(self.factory.closed)

    def drop(self) -> None:
        self.protocol.dropConnection(abort=True)

    @defer.inlineCallbacks
    def hello(self, realm: str = "realm1", details=None):
        self.send([1, realm, details or {"roles": {"subscriber": {}, "publisher": {},
                                                     "caller": {}, "callee": {}}}])
        welcome = yield self.next()
        return welcome


@defer.inlineCallbacks
def connect_raw(running: RunningRouter, protocol: str = "wamp.2.json"):
    factory = WebSocketClientFactory(running.ws_url, protocols=[protocol])
    factory.protocol = RawProtocol
    factory.opened = defer.Deferred()
    factory.closed = defer.Deferred()
    factory.inbox = []
    factory.pings = 0
    factory.waiting = []
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", running.ws_port)
    yield endpoint.connect(factory)
    protocol_instance = yield _within(factory.opened)
    return RawClient(factory, protocol_instance)


@defer.inlineCallbacks
def eventually(predicate, seconds: float = TIMEOUT, step: float = 0.01):
    """Wait, turn by turn of the reactor, until the router has caught up with an
    event it learns about asynchronously (e.g. a peer's TCP reset)."""
    from twisted.internet import task

    deadline = reactor.seconds() + seconds
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"condition not reached within {seconds}s")
        yield task.deferLater(reactor, step, lambda: None)


# ------------------------------------------------------ raw TCP clients


class RawTcp(Protocol):
    """A TCP client that sends bytes as told and records what comes back,
    with RawSocket framing when asked (``rawsocket`` = serializer id)."""

    def __init__(self, rawsocket: int | None = None, answer_pings: bool = True) -> None:
        self.rawsocket = rawsocket
        self.answer_pings = answer_pings
        self.received = b""
        self.frames: list[tuple[int, bytes]] = []  # (frame type, payload) after the handshake
        self.handshake: bytes | None = None
        self.lost = defer.Deferred()
        self._waiting: list[defer.Deferred] = []

    def connectionMade(self) -> None:
        if self.rawsocket is not None:
            # magic, max length 2**24 and the serializer, reserved
            self.transport.write(bytes((0x7F, 0xF0 | self.rawsocket, 0, 0)))

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.rawsocket is None:
            return
        if self.handshake is None:
            if len(self.received) < 4:
                return
            self.handshake, self.received = self.received[:4], self.received[4:]
        while len(self.received) >= 4:
            kind = self.received[0] & 0x07
            length = int.from_bytes(self.received[1:4], "big")
            if len(self.received) < 4 + length:
                break
            payload, self.received = self.received[4:4 + length], self.received[4 + length:]
            if kind == 1 and self.answer_pings:
                self.send_frame(payload, kind=2)
            self.frames.append((kind, payload))
            self._wake()

    def connectionLost(self, reason) -> None:
        self.lost_reason = reason
        self.lost.callback(None)
        self._wake()

    def _wake(self) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def send_frame(self, payload: bytes, kind: int = 0) -> None:
        self.transport.write(bytes((kind,)) + len(payload).to_bytes(3, "big") + payload)

    def send_json(self, raw) -> None:
        self.send_frame(json.dumps(raw).encode())

    @defer.inlineCallbacks
    def next_message(self, seconds: float = TIMEOUT):
        """The next regular RawSocket frame, decoded as JSON."""
        deadline = reactor.seconds() + seconds
        while True:
            for i, (kind, payload) in enumerate(self.frames):
                if kind == 0:
                    del self.frames[i]
                    return json.loads(payload)
            if self.lost.called:
                raise ConnectionClosed("connection lost")
            if reactor.seconds() > deadline:
                raise AssertionError("no message in time")
            d = defer.Deferred()
            self._waiting.append(d)
            yield _within(d, max(0.01, deadline - reactor.seconds()))


@defer.inlineCallbacks
def connect_tcp(port: int, rawsocket: int | None = None, answer_pings: bool = True):
    protocol = RawTcp(rawsocket, answer_pings)
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    yield endpoints.connectProtocol(endpoint, protocol)
    return protocol


@defer.inlineCallbacks
def rawsocket_session(running: RunningRouter, realm: str = "realm1", answer_pings: bool = True):
    """A joined JSON RawSocket session with no protocol logic; returns (client, WELCOME)."""
    client = yield connect_tcp(running.rawsocket_port, rawsocket=1, answer_pings=answer_pings)
    client.send_json([1, realm, {"roles": {"subscriber": {}, "publisher": {}, "caller": {}, "callee": {}}}])
    welcome = yield client.next_message()
    return client, welcome


def rss_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


# ------------------------------------------------- the router, from outside


class MetaView:
    """What the router says about a realm through the WAMP meta API, asked by a
    session of its own (left out of what it reports).  Tests assert on this
    rather than on the router's internals wherever the fact is visible here."""

    def __init__(self, client) -> None:
        self._client = client

    @defer.inlineCallbacks
    def session_ids(self):
        ids = yield self._client.call("wamp.session.list")
        return sorted(set(ids) - {self._client.details.session})

    @defer.inlineCallbacks
    def session(self, session_id):
        details = yield self._client.call("wamp.session.get", session_id)
        return details

    @defer.inlineCallbacks
    def subscriptions(self):
        """[(match, uri)] of every subscription of the realm."""
        listed = yield self._client.call("wamp.subscription.list")
        found = []
        for ids in listed.values():
            for sid in ids:
                details = yield self._client.call("wamp.subscription.get", sid)
                found.append((details["match"], details["uri"]))
        return sorted(found)

    @defer.inlineCallbacks
    def registrations(self):
        """[(match, uri)] of every registration of the realm."""
        listed = yield self._client.call("wamp.registration.list")
        found = []
        for ids in listed.values():
            for rid in ids:
                details = yield self._client.call("wamp.registration.get", rid)
                found.append((details["match"], details["uri"]))
        return sorted(found)

    @defer.inlineCallbacks
    def callees(self, procedure: str):
        registration = yield self._client.call("wamp.registration.lookup", procedure)
        if registration is None:
            return []
        callees = yield self._client.call("wamp.registration.list_callees", registration)
        return sorted(callees)

    @defer.inlineCallbacks
    def until(self, ask, check, seconds: float = TIMEOUT):
        """Ask (``ask`` is one of the methods above, bound) until ``check(answer)``."""
        from twisted.internet import task

        deadline = reactor.seconds() + seconds
        while True:
            answer = yield ask()
            if check(answer):
                return answer
            if reactor.seconds() > deadline:
                raise AssertionError(f"the router still says {answer!r} after {seconds}s")
            yield task.deferLater(reactor, 0.01, lambda: None)

    def leave(self):
        self._client.leave()
        return within(self._client.left)


@defer.inlineCallbacks
def meta_view(running: RunningRouter, realm: str = "realm1", **extra):
    client = yield connect_ws(running, realm=realm, **extra)
    return MetaView(client)
