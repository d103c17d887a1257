"""A client of the seed's access flow, for ``relayrouter host`` and ``relayrouter file``.

``POST <access URL>`` with ``Authorization: <JWT>`` gives ``{"uri": ...}``;
the client opens that WebSocket and exchanges plain text and binary frames.
It works against relayrouter's raw relay and against the seed's own relay.
:class:`Reconnecting` keeps one such connection up forever: after a failure
it waits with the connector base's jittered exponential backoff
(``relayrouter.client.backoff``), a refusal (HTTP 4xx) is logged once and
retried at the maximum delay.  (The connector base's RouterConnection is
for WAMP sessions; this is its counterpart for the seed's raw streams.)

Sending never buffers without bound: the client is its connection's
producer, and while the socket's buffer is over ``UPLINK_BUFFER`` (the
uplink is slower than the source) ``send`` drops the frame and says so;
the caller counts it.
"""

import json
from typing import Callable

import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer
from twisted.logger import Logger

from relayrouter.client.backoff import Backoff

log = Logger(namespace="relayrouter.relay.client")

UPLINK_BUFFER = 1024 * 1024  # bytes waiting in the socket buffer before frames are dropped


class AccessRefused(Exception):
    """The access point refused the token (HTTP 4xx): retrying soon will not help."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"HTTP {code}: {message}")
        self.code = code


@defer.inlineCallbacks
def access(access_url: str, token: str, reactor=None):
    """The WebSocket URI (with its one-time code) for ``token`` at ``access_url``."""
    kwargs = {"reactor": reactor} if reactor is not None else {}
    # A fresh connection each time: one attempt, one POST; a pooled connection
    # could still reach a router that has since gone (its codes with it).
    response = yield treq.post(access_url, headers={"Authorization": [token]}, persistent=False, **kwargs)
    body = yield response.content()
    if response.code != 200:
        try:
            message = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            message = body[:200].decode("utf8", "replace")
        if 400 <= response.code < 500:
            raise AccessRefused(response.code, message)
        raise IOError(f"access point answered HTTP {response.code}: {message}")
    return json.loads(body)["uri"]


class _Protocol(WebSocketClientProtocol):
    def onOpen(self) -> None:  # noqa: N802
        self.factory.owner._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802,N803
        self.factory.owner.on_frame(payload, isBinary)

    def onClose(self, wasClean, code, reason) -> None:  # noqa: N802,N803
        self.factory.owner._closed(self, code, reason)


class Reconnecting:
    """One raw relay connection kept up: ``send`` frames, ``on_frame(payload, is_binary)`` receives."""

    def __init__(self, reactor, access_url: str, token: Callable[[], str], on_frame,
                 *, initial: float = 0.5, maximum: float = 30.0, on_open=None, on_close=None) -> None:
        self.reactor = reactor
        self.access_url = access_url
        self.token = token  # called for each attempt: tokens may be re-read or re-minted
        self.on_frame = on_frame
        self.on_open = on_open or (lambda: None)
        self.on_close = on_close or (lambda: None)
        self.maximum = maximum
        self.backoff = Backoff(initial=initial, maximum=maximum)
        self.proto = None
        self.attempts = 0
        self.connections = 0
        self._running = False
        self._timer = None
        self._refusal_logged = False

    def start(self) -> None:
        self._running = True
        self._attempt()

    def stop(self) -> None:
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.proto is not None:
            self.proto.sendClose(1000)

    @property
    def connected(self) -> bool:
        return self.proto is not None

    def send(self, payload: bytes, binary: bool) -> bool:
        """Send one frame; False when not connected or the uplink is full (the frame is not kept)."""
        if self.proto is None or self.uplink_full:
            return False
        self.proto.sendMessage(payload, isBinary=binary)
        return True

    # ---------------------------------------------------------------- loop

    def _attempt(self) -> None:
        self._timer = None
        if not self._running:
            return
        self.attempts += 1
        d = access(self.access_url, self.token(), self.reactor)
        d.addCallback(self._connect)
        d.addErrback(self._failed)

    def _connect(self, uri: str):
        factory = WebSocketClientFactory(uri)
        factory.protocol = _Protocol
        factory.owner = self
        factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0, autoPingInterval=20,
                                   autoPingTimeout=20)
        factory.clientConnectionFailed = lambda connector, reason: self._failed(reason)
        tls = None
        if factory.isSecure:
            from twisted.internet import ssl

            tls = ssl.optionsForClientTLS(factory.host)  # verified against the system's CAs
        connectWS(factory, contextFactory=tls)

    # IPushProducer for the connection's transport: it says when the uplink backs up.
    uplink_full = False

    def pauseProducing(self) -> None:  # noqa: N802
        self.uplink_full = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.uplink_full = False

    def stopProducing(self) -> None:  # noqa: N802
        self.uplink_full = True

    def _opened(self, proto) -> None:
        self.proto = proto
        self.uplink_full = False
        proto.transport.bufferSize = UPLINK_BUFFER
        proto.transport.registerProducer(self, True)
        self.connections += 1
        self.backoff.reset()
        self._refusal_logged = False
        log.info("Connected to {url}", url=self.access_url)
        self.on_open()

    def _closed(self, proto, code, reason) -> None:
        was_open = self.proto is proto
        self.proto = None
        if was_open:
            log.info("Connection closed ({code} {reason}); reconnecting", code=code, reason=reason or "")
            self.on_close()
        self._again()

    def _failed(self, failure) -> None:
        refused = failure.check(AccessRefused) if hasattr(failure, "check") else None
        if refused and not self._refusal_logged:
            log.warn("Access refused: {error}; retrying every {max}s", error=failure.getErrorMessage(),
                     max=self.maximum)
            self._refusal_logged = True
        elif not refused:
            message = failure.getErrorMessage() if hasattr(failure, "getErrorMessage") else str(failure)
            log.info("Cannot connect: {error}; retrying", error=message)
        self._again(self.maximum if refused else None)

    def _again(self, delay: float | None = None) -> None:
        if not self._running or self._timer is not None:
            return
        delay = self.backoff.next() if delay is None else delay
        self._timer = self.reactor.callLater(delay, self._attempt)
