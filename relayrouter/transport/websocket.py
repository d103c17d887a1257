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

from . import masking
from .connection import Connection, ListenerSettings, close_connection, open_connection
from .inbound import DEFAULT_MAX_DEPTH
from .liveness import enable_tcp_keepalive

masking.install()


# Upgrade-request headers a session keeps in its TransportInfo (lower case).
# Credentials (authorization, cookie) are deliberately not among them.
KEPT_HEADERS = ("host", "origin", "user-agent", "x-forwarded-for", "x-real-ip")

_OPEN = WebSocketProtocol.STATE_OPEN
_GROUND = WebSocketProtocol.SEND_STATE_GROUND
_HEADER16 = struct.Struct("!BBH").pack
_HEADER64 = struct.Struct("!BBQ").pack


class _SendQueue(list):
    """The part of collections.deque Autobahn's send path uses."""

    __slots__ = ()

    def popleft(self):
        return self.pop(0)


class RouterWebSocketProtocol(WampWebSocketServerProtocol):
    _conn: Connection | None = None
    # Autobahn's WAMP mixin reads these on the handler; we never use its handler path.
    _authid = None
    _session_id = None

    def onConnect(self, request):
        origins = getattr(self.factory, "origin_policy", None)
        origin = request.headers.get("origin")
        if origins is not None and not origins.allows(origin):
            raise ConnectionDeny(403, f"origin {_printable(origin)} not allowed (http.allowed_origins)")
        return super().onConnect(request)

    def onOpen(self) -> None:
        factory = self.factory
        self._binary = self._serializer._serializer.BINARY
        hello_timer = factory.clock.callLater(factory.hello_timeout, self._hello_deadline)
        # The upgrade request's headers were for the handshake; a session keeps
        # the few that say who is calling (about a kilobyte less per session).
        headers = self.http_headers or {}
        self.http_headers = {k: headers[k] for k in KEPT_HEADERS if k in headers}
        self._conn = open_connection(self, "websocket", hello_timer,
                                     http_headers=self.http_headers,
                                     http_query=self.http_request_params or {})
        enable_tcp_keepalive(self.transport, factory.heartbeat_interval, factory.heartbeat_timeout)
        self.http_request_data = None  # the raw upgrade request: parsed, no longer needed

    def _hello_deadline(self) -> None:
        if self._conn is not None:
            self._conn.hello_deadline_passed()

    def _connectionMade(self) -> None:
        super()._connectionMade()
        # Autobahn gives each connection a deque (~600 bytes) for sends it
        # must pace; a list does for the rare times it is used.
        self.send_queue = _SendQueue()

    # Autobahn's versions of these two evaluate debug-log arguments and fire
    # observer signals for every message; we need neither.
    def dataReceived(self, data: bytes) -> None:
        self._dataReceived(data)

    def onMessageEnd(self) -> None:
        if not self.failedByMe:
            self.onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

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
        close_connection(self)

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


def _printable(value: str, limit: int = 100) -> str:
    """A peer-supplied value, safe to quote in a status line or a log."""
    text = "".join(c if " " <= c <= "~" else "?" for c in value[:limit])
    return repr(text + ("..." if len(value) > limit else ""))


class RouterWebSocketFactory(ListenerSettings, WampWebSocketServerFactory):
    protocol = RouterWebSocketProtocol

    def __init__(self, router, serializers, *, clock, outbound_limits, hello_timeout: float,
                 max_message_size: int, url: str | None = None, max_depth: int = DEFAULT_MAX_DEPTH,
                 heartbeat_interval: float = 0, heartbeat_timeout: float = 20.0) -> None:
        super().__init__(lambda: None, url=url, serializers=serializers)
        self.take_settings(router, clock=clock, outbound_limits=outbound_limits,
                           hello_timeout=hello_timeout, max_depth=max_depth,
                           heartbeat_interval=heartbeat_interval, heartbeat_timeout=heartbeat_timeout)
        self.setProtocolOptions(
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
            openHandshakeTimeout=hello_timeout,
            failByDrop=False,
            # Text frames carry JSON, and orjson refuses invalid UTF-8 as it
            # decodes (the session is aborted); validating twice costs time.
            utf8validateIncoming=False,
        )
        if heartbeat_interval:
            # Autobahn pings every interval and drops the connection when
            # neither a PONG nor any other frame came back within the timeout.
            self.setProtocolOptions(autoPingInterval=heartbeat_interval,
                                    autoPingTimeout=heartbeat_timeout)

    def setProtocolOptions(self, **options) -> None:
        # Autobahn's setProtocolOptions resets allowNullOrigin to False on every
        # call unless it is passed, and then refuses `Origin: null` (a page
        # opened from a file) with 400 before we are asked.  Autobahn admits
        # every origin here; the listener's OriginPolicy decides in onConnect.
        options.setdefault("allowNullOrigin", True)
        super().setProtocolOptions(**options)
        self._options_as_class_attributes()

    def _options_as_class_attributes(self) -> None:
        """Autobahn copies each of ~40 options from the factory onto every new
        connection unless the protocol class already has it; giving the
        factory its own protocol subclass holding the current values keeps a
        few kilobytes per connection out of the instance dicts."""
        base = RouterWebSocketProtocol
        options = {name: _as_class_attribute(getattr(self, name))
                   for name in base.CONFIG_ATTRS if hasattr(self, name)}
        self.protocol = type(base.__name__, (base,), options)


def _as_class_attribute(value):
    # A function stored on a class would become a method (e.g. the
    # permessage-deflate accept callback); keep it a plain callable.
    return staticmethod(value) if callable(value) else value
