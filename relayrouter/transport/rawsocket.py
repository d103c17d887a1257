"""WAMP over RawSocket: Autobahn's handshake, our framing, decoding and send path.

Framing
-------
After the 4-octet handshake, every frame has a 4-octet header: the low three
bits of the first octet are the frame type ("0: regular WAMP message, 1: PING,
2: PONG"), the next three octets the payload length.  Autobahn reads the
header as a 32-bit length, which makes PING and PONG look like oversized
messages, so we parse frames ourselves.  "A Peer receiving a PING MUST
answer with a PONG echoing the payload"; we do, always.

Heartbeats: Autobahn-Python's RawSocket (client and server) cannot parse a
PING and closes the connection on one, so by default we only ping peers that
have pinged us first (autobahn-js and others that speak them), or every peer
when ``limits.rawsocket_ping`` is set.  Every RawSocket connection also gets
TCP keepalive tuned to the heartbeat, and a stalled send queue closes it
(see liveness.py and connection.py).
"""

import os

from autobahn.twisted.rawsocket import WampRawSocketServerFactory, WampRawSocketServerProtocol
from twisted.logger import Logger

from ..core import errors
from .autobahn_overrides import peer_of
from .connection import Connection, WampListener, close_connection, open_connection
from .liveness import enable_tcp_keepalive
from ..config.limits import ListenerSettings

FRAME_WAMP, FRAME_PING, FRAME_PONG = 0, 1, 2
_MAX_CONTROL_PAYLOAD = 1024  # a PING larger than this is not a heartbeat


log = Logger(namespace="relayrouter.rawsocket")


