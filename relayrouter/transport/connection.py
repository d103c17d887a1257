"""One connection: the core's Peer on one side, an Autobahn protocol on the other.

Theory of operation
-------------------
Inbound, the protocol hands us each WAMP payload; we decode it with the
connection's serializer and feed the raw arrays to the core session.  A payload
that cannot be decoded is the peer's fault: ABORT ``protocol_violation``.

Outbound, the core calls :meth:`Connection.send` with a message object.  Its
bytes come from ``Message.serialize``, which caches them per serializer, so a
message sent to many receivers of one serializer is encoded once.  We register
as a streaming producer with the transport: Twisted calls ``pauseProducing``
when its write buffer is full (the peer is not reading) and
``resumeProducing`` when it drained.  While paused, messages wait in a bounded
queue (messages and bytes).  When the bound is reached, the realm's policy
decides for events (drop the oldest, drop the newest, or disconnect); any
other message (a result, an invocation, an error) is never dropped: the
session is disconnected instead, and the core answers its waiting callers.
Every drop and disconnect is counted.  A failure to send to one receiver never
reaches the sender or other receivers.
"""

from collections import deque
from dataclasses import dataclass

from autobahn.wamp import message as m
from twisted.logger import Logger

from ..core import errors
from ..core.peer import TransportInfo
from ..core.session import State

_EVENT = m.Event

DROP_OLDEST = "drop-oldest"
DROP_NEWEST = "drop-newest"
DISCONNECT = "disconnect"
SLOW_CONSUMER_POLICIES = (DROP_OLDEST, DROP_NEWEST, DISCONNECT)


@dataclass(frozen=True, slots=True)
class OutboundLimits:
    """How much may wait for a peer that is not reading, and what happens then."""

    max_messages: int = 10_000
    max_bytes: int = 4 * 1024 * 1024
    policy: str = DROP_OLDEST


class Counters:
    """What a connection refused or dropped; read by metrics and the meta API."""

    __slots__ = ("events_dropped", "slow_consumer_disconnects", "unserializable")

    def __init__(self) -> None:
        self.events_dropped = 0
        self.slow_consumer_disconnects = 0
        self.unserializable = 0


