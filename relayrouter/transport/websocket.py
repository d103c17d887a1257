"""WAMP over WebSocket: Autobahn's protocol, with our decoding and send path."""

from autobahn.twisted.websocket import WampWebSocketServerFactory, WampWebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger

from ..core.peer import TransportInfo
from .connection import Connection
from .tls import tls_facts


class RouterWebSocketProtocol(WampWebSocketServerProtocol):
    log = Logger()

    _conn: Connection | None = None
    # Autobahn's WAMP mixin reads these on the handler; we never use its handler path.
    _authid = None
    _session_id = None

    def onConnect(self, request):
        origins = getattr(self.factory, "origin_policy", None)
        if origins is not None and not origins.allows(request.headers.get("origin")):
            raise ConnectionDeny(403, "origin not allowed")
        return super().onConnect(request)

    def onOpen(self) -> None:
        factory = self.factory
        details = self._transport_details
        is_secure, peer_cert, channel_id = tls_facts(self.transport)
        info = TransportInfo(
            kind="websocket",
            peer=details.peer or "",
            serializer=self._serializer.SERIALIZER_ID.split(".")[0],
            is_secure=is_secure,
            peer_cert=peer_cert,
            channel_id=channel_id,
            http_headers=dict(self.http_headers or {}),
            http_query={k: v for k, v in (self.http_request_params or {}).items()},
        )
        self._binary = self._serializer._serializer.BINARY
        hello_timer = factory.clock.callLater(factory.hello_timeout, self._hello_deadline)
        self._conn = Connection(factory.router, self, info, self._serializer._serializer,
                                self._write_wamp, factory.outbound_limits, hello_timer)
        # Autobahn's isOpen() checks this attribute.
        self._session = self._conn
        factory.connections.add(self._conn)

    def _hello_deadline(self) -> None:
        if self._conn is not None:
            self._conn.hello_deadline_passed()

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
                 max_message_size: int, url: str | None = None) -> None:
        super().__init__(lambda: None, url=url, serializers=serializers)
        self.router = router
        self.clock = clock
        self.outbound_limits = outbound_limits
        self.hello_timeout = hello_timeout
        self.connections: set[Connection] = set()
        self.setProtocolOptions(
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
            openHandshakeTimeout=hello_timeout,
            failByDrop=False,
        )
