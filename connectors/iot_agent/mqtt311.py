"""The ingesting MQTT 3.1.1 connections, on Twisted directly.

An ingesting connection does little: CONNECT with a persistent session,
SUBSCRIBE once, then take PUBLISH packets (QoS 0 or 1) and answer each QoS 1
one with a PUBACK once the agent has stored it; PINGREQ keeps it alive.
paho-mqtt does that at a cost that shows per message (a few ``recv`` calls
per packet, a message object with its properties and locks, a topic match
to find the callback, one ``send`` per PUBACK), so for MQTT 3.1.1 the
workers use this instead: :class:`Reader` turns bytes into packets without
I/O (a read of many packets is one ``recv``), :class:`IngestConnection` runs
the session, and PUBACKs go out in Twisted's write buffer, a few hundred in
one ``send``.  The control connection (MQTT 5, dynamic security, actuation)
and MQTT 5 workers stay on paho (``mqtt.ReactorMqtt``).

What the broker sends that breaks MQTT 3.1.1 (a malformed length, a topic
that is not UTF-8, a packet a subscriber never gets, QoS 2 on a QoS 1
subscription) closes the connection, named in the log; the persistent
session keeps what was not acknowledged for the next one.
"""

import struct

from twisted.internet import defer, endpoints, protocol, task
from twisted.logger import Logger

from connectors.common import Backoff

log = Logger()

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 1, 2, 3, 4, 8, 9, 12, 13, 14
MAX_REMAINING = 268_435_455  # the largest Remaining Length MQTT can say
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
SUBACK_FAILURE = 0x80
CONNACK_REASONS = {1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
                   4: "bad user name or password", 5: "not authorized"}


class ProtocolError(Exception):
    """The broker broke MQTT 3.1.1; the text says how."""


# ------------------------------------------------------------------ encoding

def _string(text: str) -> bytes:
    data = text.encode("utf8")
    if len(data) > 0xFFFF:
        raise ValueError(f"an MQTT string holds at most 65535 bytes, not {len(data)}")
    return struct.pack("!H", len(data)) + data


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


def connect_packet(client_id: str, username: str | None, password: str | None, keepalive: int,
                   clean_session: bool = False) -> bytes:
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0) | (2 if clean_session else 0)
    body = _string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + _string(client_id)
    if username is not None:
        body += _string(username)
    if password is not None:
        body += _string(password)
    return _packet(CONNECT << 4, body)


