"""TCP over the router: one stream per client connection, flow-controlled both ways.

Theory of operation
-------------------
The host side (next to sshd) keeps a WAMP session and registers, for its
tunnel ``NAME``::

    tunnel.NAME.open()            progressive: first {"stream": id}, then chunks (bytes),
                                  final result {"closed": reason}; cancel = close
    tunnel.NAME.send(id, chunk)   answered once the chunk is written to the target
    tunnel.NAME.ack(id, n)        the client wrote n more bytes of ours to its socket
    tunnel.NAME.close(id)         the client's side ended

The client side calls ``open`` for each local connection (a TCP listener,
or stdin/stdout for ssh's ProxyCommand).

Flow control, so that a slow side never makes anyone buffer without bound:
target -> client, the host sends at most ``window`` bytes the client has not
acknowledged, then stops reading the target until acks come; client -> target,
the client keeps at most ``window`` bytes of ``send`` calls unanswered, then
stops reading its local socket; the host answers a ``send`` only once its
bytes went to the target's socket (and not while that socket is paused).  So
the router holds at most about ``window`` bytes per stream and direction.

Server speaks first: the host holds the client's bytes (unanswered, so the
window still applies) until the target has sent something, the order SSH's
identification exchange needs through a relay.

Who may connect is the router's business: role rules on ``tunnel.NAME.``
(e.g. ``scopes = {ssh = ["call"]}`` for clients, ``register`` for the host).
"""

import itertools

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, RegisterOptions
from twisted.internet import defer, protocol
from twisted.logger import Logger

log = Logger(namespace="relayrouter.tunnel")

DEFAULT_WINDOW = 256 * 1024
CHUNK = 64 * 1024
NO_SUCH_STREAM = "relayrouter.tunnel.no_such_stream"


def uris(name: str) -> dict:
    return {op: f"tunnel.{name}.{op}" for op in ("open", "send", "ack", "close")}


# ------------------------------------------------------------------ host side

