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

from collections import Counter, deque

from autobahn.wamp import message as m
from twisted.logger import Logger

from ..core import errors
from ..core.peer import TransportInfo
from .autobahn_overrides import attach_handler, detach_handler, object_serializer, peer_of, wamp_serializer
from .tls import tls_facts
from ..core.session import State
from .inbound import too_deep
from ..config.limits import (DISCONNECT, DROP_NEWEST, DROP_OLDEST,  # noqa: F401 (re-exported)
                            ListenerSettings, OutboundLimits)

# Before a session joins a realm (whose policy then applies), or in a realm without one.
DEFAULT_OUTBOUND = OutboundLimits()

# By type number: events carrying ppt_* details are a subclass of m.Event.
_EVENT_TYPE = m.Event.MESSAGE_TYPE

class Counters:
    """What one connection refused or dropped; read by metrics and the meta API
    (through ``session.peer.counters``).  Realm-wide sums are in ``realm.counters``
    under the same names."""

    __slots__ = ("events_dropped", "slow_consumer_disconnects", "stalled_disconnects",
                 "heartbeat_timeouts", "hello_timeouts", "unserializable", "too_deep",
                 "write_failures")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class Connection:
    """The core's Peer for one transport connection, and its Twisted producer."""

    log = Logger()

    __slots__ = (
        "session", "info", "counters", "_proto", "_objser", "_write",
        "_paused", "_front", "_queue", "_queued_bytes", "_closing", "_gone", "_hello_timer",
        "_clock", "_settings", "_stall_timeout", "_stall_timer", "_paused_at", "_stats", "_sent",
        "_rx_counted_by", "_max_depth", "connected_at", "tx_bytes",
    )

    def __init__(self, router, proto, info: TransportInfo, objser, write,
                 settings: ListenerSettings = ListenerSettings(), hello_timer=None) -> None:
        self.info = info
        self.counters = Counters()
        self._proto = proto
        self._objser = objser  # Autobahn's object serializer, shared by the listener
        self._write = write  # bytes -> None, the protocol's framing
        self._settings = settings
        self._max_depth = settings.max_depth  # read for every message
        self._paused = False
        # What waits while the peer is not reading, in order: _front holds
        # non-events that dropping older events moved past (they go first).
        # Both start as an empty tuple and become deques when first needed:
        # most peers keep up, and an empty deque is ~600 bytes per session.
        self._front: deque | tuple = ()  # bytes
        self._queue: deque | tuple = ()  # (bytes, is_event)
        self._queued_bytes = 0
        self._closing = False
        self._gone = False
        self._hello_timer = hello_timer
        self._clock = router.clock
        self._stall_timeout = settings.stall_timeout
        self._stall_timer = None
        self._paused_at = 0.0
        self._stats = router.stats  # messages and bytes, for metrics (core/stats.py)
        self._sent = router.stats.sent  # by message type, counted per send
        # This connection's own traffic and age, for the console (relayrouter.console.sessions).
        # Bytes read are tallied by the protocol as it frames them (rx_bytes);
        # bytes sent or queued here, as send() has them in hand anyway.
        self._rx_counted_by = proto
        self.connected_at = router.clock.seconds()
        self.tx_bytes = 0
        self.session = router.session(self, info)
        _take_over_producer(proto.transport, self)

    # ------------------------------------------------------------ inbound

    @property
    def rx_bytes(self) -> int:
        """Bytes of WAMP messages read from this peer (0 once it is gone: they are in the router's totals)."""
        counted_by = self._rx_counted_by
        return counted_by.payload_bytes_received() if counted_by is not None else 0

    def receive_payload(self, payload: bytes) -> None:
        try:
            raws = self._objser.unserialize(payload)
        except Exception as e:
            self.session.protocol_violation(
                f"cannot decode the message as {self.info.serializer} ({type(e).__name__}: {e})"[:300])
            return
        problem = too_deep(payload, raws, self.info.serializer, self._max_depth)
        if problem is not None:
            self.count("too_deep")
            self.session.protocol_violation(problem)
            return
        session = self.session
        for raw in raws:
            session.receive(raw)
            if self._closing or self._gone:
                break
        if self._hello_timer is not None and session.state is State.ESTABLISHED:
            self._hello_timer.cancel()
            self._hello_timer = None

    def lost(self) -> None:
        """The transport is gone; let the core clean up."""
        self._gone = True
        # Its bytes join the router's totals of closed connections (core/stats.py traffic()).
        stats = self._stats
        stats.bytes_in += self.rx_bytes
        stats.bytes_out += self.tx_bytes
        self._rx_counted_by = None
        self.tx_bytes = 0
        self._forget_queue()
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        self.session.transport_lost()

    def drop(self) -> None:
        """Cut the connection now (shutdown deadline passed)."""
        self._proto.drop_now()

    def hello_deadline_passed(self) -> None:
        self._hello_timer = None
        if self.session.state is not State.ESTABLISHED:
            self.count("hello_timeouts")
            self.session.abort(errors.PROTOCOL_VIOLATION,
                               "no session was established in time after connecting (limits.hello_timeout)")

    # ----------------------------------------------------------- outbound

    def send(self, message: m.Message) -> None:
        if self._gone:
            return
        mtype = message.MESSAGE_TYPE
        # An EVENT goes to every subscriber: its bytes were made for the first
        # of them, read them without a call (what cached_bytes() does, inlined:
        # this runs once per receiver).  A message sent for the first time has
        # an empty cache.
        made = message._serialized
        data = made.get(self._objser) if made else None
        if data is None:
            try:
                data = message.serialize(self._objser)
            except Exception as e:
                self._unserializable(message, e)
                return
        self._sent[mtype] += 1
        self.tx_bytes += len(data)
        if self._paused or self._queue or self._front:
            self._enqueue(data, mtype == _EVENT_TYPE)
            return
        try:
            self._write(data)
        except Exception as e:  # one receiver's broken transport must not reach the sender
            self._write_failed(e)

    def close(self) -> None:
        """Hang up once what was sent before has gone out."""
        self._closing = True
        if not self._queue and not self._front and not self._gone:
            self._proto.close_after_flush()

    @property
    def queued(self) -> tuple[int, int]:
        """(messages, bytes) waiting for the peer to read."""
        return len(self._front) + len(self._queue), self._queued_bytes

    # Twisted's IPushProducer: the transport tells us when the peer stops reading.
    def pauseProducing(self) -> None:
        self._paused = True
        self._paused_at = self._clock.seconds()
        # One timer at a time, left running across resumes: a busy stream
        # pauses and resumes for every large message, and scheduling and
        # cancelling a timer each time would cost more than the message.
        if self._stall_timeout is not None and self._stall_timer is None and not self._gone:
            self._stall_timer = self._clock.callLater(self._stall_timeout, self._stalled)

    def resumeProducing(self) -> None:
        self._paused = False
        front, queue = self._front, self._queue
        while front and not self._paused and not self._gone:
            data = front.popleft()
            self._queued_bytes -= len(data)
            self._write(data)
        while queue and not self._paused and not self._gone:
            data, _ = queue.popleft()
            self._queued_bytes -= len(data)
            self._write(data)
        if not queue and not front and self._closing and not self._gone:
            self._proto.close_after_flush()

    def stopProducing(self) -> None:
        self._paused = True

    # ------------------------------------------------------- backpressure

    def _limits_now(self) -> OutboundLimits:
        realm = self.session.realm
        if realm is not None and realm.policy.outbound is not None:
            return realm.policy.outbound
        return DEFAULT_OUTBOUND

    def _has_room(self, limits: OutboundLimits, size: int) -> bool:
        return (len(self._front) + len(self._queue) < limits.max_messages
                and self._queued_bytes + size <= limits.max_bytes)

    def _enqueue(self, data: bytes, is_event: bool) -> None:
        limits = self._limits_now()
        if self._has_room(limits, len(data)):
            self._append(data, is_event)
            return
        if is_event and limits.policy == DROP_NEWEST:
            self._count_drop()
            return
        if is_event and limits.policy == DROP_OLDEST and self._drop_oldest_events(limits, len(data)):
            self._append(data, is_event)
            return
        # Results, invocations and errors are never dropped: the session goes instead.
        self._disconnect("slow_consumer_disconnects",
                         "Disconnecting slow consumer {session} ({peer}): {n} messages / {b} bytes waiting")

    def _append(self, data: bytes, is_event: bool) -> None:
        if not self._queue:
            self._queue = deque()
        self._queue.append((data, is_event))
        self._queued_bytes += len(data)

    def _drop_oldest_events(self, limits: OutboundLimits, room_needed: int) -> bool:
        """Make room by dropping the oldest queued events; False if events alone cannot.

        Non-events met on the way move to ``_front``, which is sent first, so the
        order of what is kept does not change; each message moves at most once.
        """
        if not self._front:
            self._front = deque()
        queue, front = self._queue, self._front
        while queue and not self._has_room(limits, room_needed):
            data, is_event = queue.popleft()
            if is_event:
                self._queued_bytes -= len(data)
                self._count_drop()
            else:
                front.append(data)
        return self._has_room(limits, room_needed)

    def _count_drop(self) -> None:
        self.count("events_dropped")

    def count(self, name: str) -> None:
        """One more of ``name`` in this connection's counters and its realm's."""
        setattr(self.counters, name, getattr(self.counters, name) + 1)
        realm = self.session.realm
        if realm is not None:
            realm.counters[name] += 1

    def _stalled(self) -> None:
        self._stall_timer = None
        if not self._paused or self._gone:
            return
        stalled_for = self._clock.seconds() - self._paused_at
        if stalled_for < self._stall_timeout:  # it read something since; look again later
            self._stall_timer = self._clock.callLater(self._stall_timeout - stalled_for, self._stalled)
            return
        self._disconnect("stalled_disconnects",
                         "Disconnecting {session} ({peer}): it has read nothing for "
                         + f"{self._stall_timeout:g}s; {{n}} messages / {{b}} bytes waiting")

    def _cancel_stall_timer(self) -> None:
        if self._stall_timer is not None:
            if self._stall_timer.active():
                self._stall_timer.cancel()
            self._stall_timer = None

    def _write_failed(self, error: Exception) -> None:
        self._disconnect("write_failures",
                         "Cannot write to {session} ({peer}), dropping the connection: "
                         + str(error).replace("{", "{{").replace("}", "}}")
                         + "; {n} messages / {b} bytes waiting")

    def _disconnect(self, counter: str, text: str) -> None:
        self.count(counter)
        self.log.warn(text, session=self.session.session_id, peer=self.info.peer,
                      realm=_realm_name(self.session), n=len(self._front) + len(self._queue), b=self._queued_bytes)
        self._gone = True
        self._forget_queue()
        # The core learns of it from lost(), once the transport is down: never
        # from inside send(), where the core may be iterating over receivers.
        # (Nothing can be said to a peer that is not reading: the counter and
        # the log line above say why it went.)
        self._proto.drop_now()

    def _forget_queue(self) -> None:
        self._front = ()
        self._queue = ()
        self._queued_bytes = 0
        self._cancel_stall_timer()

    def _unserializable(self, message: m.Message, error: Exception) -> None:
        self.count("unserializable")
        self.log.warn("Cannot send {kind} to session {session} as {ser}: {error}",
                      kind=type(message).__name__.upper(), session=self.session.session_id,
                      peer=self.info.peer, realm=_realm_name(self.session), ser=self.info.serializer, error=error)
        self._answer_instead(message, f"the {type(message).__name__.upper()} cannot be sent as "
                                      f"{self.info.serializer} ({type(error).__name__}: {error})"[:300])

    def _as_session(self, message: m.Message) -> None:
        if not self._gone:
            self.session.receive_message(message)

    def _answer_instead(self, message: m.Message, text: str) -> None:
        """Somebody waits for a RESULT, an INVOCATION's answer or an ERROR that cannot be
        serialized for this peer: tell them, instead of leaving a call hanging.
        (An EVENT that cannot be sent is dropped: nobody waits for it.)"""
        if isinstance(message, m.Result):
            # "the Dealer MUST" answer every CALL: an ERROR this peer can read.
            self.send(m.Error(m.Call.MESSAGE_TYPE, message.request, errors.INVALID_ARGUMENT, args=[text]))
        elif isinstance(message, m.Error) and message.args != [text]:
            self.send(m.Error(message.request_type, message.request, message.error, args=[text]))
        elif isinstance(message, m.Invocation):
            # The callee never saw it: answer the caller as if the callee had refused it,
            # on the next turn (send() never calls back into the core).
            refusal = m.Error(m.Invocation.MESSAGE_TYPE, message.request, errors.INVALID_ARGUMENT, args=[text])
            self._clock.callLater(0, self._as_session, refusal)


