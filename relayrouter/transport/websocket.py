"""WAMP over WebSocket: Autobahn's protocol, with our decoding and send path."""

from collections import Counter

from autobahn.twisted.websocket import WampWebSocketServerFactory, WampWebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.logger import Logger

from ..core.peer import TransportInfo
from .connection import Connection
from .inbound import DEFAULT_MAX_DEPTH
from .liveness import enable_tcp_keepalive


class RouterWebSocketProtocol(WampWebSocketServerProtocol):
    log = Logger()

    _conn: Connection | None = None
    # Autobahn's WAMP mixin reads these on the handler; we never use its handler path.
    _authid = None
    _session_id = None

    def onOpen(self) -> None:
        factory = self.factory
        details = self._transport_details
        info = TransportInfo(
            kind="websocket",
            peer=details.peer or "",
            serializer=self._serializer.SERIALIZER_ID.split(".")[0],
            is_secure=bool(details.is_secure),
            peer_cert=details.peer_cert,
            channel_id=details.channel_id or {},
            http_headers=dict(self.http_headers or {}),
            http_query={k: v for k, v in (self.http_request_params or {}).items()},
        )
        self._binary = self._serializer._serializer.BINARY
        hello_timer = factory.clock.callLater(factory.hello_timeout, self._hello_deadline)
        self._conn = Connection(factory.router, self, info, self._serializer._serializer,
                                self._write_wamp, factory.outbound_limits, hello_timer,
                                max_depth=factory.max_depth, stall_timeout=factory.stall_timeout)
        enable_tcp_keepalive(self.transport, factory.heartbeat_interval, factory.heartbeat_timeout)
        # Autobahn's isOpen() checks this attribute.
        self._session = self._conn
        factory.connections.add(self._conn)

    def _hello_deadline(self) -> None:
        if self._conn is not None:
            self._conn.hello_deadline_passed()

    def onAutoPingTimeout(self) -> None:
        self.factory.counters["heartbeat_timeouts"] += 1
        if self._conn is not None:
            self._conn.count("heartbeat_timeouts")
        super().onAutoPingTimeout()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        conn = self._conn
        if conn is None:
            return
        if isBinary != self._binary:
            conn.session.protocol_violation(
                f"{'binary' if isBinary else 'text'} WebSocket message on a "
                f"{conn.info.serializer} connection")
            return
        conn.receive_payload(payload)

    def onClose(self, wasClean: bool, code, reason) -> None:
        conn, self._conn = self._conn, None
        self._session = None
        if conn is not None:
            self.factory.connections.discard(conn)
            conn.lost()

    def _write_wamp(self, data: bytes) -> None:
        if self.state == WebSocketProtocol.STATE_OPEN:
            self.sendMessage(data, self._binary)

    def close_after_flush(self) -> None:
        if self.state == WebSocketProtocol.STATE_OPEN:
            self.sendClose(WebSocketProtocol.CLOSE_STATUS_CODE_NORMAL)

    def drop_now(self, reason: str) -> None:
        self.dropConnection(abort=True)


class RouterWebSocketFactory(WampWebSocketServerFactory):
    protocol = RouterWebSocketProtocol

    def __init__(self, router, serializers, *, clock, outbound_limits, hello_timeout: float,
                 max_message_size: int, url: str | None = None, max_depth: int = DEFAULT_MAX_DEPTH,
                 heartbeat_interval: float = 0, heartbeat_timeout: float = 20.0) -> None:
        super().__init__(lambda: None, url=url, serializers=serializers)
        self.router = router
        self.clock = clock
        self.outbound_limits = outbound_limits
        self.hello_timeout = hello_timeout
        self.max_depth = max_depth
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        # A peer that has read nothing for a ping interval and timeout is as dead
        # as one that does not answer pings (its pings wait behind the queue).
        self.stall_timeout = heartbeat_interval + heartbeat_timeout if heartbeat_interval else None
        self.connections: set[Connection] = set()
        # What happened before a session existed (per-session counts are on the Connection).
        self.counters: Counter = Counter()
        self.setProtocolOptions(
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
            openHandshakeTimeout=hello_timeout,
            failByDrop=False,
        )
        if heartbeat_interval:
            # Autobahn pings every interval and drops the connection when
            # neither a PONG nor any other frame came back within the timeout.
            self.setProtocolOptions(autoPingInterval=heartbeat_interval,
                                    autoPingTimeout=heartbeat_timeout)
