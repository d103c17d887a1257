"""WAMP over WebSocket: Autobahn's protocol, with our decoding and send path.

Sending: a server's WebSocket frame is a 2-10 byte header and the payload,
unmasked.  When no compression was negotiated and nothing else is in the
middle of being sent, we frame the message ourselves and hand it to the TCP
transport in one write; Autobahn's general path (per-frame logging arguments,
statistics, chopping) costs more than routing the message.  Anything unusual
falls back to ``sendMessage``.  That path, and every other place we lean on
Autobahn's internals, is in autobahn_overrides.py.
"""

from autobahn.twisted.websocket import WampWebSocketServerFactory, WampWebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny

from .autobahn_overrides import (WebSocketFactoryOverrides, WebSocketProtocolOverrides, install_masker,
                                 object_serializer, peer_of, wamp_serializer)
from .connection import Connection, WampListener, close_connection, open_connection
from .liveness import enable_tcp_keepalive
from ..config.limits import ListenerSettings


# Upgrade-request headers a session keeps in its TransportInfo (lower case).
# Credentials (authorization, cookie) are deliberately not among them.
KEPT_HEADERS = ("host", "origin", "user-agent", "x-forwarded-for", "x-real-ip")

class RouterWebSocketProtocol(WebSocketProtocolOverrides, WampWebSocketServerProtocol):
    _conn: Connection | None = None

    def onConnect(self, request):
        origins = getattr(self.factory, "origin_policy", None)
        origin = request.headers.get("origin")
        if origins is not None and not origins.allows(origin):
            raise ConnectionDeny(403, f"origin {_printable(origin)} not allowed (http.allowed_origins)")
        return super().onConnect(request)

    def onOpen(self) -> None:
        factory = self.factory
        settings = factory.settings
        self._binary = object_serializer(wamp_serializer(self)).BINARY
        hello_timer = factory.clock.callLater(settings.hello_timeout, self._hello_deadline)
        # The upgrade request's headers were for the handshake; a session keeps
        # the few that say who is calling (about a kilobyte less per session).
        headers = self.http_headers or {}
        self.http_headers = {k: headers[k] for k in KEPT_HEADERS if k in headers}
        proxies = getattr(factory, "trusted_proxies", None)
        peer = peer_of(self)
        if proxies is not None:
            peer = proxies.client_peer(peer, self.http_headers.get("x-forwarded-for"))
        self._conn = open_connection(self, "websocket", hello_timer, peer=peer,
                                     http_headers=self.http_headers,
                                     http_query=self.http_request_params or {})
        enable_tcp_keepalive(self.transport, settings.heartbeat_interval, settings.heartbeat_timeout)
        self.http_request_data = None  # the raw upgrade request: parsed, no longer needed

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
        close_connection(self)

    def close_after_flush(self) -> None:
        if self.state == WebSocketProtocol.STATE_OPEN:
            self.sendClose(WebSocketProtocol.CLOSE_STATUS_CODE_NORMAL)

    def drop_now(self) -> None:
        self.dropConnection(abort=True)


def _printable(value: str, limit: int = 100) -> str:
    """A peer-supplied value, safe to quote in a status line or a log."""
    text = "".join(c if " " <= c <= "~" else "?" for c in value[:limit])
    return repr(text + ("..." if len(value) > limit else ""))


class RouterWebSocketFactory(WebSocketFactoryOverrides, WampListener, WampWebSocketServerFactory):
    protocol = protocol_base = RouterWebSocketProtocol

    def __init__(self, router, serializers, settings: ListenerSettings, *, clock,
                 url: str | None = None) -> None:
        install_masker()
        super().__init__(lambda: None, url=url, serializers=serializers)
        self.listen_with(router, settings, clock)
        self.setProtocolOptions(
            maxMessagePayloadSize=settings.max_message_size,
            maxFramePayloadSize=settings.max_message_size,
            openHandshakeTimeout=settings.hello_timeout,
            failByDrop=False,
            # Text frames carry JSON, and orjson refuses invalid UTF-8 as it
            # decodes (the session is aborted); validating twice costs time.
            utf8validateIncoming=False,
        )
        if settings.heartbeat_interval:
            # Autobahn pings every interval and drops the connection when
            # neither a PONG nor any other frame came back within the timeout.
            self.setProtocolOptions(autoPingInterval=settings.heartbeat_interval,
                                    autoPingTimeout=settings.heartbeat_timeout)
