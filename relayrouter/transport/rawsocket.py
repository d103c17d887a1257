"""WAMP over RawSocket: Autobahn's framing, with our decoding and send path."""

from autobahn.twisted.rawsocket import WampRawSocketServerFactory, WampRawSocketServerProtocol
from twisted.logger import Logger

from ..core import errors
from ..core.peer import TransportInfo
from .connection import Connection
from .tls import tls_facts


log = Logger(namespace="relayrouter.rawsocket")


class RouterRawSocketProtocol(WampRawSocketServerProtocol):
    _conn: Connection | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        factory = self.factory
        # Covers peers that never complete the RawSocket handshake or never say HELLO.
        self._hello_timer = factory.clock.callLater(factory.hello_timeout, self._hello_deadline)

    def _on_handshake_complete(self) -> None:
        factory = self.factory
        details = self._transport_details
        # Read now: over TLS, Autobahn's details predate the handshake.
        is_secure, peer_cert, channel_id = tls_facts(self.transport)
        info = TransportInfo(
            kind="rawsocket",
            peer=details.peer or "",
            serializer=self._serializer.SERIALIZER_ID.split(".")[0],
            is_secure=is_secure,
            peer_cert=peer_cert,
            channel_id=channel_id,
        )
        self._conn = Connection(factory.router, self, info, self._serializer._serializer,
                                self._write_wamp, factory.outbound_limits, self._hello_timer)
        self._hello_timer = None
        self._session = self._conn
        factory.connections.add(self._conn)

    def _hello_deadline(self) -> None:
        if self._conn is not None:
            self._conn.hello_deadline_passed()
        else:
            self._hello_timer = None
            self.transport.abortConnection()

    def stringReceived(self, payload: bytes) -> None:
        if self._conn is not None:
            self._conn.receive_payload(payload)

    def lengthLimitExceeded(self, length: int) -> None:
        conn = self._conn
        text = f"message of {length} bytes exceeds the limit of {self.MAX_LENGTH} bytes"
        if conn is not None:
            conn.session.abort(errors.PAYLOAD_SIZE_EXCEEDED, text)
        self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        timer = getattr(self, "_hello_timer", None)
        if timer is not None and timer.active():
            timer.cancel()
        conn, self._conn = self._conn, None
        self._session = None
        if conn is not None:
            self.factory.connections.discard(conn)
            conn.lost()

    def _write_wamp(self, data: bytes) -> None:
        if 0 < self._max_len_send < len(data):
            self._oversized(len(data))
            return
        self.sendString(data)

    def _oversized(self, size: int) -> None:
        log.warn("Not sending a {size}-byte message to {peer}: it accepts at most {limit}",
                      size=size, peer=self._conn.info.peer, limit=self._max_len_send)

    def close_after_flush(self) -> None:
        self.transport.loseConnection()

    def drop_now(self, reason: str) -> None:
        self.transport.abortConnection()


class RouterRawSocketFactory(WampRawSocketServerFactory):
    protocol = RouterRawSocketProtocol

    def __init__(self, router, serializers, *, clock, outbound_limits, hello_timeout: float,
                 max_message_size: int) -> None:
        super().__init__(lambda: None, serializers=serializers)
        self.router = router
        self.clock = clock
        self.outbound_limits = outbound_limits
        self.hello_timeout = hello_timeout
        self.connections: set[Connection] = set()
        # RawSocket announces its limit as a power of two, at most 2**24.
        self.setProtocolOptions(maxMessagePayloadSize=max(512, min(max_message_size, 2**24)))