class _Target(protocol.Protocol):
    """The host's connection to the target (sshd) for one stream."""

    def connectionMade(self) -> None:  # noqa: N802
        self.stream.target_connected(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.stream.from_target(data)

    def connectionLost(self, reason) -> None:  # noqa: N802
        self.stream.target_lost(reason.getErrorMessage())


class HostStream:
    def __init__(self, host: "TunnelHost", stream_id: int, progress, done: defer.Deferred) -> None:
        self.host = host
        self.id = stream_id
        self.progress = progress  # sends one progressive result
        self.done = done  # the open call's final answer
        self.target = None
        self.spoke = False  # the target has sent something
        self.unacked = 0  # bytes sent to the client, not acknowledged
        self.paused = False  # we stopped reading the target
        self.held: list = []  # (chunk, Deferred) from the client, not yet written
        self.closed = False

    def target_connected(self, proto) -> None:
        self.target = proto
        proto.transport.registerProducer(self, True)

    def from_target(self, data: bytes) -> None:
        self.spoke = True
        for start in range(0, len(data), CHUNK):
            piece = data[start:start + CHUNK]
            self.progress(piece)
            self.unacked += len(piece)
        if self.unacked >= self.host.window and not self.paused:
            self.paused = True
            self.target.transport.pauseProducing()
        self._flush()

    def to_target(self, chunk: bytes) -> defer.Deferred:
        d = defer.Deferred()
        self.held.append((chunk, d))
        self._flush()
        return d

    def ack(self, n: int) -> None:
        self.unacked = max(0, self.unacked - n)
        if self.paused and self.unacked < self.host.window and self.target is not None:
            self.paused = False
            self.target.transport.resumeProducing()

    def _flush(self) -> None:
        # Held until the server speaks first, and while the target's socket is full.
        if not self.spoke or self.target is None or self._target_full:
            return
        while self.held and not self._target_full:
            chunk, d = self.held.pop(0)
            self.target.transport.write(chunk)
            d.callback(None)

    _target_full = False

    # IPushProducer for the target transport: it tells us when its buffer is full.
    def pauseProducing(self) -> None:  # noqa: N802
        self._target_full = True

    def resumeProducing(self) -> None:  # noqa: N802
        self._target_full = False
        self._flush()

    def stopProducing(self) -> None:  # noqa: N802
        self._target_full = True

    def target_lost(self, why: str) -> None:
        self.close(f"target closed: {why}")

    def close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.host.streams.pop(self.id, None)
        for _, d in self.held:
            d.errback(ApplicationError(NO_SUCH_STREAM, "the stream is closed"))
        self.held = []
        if self.target is not None and self.target.transport is not None:
            _hang_up(self.target.transport)
        if not self.done.called:
            self.done.callback({"closed": why})


class TunnelHost:
    """Registers ``tunnel.NAME.*`` on a session and connects each stream to ``target``."""

    def __init__(self, reactor, name: str, target: tuple[str, int], window: int = DEFAULT_WINDOW) -> None:
        self.reactor = reactor
        self.name = name
        self.target = target
        self.window = window
        self.streams: dict[int, HostStream] = {}
        self._ids = itertools.count(1)

    @defer.inlineCallbacks
    def on_join(self, session, details):
        u = uris(self.name)
        yield session.register(self._open, u["open"], RegisterOptions(details_arg="details"))
        yield session.register(self._send, u["send"])
        yield session.register(self._ack, u["ack"])
        yield session.register(self._close, u["close"])
        log.info("Tunnel {name} ready: streams go to {host}:{port}", name=self.name,
                 host=self.target[0], port=self.target[1])

    def on_leave(self, reason) -> None:
        for stream in list(self.streams.values()):
            stream.close("the host's router session ended")

    def _open(self, details=None):
        if details is None or details.progress is None:
            raise ApplicationError("wamp.error.invalid_argument",
                                   "call tunnel open with receive_progress (progressive results)")
        from twisted.internet import endpoints

        done = defer.Deferred(lambda d: stream.close("cancelled by the client"))
        stream = HostStream(self, next(self._ids), details.progress, done)
        self.streams[stream.id] = stream
        details.progress({"stream": stream.id})
        factory = protocol.Factory.forProtocol(_Target)
        factory.buildProtocol = lambda addr: _target_for(stream)
        endpoint = endpoints.TCP4ClientEndpoint(self.reactor, *self.target, timeout=10)
        endpoint.connect(factory).addErrback(lambda f: stream.close(f"cannot reach the target: {f.getErrorMessage()}"))
        return done

    def _stream(self, stream_id) -> HostStream:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise ApplicationError(NO_SUCH_STREAM, f"no open stream {stream_id}")
        return stream

    def _send(self, stream_id, chunk):
        if not isinstance(chunk, bytes):
            raise ApplicationError("wamp.error.invalid_argument", "send takes (stream, bytes)")
        return self._stream(stream_id).to_target(chunk)

    def _ack(self, stream_id, n):
        stream = self.streams.get(stream_id)
        if stream is not None:  # acks racing a close are moot
            stream.ack(int(n))

    def _close(self, stream_id):
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.close("closed by the client")


def _hang_up(transport) -> None:
    """Close once what was written has gone out.  Our producer is unregistered
    first: Twisted does not close a connection whose producer is registered."""
    unregister = getattr(transport, "unregisterProducer", None)  # TCP and stdio both have it
    if unregister is not None:
        unregister()
    transport.loseConnection()


def _target_for(stream: HostStream) -> _Target:
    proto = _Target()
    proto.stream = stream
    return proto


# ---------------------------------------------------------------- client side

class ClientStream:
    """One local connection (a TCP client of our listener, or stdio) as a stream."""

    def __init__(self, client: "TunnelClient", local) -> None:
        self.client = client
        self.local = local  # a protocol with .transport
        self.id = None
        self.in_flight = 0  # bytes in send calls not answered yet
        self.reading = True
        self.pending: list = []  # local bytes before the stream id is known
        self.closed = False
        self.local_full = False  # the local socket's write buffer is full: acks wait
        self.owed = 0  # bytes written locally, not acknowledged yet

    def start(self) -> None:
        session = self.client.session
        if session is None:
            self.local.transport.loseConnection()
            return
        # We learn when the local peer stops reading, and then stop acknowledging.
        self.local.transport.registerProducer(self, True)
        d = session.call(uris(self.client.name)["open"], options=CallOptions(on_progress=self._progress))
        d.addBoth(self._ended)
        self.call = d

    def _progress(self, value) -> None:
        if isinstance(value, dict) and "stream" in value:
            self.id = value["stream"]
            for chunk in self.pending:
                self._send(chunk)
            self.pending = []
            return
        if isinstance(value, bytes) and not self.closed:
            self.local.transport.write(value)
            self.owed += len(value)
            if not self.local_full:
                self._ack()

    def _ack(self) -> None:
        session = self.client.session
        n, self.owed = self.owed, 0
        if n and session is not None and self.id is not None:
            session.call(uris(self.client.name)["ack"], self.id, n).addErrback(lambda f: None)

    # IPushProducer towards the local transport: acknowledge only what it took.
    def pauseProducing(self) -> None:  # noqa: N802
        self.local_full = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.local_full = False
        self._ack()

    def stopProducing(self) -> None:  # noqa: N802
        self.local_full = True

    def from_local(self, data: bytes) -> None:
        for start in range(0, len(data), CHUNK):
            chunk = data[start:start + CHUNK]
            self.in_flight += len(chunk)
            if self.id is None:
                self.pending.append(chunk)
            else:
                self._send(chunk)
        if self.in_flight >= self.client.window and self.reading:
            self.reading = False
            self.local.transport.pauseProducing()

    def _send(self, chunk: bytes) -> None:
        session = self.client.session
        if session is None:
            self.close()
            return
        d = session.call(uris(self.client.name)["send"], self.id, chunk)
        d.addCallbacks(lambda _: self._sent(len(chunk)), lambda f: self.close())

    def _sent(self, n: int) -> None:
        self.in_flight -= n
        if not self.reading and self.in_flight < self.client.window and not self.closed:
            self.reading = True
            self.local.transport.resumeProducing()

    def _ended(self, result) -> None:
        if hasattr(result, "getErrorMessage") and not self.closed:
            log.warn("Tunnel {name}: the stream was refused or failed: {error}", name=self.client.name,
                     error=result.getErrorMessage())
        if not self.closed:
            self.closed = True
            _hang_up(self.local.transport)
        return None

    def close(self) -> None:
        """The local side ended."""
        if self.closed:
            return
        self.closed = True
        session = self.client.session
        if session is not None and self.id is not None:
            session.call(uris(self.client.name)["close"], self.id).addErrback(lambda f: None)
        elif self.id is None and hasattr(self, "call"):
            self.call.cancel()
        _hang_up(self.local.transport)


class LocalConnection(protocol.Protocol):
    """A local TCP (or stdio) connection to tunnel."""

    def __init__(self, client: "TunnelClient") -> None:
        self.client = client
        self.stream = None

    def connectionMade(self) -> None:  # noqa: N802
        self.stream = ClientStream(self.client, self)
        self.stream.start()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.stream.from_local(data)

    def connectionLost(self, reason) -> None:  # noqa: N802
        if self.stream is not None:
            self.stream.close()
        self.client.local_lost(self)


class TunnelClient:
    def __init__(self, name: str, window: int = DEFAULT_WINDOW) -> None:
        self.name = name
        self.window = window
        self.session = None
        self.ready = defer.Deferred()

    def on_join(self, session, details) -> None:
        self.session = session
        if not self.ready.called:
            self.ready.callback(session)

    def on_leave(self, reason) -> None:
        self.session = None

    def local_lost(self, proto) -> None:
        pass