class RouterRawSocketProtocol(WampRawSocketServerProtocol):
    _conn: Connection | None = None
    _hello_timer = None
    _ping_call = None
    _pong_timer = None
    _ping_payload: bytes | None = None
    _pinging = False
    _payload_bytes = 0  # WAMP message bytes read (our framing; WebSocket has Autobahn's tally)

    def connectionMade(self) -> None:
        super().connectionMade()
        # Small WAMP messages must not wait for Nagle's algorithm (Autobahn
        # sets this for WebSocket, not for RawSocket).
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        factory = self.factory
        settings = factory.settings
        self._rx = bytearray()
        # Covers peers that never complete the RawSocket handshake or never say HELLO.
        self._hello_timer = factory.clock.callLater(settings.hello_timeout, self._hello_deadline)
        enable_tcp_keepalive(self.transport, settings.heartbeat_interval, settings.heartbeat_timeout)

    def _on_handshake_complete(self) -> None:
        factory = self.factory
        self._conn = open_connection(self, "rawsocket", self._hello_timer)
        self._hello_timer = None
        if factory.settings.rawsocket_ping:
            self._start_pinging()

    def _hello_deadline(self) -> None:
        self._hello_timer = None
        if self._conn is not None:
            self._conn.hello_deadline_passed()
        else:
            self.factory.counters["handshake_timeouts"] += 1
            self.transport.abortConnection()

    # ------------------------------------------------------------ framing

    def dataReceived(self, data: bytes) -> None:
        if not self._handshake_complete:
            super().dataReceived(data)  # comes back here with what follows the handshake
            return
        rx = self._rx
        rx += data
        start = 0
        while len(rx) - start >= 4 and self.transport is not None:
            kind = rx[start] & 0x07
            length = int.from_bytes(rx[start + 1:start + 4], "big")
            if rx[start] & 0xF8 or kind > FRAME_PONG:
                self._bad_frame(f"RawSocket frame header {bytes(rx[start:start + 4]).hex()} "
                                "has reserved bits set")
                return
            if length > self.MAX_LENGTH or (kind != FRAME_WAMP and length > _MAX_CONTROL_PAYLOAD):
                self.lengthLimitExceeded(length)
                return
            if len(rx) - start - 4 < length:
                break
            payload = bytes(rx[start + 4:start + 4 + length])
            start += 4 + length
            self._frame(kind, payload)
        if self._rx is rx:
            del rx[:start]

    def _frame(self, kind: int, payload: bytes) -> None:
        if kind == FRAME_WAMP:
            if self._conn is not None:
                self._payload_bytes += len(payload)
                self._conn.receive_payload(payload)
        elif kind == FRAME_PING:
            self._write_frame(FRAME_PONG, payload)
            if not self._pinging:
                self._start_pinging()  # it speaks heartbeats: check it too
        elif payload == self._ping_payload:
            self._ping_payload = None
            if self._pong_timer is not None and self._pong_timer.active():
                self._pong_timer.cancel()
            self._pong_timer = None

    def _bad_frame(self, text: str) -> None:
        conn = self._conn
        if conn is not None:
            conn.session.protocol_violation(text)
        self.transport.abortConnection()
        self._rx = bytearray()

    def lengthLimitExceeded(self, length: int) -> None:
        conn = self._conn
        text = f"message of {length} bytes exceeds the limit of {self.MAX_LENGTH} bytes (limits.max_message_size)"
        if conn is not None:
            conn.session.abort(errors.PAYLOAD_SIZE_EXCEEDED, text)
        self.factory.counters["oversized"] += 1
        self._rx = bytearray()
        self.transport.loseConnection()

    def _write_frame(self, kind: int, payload: bytes) -> None:
        self.transport.write(bytes((kind,)) + len(payload).to_bytes(3, "big") + payload)

    # --------------------------------------------------------- heartbeats

    def _start_pinging(self) -> None:
        interval = self.factory.settings.heartbeat_interval
        if interval and not self._pinging and self.transport is not None:
            self._pinging = True
            self._ping_call = self.factory.clock.callLater(interval, self._ping)

    def _ping(self) -> None:
        factory = self.factory
        settings = factory.settings
        self._ping_call = factory.clock.callLater(settings.heartbeat_interval, self._ping)
        if self._pong_timer is not None:
            return  # still waiting for the last one
        self._ping_payload = os.urandom(8)
        self._write_frame(FRAME_PING, self._ping_payload)
        self._pong_timer = factory.clock.callLater(settings.heartbeat_timeout, self._no_pong)

    def _no_pong(self) -> None:
        self._pong_timer = None
        self.factory.counters["heartbeat_timeouts"] += 1
        if self._conn is not None:
            self._conn.count("heartbeat_timeouts")
        self.log.info("No RawSocket PONG from {peer} within {t}s: closing",
                      peer=peer_of(self), t=self.factory.settings.heartbeat_timeout)
        self.transport.abortConnection()

    def _stop_timers(self) -> None:
        for name in ("_hello_timer", "_ping_call", "_pong_timer"):
            timer = getattr(self, name)
            if timer is not None and timer.active():
                timer.cancel()
            setattr(self, name, None)

    # --------------------------------------------------------- connection

    def connectionLost(self, reason) -> None:
        self._stop_timers()
        close_connection(self)

    def _write_wamp(self, data: bytes) -> None:
        if 0 < self._max_len_send < len(data):
            self._oversized(len(data))
            return
        self.sendString(data)

    def _oversized(self, size: int) -> None:
        log.warn("Not sending a {size}-byte message to {peer}: it accepts at most {limit}",
                      size=size, peer=self._conn.info.peer, limit=self._max_len_send)

    def payload_bytes_received(self) -> int:
        return self._payload_bytes

    def close_after_flush(self) -> None:
        self.transport.loseConnection()

    def drop_now(self) -> None:
        self.transport.abortConnection()


class RouterRawSocketFactory(WampListener, WampRawSocketServerFactory):
    protocol = RouterRawSocketProtocol

    def __init__(self, router, serializers, settings: ListenerSettings, *, clock) -> None:
        super().__init__(lambda: None, serializers=serializers)
        self.listen_with(router, settings, clock)
        # RawSocket announces its limit as a power of two, at most 2**24.
        self.setProtocolOptions(maxMessagePayloadSize=max(512, min(settings.max_message_size, 2**24)))