def subscribe_packet(packet_id: int, topics: list[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_string(topic) + bytes([qos]) for topic, qos in topics)
    return _packet(SUBSCRIBE << 4 | 2, body)


def puback_packet(packet_id: int) -> bytes:
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


# ------------------------------------------------------------------ decoding

class Reader:
    """Bytes in, whole packets out: ``feed(data)`` -> [(first byte, body)];
    a packet cut between two reads waits for the rest."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._pending + data if self._pending else data
        size = len(buffer)
        packets = []
        at = 0
        while size - at >= 2:
            first = buffer[at]
            length, multiplier, cursor = 0, 1, at + 1
            while True:
                if cursor >= size:
                    self._pending = buffer[at:]
                    return packets
                digit = buffer[cursor]
                cursor += 1
                length += (digit & 0x7F) * multiplier
                if not digit & 0x80:
                    break
                multiplier *= 128
                if multiplier > 128 ** 3:
                    raise ProtocolError("a Remaining Length longer than four bytes")
            end = cursor + length
            if end > size:
                break
            packets.append((first, buffer[cursor:end]))
            at = end
        self._pending = buffer[at:]
        return packets


class Message:
    """A PUBLISH the broker delivered; ``mid`` is (connection, packet id), so
    its acknowledgement never reaches a later connection."""

    __slots__ = ("topic", "payload", "qos", "mid")

    def __init__(self, topic: str, payload: bytes, qos: int, mid) -> None:
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.mid = mid


def decode_publish(first: int, body: bytes) -> tuple[str, bytes, int, int]:
    """(topic, payload, qos, packet id: 0 for QoS 0) of a PUBLISH received on a QoS 1 subscription."""
    qos = (first >> 1) & 3
    if qos > 1:
        raise ProtocolError(f"a PUBLISH of QoS {qos} on a subscription granted QoS 1 at most")
    if len(body) < 2:
        raise ProtocolError("a PUBLISH too short for its topic")
    end = 2 + int.from_bytes(body[:2], "big")
    try:
        topic = body[2:end].decode("utf8")
    except UnicodeDecodeError:
        raise ProtocolError("a PUBLISH topic that is not UTF-8") from None
    if end > len(body) or not topic or "\x00" in topic:
        raise ProtocolError("a PUBLISH without a valid topic")
    if not qos:
        return topic, body[end:], 0, 0
    packet_id = int.from_bytes(body[end:end + 2], "big")
    if end + 2 > len(body) or not packet_id:
        raise ProtocolError("a QoS 1 PUBLISH without a packet identifier")
    return topic, body[end + 2:], qos, packet_id


# ------------------------------------------------------------------ session

class _Wire(protocol.Protocol):
    def __init__(self, owner: "IngestConnection") -> None:
        self.owner = owner
        self.reader = Reader()

    def connectionMade(self) -> None:  # noqa: N802 - Twisted's name
        self.owner._made(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        try:
            for first, body in self.reader.feed(data):
                if self.transport is None or self.owner.wire is not self:
                    return
                self.owner._packet(self, first, body)
        except ProtocolError as e:
            self.owner._note_error(f"the broker broke MQTT 3.1.1: {e}")
            self.transport.abortConnection()

    def connectionLost(self, reason) -> None:  # noqa: N802
        self.owner._lost(self, reason)


class KeptConnection:
    """What an MQTT connection kept up shares, paho's or ours: its place, its
    callbacks, its state for /status, a periodic ``_tick`` every
    ``tick_interval`` seconds while it runs, and connecting again with backoff
    (``_connect``, ``_tick`` and ``_disconnect`` are the subclass's)."""

    _log = log

    def __init__(self, reactor, host: str, port: int, client_id: str, on_message, on_connected,
                 name: str, tick_interval: float) -> None:
        self.reactor = reactor
        self.host, self.port = host, port
        self.client_id = client_id
        self.on_message = on_message
        self.on_connected = on_connected  # fn(self) -> Deferred or None, after each accepted CONNACK
        self.name = name
        self.backoff = Backoff(0.5, 15.0)
        self.status = "init"
        self.last_error = None
        self.connected = False
        self._running = False
        self._retry = None
        self.tick_interval = tick_interval
        self._ticker = task.LoopingCall(self._tick)
        self._ticker.clock = reactor

    # ---------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._running = True
        self._ticker.start(self.tick_interval, now=False)
        self._connect()

    def stop(self) -> None:
        self._running = False
        if self._ticker.running:
            self._ticker.stop()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._disconnect()
        self.status = "stopped"

    def _connect(self) -> None:
        raise NotImplementedError

    def _tick(self) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError

    def _connection_lost(self, waiting: tuple, was: bool, why: str) -> None:
        """What waited for an answer fails; connect again (logged if we were connected)."""
        for answers in waiting:
            pending = list(answers.values())
            answers.clear()
            for d in pending:
                d.errback(ConnectionError("the MQTT connection was lost"))
        if self._running:
            self.status = "connecting"
            if was:
                self._note_error(f"connection lost ({why})")
            self._schedule()

    def _connect_failed(self, failure) -> None:
        self._note_error(f"cannot connect to {self.host}:{self.port}: {failure.getErrorMessage()}")
        self._schedule()

    def _schedule(self) -> None:
        if self._running and (self._retry is None or not self._retry.active()):
            self._retry = self.reactor.callLater(self.backoff.next(), self._connect)

    def _note_error(self, text: str) -> None:
        if text != self.last_error:
            self._log.warn("{name}: {text}; retrying with backoff", name=self.name, text=text)
        self.last_error = text


class IngestConnection(KeptConnection):
    """One MQTT 3.1.1 connection with a persistent session, kept up;
    ``on_message(self, message)`` gets each PUBLISH, ``ack(message.mid,
    message.qos)`` answers it.  The interface of ``mqtt.ReactorMqtt`` that the
    workers use: ``start``, ``stop``, ``subscribe``, ``ack``, ``status``,
    ``last_error``, ``connected``."""

    def __init__(self, reactor, host: str, port: int, client_id: str, username: str | None,
                 password: str | None, on_message=None, on_connected=None, name: str = "mqtt",
                 keepalive: int = 60, timeout: float = 30.0) -> None:
        super().__init__(reactor, host, port, client_id, on_message, on_connected, name, keepalive / 2)
        self.username, self.password = username, password
        self.keepalive = keepalive
        self.timeout = timeout
        self.wire: _Wire | None = None
        self._connack_timer = None
        self._awaiting_pong = False
        self._next_packet_id = 0
        self._subscribed: dict[int, defer.Deferred] = {}

    def _disconnect(self) -> None:
        wire = self.wire
        if wire is not None and wire.transport is not None:
            wire.transport.write(DISCONNECT_PACKET)
            wire.transport.loseConnection()

    def _connect(self) -> None:
        self._retry = None
        if not self._running:
            return
        self.status = "connecting"
        endpoint = endpoints.HostnameEndpoint(self.reactor, self.host, self.port, timeout=self.timeout)
        d = endpoints.connectProtocol(endpoint, _Wire(self))
        d.addErrback(self._connect_failed)

    def _made(self, wire: _Wire) -> None:
        if not self._running:
            wire.transport.loseConnection()
            return
        self.wire = wire
        self._awaiting_pong = False
        wire.transport.write(connect_packet(self.client_id, self.username, self.password, self.keepalive))
        self._connack_timer = self.reactor.callLater(self.timeout, self._no_connack, wire)

    def _no_connack(self, wire: _Wire) -> None:
        self._connack_timer = None
        self._note_error(f"no CONNACK within {self.timeout:g} s")
        wire.transport.abortConnection()

    def _lost(self, wire: _Wire, reason) -> None:
        if wire is not self.wire:
            return
        was = self.connected
        self.wire = None
        self.connected = False
        if self._connack_timer is not None and self._connack_timer.active():
            self._connack_timer.cancel()
        self._connack_timer = None
        self._connection_lost((self._subscribed,), was, reason.getErrorMessage())

    def _tick(self) -> None:  # keep-alive
        wire = self.wire
        if wire is None or not self.connected:
            return
        if self._awaiting_pong:
            self._note_error(f"no PINGRESP within {self.keepalive / 2:g} s")
            wire.transport.abortConnection()
            return
        self._awaiting_pong = True
        wire.transport.write(PINGREQ_PACKET)

    # ------------------------------------------------------------ packets

    def _packet(self, wire: _Wire, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == PUBLISH and self.connected:
            topic, payload, qos, packet_id = decode_publish(first, body)
            if self.on_message is not None:
                self.on_message(self, Message(topic, payload, qos, (wire, packet_id)))
        elif kind == CONNACK and not self.connected:
            self._connack(body)
        elif kind == SUBACK and len(body) >= 3:
            self._suback(body)
        elif kind == PINGRESP and not body:
            self._awaiting_pong = False
        else:
            raise ProtocolError(f"an unexpected packet of type {kind}"
                                + ("" if self.connected else " before CONNACK"))

    def _connack(self, body: bytes) -> None:
        if len(body) != 2:
            raise ProtocolError("a CONNACK that is not two bytes long")
        if self._connack_timer is not None and self._connack_timer.active():
            self._connack_timer.cancel()
        self._connack_timer = None
        code = body[1]
        if code:
            self._note_error(f"the broker refused the connection: {CONNACK_REASONS.get(code, f'code {code}')}")
            self.wire.transport.loseConnection()
            return
        self.connected = True
        self.status = "ready"
        self.last_error = None
        self.backoff.reset()
        log.info("{name}: connected to {host}:{port} as {client_id} (session present: {present})",
                 name=self.name, host=self.host, port=self.port, client_id=self.client_id,
                 present=bool(body[0] & 1))
        if self.on_connected is not None:
            d = defer.maybeDeferred(self.on_connected, self)
            d.addErrback(lambda f: log.failure("{name}: setting up after connect failed", f, name=self.name))

    def _suback(self, body: bytes) -> None:
        d = self._subscribed.pop(int.from_bytes(body[:2], "big"), None)
        if d is None:
            raise ProtocolError("a SUBACK for no SUBSCRIBE of ours")
        codes = list(body[2:])
        if SUBACK_FAILURE in codes:
            d.errback(ConnectionError(f"the broker refused a subscription (granted: {codes})"))
        else:
            d.callback(codes)

    # ------------------------------------------------------------- calls

    def subscribe(self, topics: list[tuple[str, int]]) -> defer.Deferred:
        """Fires with the granted QoS of each topic filter."""
        if self.wire is None or not self.connected:
            return defer.fail(ConnectionError("not connected to the MQTT broker"))
        self._next_packet_id = self._next_packet_id % 0xFFFF + 1
        d = defer.Deferred()
        self._subscribed[self._next_packet_id] = d
        self.wire.transport.write(subscribe_packet(self._next_packet_id, topics))
        return d

    def ack(self, mid, qos: int) -> None:
        """PUBACK for a QoS 1 message, on the connection that delivered it (if it is still the current one)."""
        wire, packet_id = mid
        if qos == 1 and wire is self.wire and self.connected:
            wire.transport.write(puback_packet(packet_id))