def _realm_name(session) -> str | None:
    realm = getattr(session, "realm", None)
    return realm.name if realm is not None else None


# Twisted pauses a producer once more than this waits in the transport's own
# buffer.  Its default (64 KiB) is one binary message: a stream would pause and
# resume on every message.  Four of them keep a busy stream moving, and still
# count as a few hundred kilobytes towards what a stuck peer can cost.
TRANSPORT_BUFFER = 256 * 1024


def _take_over_producer(transport, producer) -> None:
    """Register as the transport's producer; a WebSocket upgraded from an HTTP
    request still has twisted.web's channel registered there."""
    if getattr(transport, "bufferSize", TRANSPORT_BUFFER) < TRANSPORT_BUFFER:
        transport.bufferSize = TRANSPORT_BUFFER
    try:
        transport.registerProducer(producer, True)
    except RuntimeError:
        transport.unregisterProducer()
        transport.registerProducer(producer, True)


def open_connection(proto, kind: str, hello_timer, peer: str | None = None, **http) -> "Connection":
    """The Connection for a WebSocket or RawSocket protocol whose opening
    handshake just completed; ``http`` carries what only WebSocket knows, and
    ``peer`` the client a trusted proxy named (else the TCP peer)."""
    factory = proto.factory
    serializer = wamp_serializer(proto)
    # Read now: over TLS, Autobahn's transport details predate the handshake.
    is_secure, peer_cert, channel_id = tls_facts(proto.transport)
    info = TransportInfo(
        kind=kind,
        peer=peer if peer is not None else peer_of(proto),
        serializer=serializer.SERIALIZER_ID.split(".")[0],
        is_secure=is_secure,
        peer_cert=peer_cert,
        channel_id=channel_id,
        **http,
    )
    conn = Connection(factory.router, proto, info, object_serializer(serializer), proto._write_wamp,
                      factory.settings, hello_timer)
    attach_handler(proto, conn)
    factory.connections.add(conn)
    return conn


class WampListener:
    """What a WebSocket or RawSocket listener factory keeps for its connections
    (a mixin: both factories are built alike)."""

    def listen_with(self, router, settings: ListenerSettings, clock) -> None:
        self.router = router
        self.settings = settings
        self.clock = clock
        self.connections: set[Connection] = set()
        # What happened before a session existed (per-session counts are on the Connection).
        self.counters: Counter = Counter()


def close_connection(proto) -> None:
    """The counterpart of open_connection, once the protocol's transport is gone."""
    conn, proto._conn = proto._conn, None
    detach_handler(proto)
    if conn is not None:
        proto.factory.connections.discard(conn)
        conn.lost()
