"""The raw WebSocket endpoint: plain text and binary frames, no WAMP.

Theory of operation
-------------------
A browser page or an experiment opens ``/{prefix}/{topic}?code=...`` with the
one-time code ``POST /{prefix}/{topic}`` gave it (access.py).  The upgrade is
refused (HTTP 401/403) unless the code is pending, for this path, and its
booking id is not denied.  The connection then becomes an ordinary router
session of the relay realm (``RouterSession.join_authenticated``): the
core's guard closes it at the token's ``exp`` and when its booking id is
denied, the meta API lists it, and role rules apply to it as to any session.

With the ``read`` scope the session subscribes to the stream's WAMP topic
(``relay.{prefix}.{topic}``); with ``write`` each frame it sends is published
there (publisher excluded, so never echoed).  Raw and WAMP clients therefore
share the stream; frames.py says how a frame maps to an event and back.

Sending never blocks the router: each :class:`RawPeer` is its transport's
producer.  While the peer does not read, frames wait in a bounded queue
(``relay.buffer_messages`` / ``buffer_bytes``); at the bound the oldest
whole frame is dropped and counted, so one slow viewer of a video stream
loses chunks and nobody else notices.
"""

from collections import deque

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.wamp import message as m
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from autobahn.util import encode_truncate
from twisted.logger import Logger

from ..core import errors
from ..core.peer import TransportInfo
from ..core.session import State
from ..transport.connection import _take_over_producer
from ..config.limits import ListenerSettings
from .stats import Direction

log = Logger(namespace="relayrouter.relay")

_EVENT = m.Event.MESSAGE_TYPE
_GOODBYE = m.Goodbye.MESSAGE_TYPE
_ABORT = m.Abort.MESSAGE_TYPE
_ERROR = m.Error.MESSAGE_TYPE
_OPEN = WebSocketProtocol.STATE_OPEN
_GROUND = WebSocketProtocol.SEND_STATE_GROUND

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
# GOODBYE reasons as WebSocket close codes (the reason text carries the URI).
_CLOSE_FOR_GOODBYE = {errors.CLOSE_SYSTEM_SHUTDOWN: CLOSE_GOING_AWAY}


