"""WAMP over WebSocket: Autobahn's protocol, with our decoding and send path.

Sending: a server's WebSocket frame is a 2-10 byte header and the payload,
unmasked.  When no compression was negotiated and nothing else is in the
middle of being sent, we frame the message ourselves and hand it to the TCP
transport in one write; Autobahn's general path (per-frame logging arguments,
statistics, chopping) costs more than routing the message.  Anything unusual
falls back to ``sendMessage``.
"""

import struct

from autobahn.twisted.websocket import WampWebSocketServerFactory, WampWebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny

from ..core.peer import TransportInfo
from . import masking
from .connection import Connection
from .tls import tls_facts

masking.install()


_OPEN = WebSocketProtocol.STATE_OPEN
_GROUND = WebSocketProtocol.SEND_STATE_GROUND
_HEADER16 = struct.Struct("!BBH").pack
_HEADER64 = struct.Struct("!BBQ").pack


class RouterWebSocketProtocol(WampWebSocketServerProtocol):
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
            # Autobahn's own dicts, shared rather than copied (memory per session).
            http_headers=self.http_headers or {},
            http_query=self.http_request_params or {},
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

    # Autobahn's versions of these two evaluate debug-log arguments and fire
    # observer signals for every message; we need neither.
    def dataReceived(self, data: bytes) -> None:
        self._dataReceived(data)

    def onMessageEnd(self) -> None:
        if not self.failedByMe:
            self.onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

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
        if (self.state != _OPEN or self._perMessageCompress is not None
                or self.send_state != _GROUND or self.send_queue):
            if self.state == _OPEN:
                self.sendMessage(data, self._binary)
            return
        size = len(data)
        first = 0x82 if self._binary else 0x81  # FIN + binary/text opcode
        if size < 126:
            header = bytes((first, size))
        elif size < 65536:
            header = _HEADER16(first, 126, size)
        else:
            header = _HEADER64(first, 127, size)
        if size < 16384:
            self.transport.write(header + data)
        else:
            self.transport.writeSequence((header, data))

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
            # Text frames carry JSON, and orjson refuses invalid UTF-8 as it
            # decodes (the session is aborted); validating twice costs time.
            utf8validateIncoming=False,
        )