class Connection:
    """The core's Peer for one transport connection, and its Twisted producer."""

    log = Logger()

    __slots__ = (
        "session", "info", "counters", "_proto", "_objser", "_write", "_limits",
        "_paused", "_queue", "_queued_bytes", "_closing", "_gone", "_hello_timer",
        "_realm_counters",
    )

    def __init__(self, router, proto, info: TransportInfo, objser, write, limits: OutboundLimits,
                 hello_timer=None) -> None:
        self.info = info
        self.counters = Counters()
        self._proto = proto
        self._objser = objser  # Autobahn's object serializer, shared by the listener
        self._write = write  # bytes -> None, the protocol's framing
        self._limits = limits
        self._paused = False
        self._queue: deque = deque()  # (bytes, is_event)
        self._queued_bytes = 0
        self._closing = False
        self._gone = False
        self._hello_timer = hello_timer
        self.session = router.session(self, info)
        _take_over_producer(proto.transport, self)

    # ------------------------------------------------------------ inbound

    def receive_payload(self, payload: bytes) -> None:
        try:
            raws = self._objser.unserialize(payload)
        except Exception as e:
            self.session.protocol_violation(
                f"cannot decode the message as {self.info.serializer} ({type(e).__name__}: {e})"[:300])
            return
        session = self.session
        for raw in raws:
            session.receive(raw)
            if self._closing:
                break
        if self._hello_timer is not None and session.state is State.ESTABLISHED:
            self._hello_timer.cancel()
            self._hello_timer = None

    def lost(self) -> None:
        """The transport is gone; let the core clean up."""
        self._gone = True
        self._queue.clear()
        self._queued_bytes = 0
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        self.session.transport_lost()

    def drop(self) -> None:
        """Cut the connection now (shutdown deadline passed)."""
        self._proto.drop_now(errors.CLOSE_SYSTEM_SHUTDOWN)

    def hello_deadline_passed(self) -> None:
        self._hello_timer = None
        if self.session.state is not State.ESTABLISHED:
            self.session.abort(errors.PROTOCOL_VIOLATION,
                               "no session was established in time after connecting")

    # ----------------------------------------------------------- outbound

    def send(self, message: m.Message) -> None:
        if self._gone:
            return
        try:
            data = message.serialize(self._objser)
        except Exception as e:
            self._unserializable(message, e)
            return
        if self._paused or self._queue:
            self._enqueue(data, type(message) is _EVENT)
        else:
            self._write(data)

    def close(self) -> None:
        """Hang up once what was sent before has gone out."""
        self._closing = True
        if not self._queue:
            self._proto.close_after_flush()

    # Twisted's IPushProducer: the transport tells us when the peer stops reading.
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        queue = self._queue
        while queue and not self._paused and not self._gone:
            data, _ = queue.popleft()
            self._queued_bytes -= len(data)
            self._write(data)
        if not queue and self._closing and not self._gone:
            self._proto.close_after_flush()

    def stopProducing(self) -> None:
        self._paused = True

    # ------------------------------------------------------- backpressure

    def _limits_now(self) -> OutboundLimits:
        realm = self.session.realm
        if realm is not None and realm.policy.outbound is not None:
            return realm.policy.outbound
        return self._limits

    def _enqueue(self, data: bytes, is_event: bool) -> None:
        limits = self._limits_now()
        if (len(self._queue) < limits.max_messages
                and self._queued_bytes + len(data) <= limits.max_bytes):
            self._queue.append((data, is_event))
            self._queued_bytes += len(data)
            return
        if is_event and limits.policy == DROP_NEWEST:
            self._count_drop()
            return
        if is_event and limits.policy == DROP_OLDEST and self._drop_oldest_event(len(data)):
            self._queue.append((data, is_event))
            self._queued_bytes += len(data)
            return
        self._disconnect_slow_consumer()

    def _drop_oldest_event(self, room_needed: int) -> bool:
        """Make room by dropping the oldest queued events; False if events alone cannot."""
        limits = self._limits_now()
        kept = deque()
        queue = self._queue
        while queue and (len(queue) + len(kept) >= limits.max_messages
                         or self._queued_bytes + room_needed > limits.max_bytes):
            data, is_event = queue.popleft()
            if is_event:
                self._queued_bytes -= len(data)
                self._count_drop()
            else:
                kept.append((data, is_event))
        kept.extend(queue)
        self._queue = kept
        return (len(kept) < limits.max_messages
                and self._queued_bytes + room_needed <= limits.max_bytes)

    def _count_drop(self) -> None:
        self.counters.events_dropped += 1
        realm = self.session.realm
        if realm is not None:
            realm.counters["events_dropped"] += 1

    def _disconnect_slow_consumer(self) -> None:
        self.counters.slow_consumer_disconnects += 1
        realm = self.session.realm
        if realm is not None:
            realm.counters["slow_consumer_disconnects"] += 1
        self.log.warn(
            "Disconnecting slow consumer {session} ({peer}): {n} messages / {b} bytes waiting",
            session=self.session.session_id, peer=self.info.peer,
            n=len(self._queue), b=self._queued_bytes)
        self._gone = True
        self._queue.clear()
        self._queued_bytes = 0
        self.session.transport_lost()
        self._proto.drop_now(errors.CLOSE_SLOW_CONSUMER)

    def _unserializable(self, message: m.Message, error: Exception) -> None:
        self.counters.unserializable += 1
        self.log.warn("Cannot send {kind} to session {session} as {ser}: {error}",
                      kind=type(message).__name__.upper(), session=self.session.session_id,
                      ser=self.info.serializer, error=error)


def _take_over_producer(transport, producer) -> None:
    """Register as the transport's producer; a WebSocket upgraded from an HTTP
    request still has twisted.web's channel registered there."""
    try:
        transport.registerProducer(producer, True)
    except RuntimeError:
        transport.unregisterProducer()
        transport.registerProducer(producer, True)