class RawPeer:
    """The core's Peer for one raw connection, and its transport's producer."""

    __slots__ = ("proto", "relay", "grant", "session", "rx", "tx", "dropped", "refused",
                 "connected_at", "_queue", "_queued_bytes", "_paused", "_closing")

    def __init__(self, proto, relay, grant, info: TransportInfo) -> None:
        now = relay.clock.seconds()
        self.proto = proto
        self.relay = relay
        self.grant = grant  # access.RawGrant
        self.connected_at = now
        self.rx = Direction(now)  # frames from the client
        self.tx = Direction(now)  # frames to the client
        self.dropped = 0  # frames dropped because the client did not read
        self.refused = 0  # frames from a client without the write scope
        self._queue: deque = deque()
        self._queued_bytes = 0
        self._paused = False
        self._closing = False
        self.session = relay.router.session(self, info)
        _take_over_producer(proto.transport, self)

    # ------------------------------------------------------- from the client

    def received(self, payload: bytes, binary: bool) -> None:
        now = self.relay.clock.seconds()
        self.rx.count(len(payload), now)
        if not self.grant.can_write:
            self.refused += 1
            return
        if self.session.state is not State.ESTABLISHED:
            return
        value = payload if binary else payload.decode("utf8", "replace")
        self.relay.raw_frame_in(self, value)
        self.session.receive_message(m.Publish(1, self.grant.wamp_topic, args=[value]))

    # ------------------------------------------------------- from the core

    def send(self, message) -> None:
        kind = message.MESSAGE_TYPE
        if kind == _EVENT:
            self._deliver(*self.relay.frame_for(message))
        elif kind == _GOODBYE:
            # The router ends the session (token expired, booking denied, shutdown).
            self._close_now(_CLOSE_FOR_GOODBYE.get(message.reason, CLOSE_NORMAL), message.reason)
        elif kind == _ABORT:
            self._close_now(CLOSE_POLICY, message.message or message.reason)
        elif kind == _ERROR:
            text = message.args[0] if message.args else message.error
            self._close_now(CLOSE_POLICY, f"{message.error}: {text}")
        # WELCOME, SUBSCRIBED, PUBLISHED: nothing for a raw client.

    def close(self) -> None:
        self._closing = True
        if not self._queue:
            self._close_now(CLOSE_NORMAL, None)

    # ------------------------------------------------------- sending frames

    def _deliver(self, data: bytes, size: int) -> None:
        if self._closing:
            return
        if self._paused or self._queue:
            self._enqueue(data, size)
            return
        self.tx.count(size, self.relay.clock.seconds())
        self.proto.write_frame(data)

    def _enqueue(self, data: bytes, size: int) -> None:
        relay = self.relay.config
        queue = self._queue
        queue.append((data, size))
        self._queued_bytes += len(data)
        # Drop-oldest, whole frames: the newest always stays.
        while len(queue) > 1 and (len(queue) > relay.buffer_messages
                                  or self._queued_bytes > relay.buffer_bytes):
            self._queued_bytes -= len(queue.popleft()[0])
            self.dropped += 1

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's IPushProducer
        self._paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self._paused = False
        queue = self._queue
        now = self.relay.clock.seconds()
        while queue and not self._paused:
            data, size = queue.popleft()
            self._queued_bytes -= len(data)
            self.tx.count(size, now)
            self.proto.write_frame(data)
        if not queue and self._closing:
            self._close_now(CLOSE_NORMAL, None)

    def stopProducing(self) -> None:  # noqa: N802
        self._paused = True

    @property
    def queued(self) -> tuple[int, int]:
        return len(self._queue), self._queued_bytes

    def _close_now(self, code: int, reason: str | None) -> None:
        self._closing = True
        self.proto.close_with(code, reason)

    def lost(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0
        self.session.transport_lost()


class RawRelayProtocol(WebSocketServerProtocol):
    raw_peer: RawPeer | None = None  # (Autobahn's own ``peer`` is the address string)
    _grant = None

    def onConnect(self, request):  # noqa: N802 - Autobahn's name
        relay = self.factory.relay
        origin = request.headers.get("origin")
        if not relay.security.origins.allows(origin):
            raise ConnectionDeny(403, "origin not allowed")
        code = (request.params.get("code") or [None])[0]
        self._grant = relay.grant_for_upgrade(request.path, code)  # raises ConnectionDeny
        self._user_agent = request.headers.get("user-agent", "")
        self._forwarded_for = request.headers.get("x-forwarded-for")
        # The seed offers the subprotocol "null" (a browser work-around); echo it if asked.
        return "null" if "null" in (request.protocols or ()) else None

    def onOpen(self) -> None:  # noqa: N802
        relay = self.factory.relay
        details = self._transport_details
        info = TransportInfo(kind="relay", peer=details.peer or "", serializer="raw",
                             is_secure=bool(details.is_secure),
                             http_headers=_kept(user_agent=self._user_agent, forwarded_for=self._forwarded_for))
        self.raw_peer = RawPeer(self, relay, self._grant, info)
        relay.opened(self.raw_peer)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802,N803
        if self.raw_peer is not None:
            self.raw_peer.received(payload, isBinary)

    def onClose(self, wasClean, code, reason) -> None:  # noqa: N802,N803
        peer, self.raw_peer = self.raw_peer, None
        if peer is not None:
            self.factory.relay.closed(peer)
            peer.lost()

    def write_frame(self, data: bytes) -> None:
        if self.state != _OPEN:
            return
        if self.send_state != _GROUND or self.send_queue:
            payload_start = 2 if data[1] & 0x7F < 126 else 4 if data[1] & 0x7F == 126 else 10
            self.sendMessage(data[payload_start:], data[0] == 0x82)
            return
        self.transport.write(data)

    def close_with(self, code: int, reason: str | None) -> None:
        if self.state == _OPEN:
            # sendCloseFrame, not sendClose: that one refuses the standard 1001 and 1008.
            self.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123) if reason else None)


class RawRelayFactory(WebSocketServerFactory):
    protocol = RawRelayProtocol

    def __init__(self, relay, settings: ListenerSettings) -> None:
        super().__init__()
        self.relay = relay
        self.setProtocolOptions(
            maxMessagePayloadSize=settings.max_message_size,
            maxFramePayloadSize=settings.max_message_size,
            openHandshakeTimeout=settings.hello_timeout,
            failByDrop=False,
        )
        if settings.heartbeat_interval:
            self.setProtocolOptions(autoPingInterval=settings.heartbeat_interval,
                                    autoPingTimeout=settings.heartbeat_timeout)


def _kept(user_agent: str, forwarded_for: str | None) -> dict:
    """The upgrade headers a raw session keeps (reports, relay.trusted_proxies)."""
    headers = {"user-agent": user_agent}
    if forwarded_for is not None:
        headers["x-forwarded-for"] = forwarded_for
    return headers
