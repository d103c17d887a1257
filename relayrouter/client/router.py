"""A client's way out to the router (a connector's, ``relayrouter tunnel``'s):
one session, kept up forever.

Theory of operation
-------------------
:class:`RouterConnection` is a Twisted service.  Each connection attempt is
one Autobahn :class:`~autobahn.twisted.component.Component` with no retries of
its own: it connects (WebSocket or RawSocket, TLS or not), joins the realm
with our :class:`~.credentials.Credentials` and runs until the session or
the connection ends.  Then the service decides when to try again:

* a session that was up, or a router that cannot be reached: jittered
  exponential backoff (:class:`~.backoff.Backoff`, reset by every join);
* the router refused us (wrong credentials, unknown realm, not authorized):
  a wrong credential does not fix itself, and retrying fast would only feed
  the router's failed-login limit, so we wait at least ``auth_retry``
  (plus jitter).

Each distinct trouble is logged once (an error for a refused credential, a
warning otherwise) and then not again until it changes or the session is up
again; :meth:`describe` always tells the latest.  Autobahn's own
per-attempt log lines are dropped for the same reason.

``status`` goes ``init`` -> ``connecting`` -> ``ready`` and back to
``connecting`` whenever the session is lost.  ``ready`` means joined *and*
the connector's ``on_join`` callback has finished; if it fails, the session
is closed and retried like a lost one.
"""

import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

from autobahn.twisted.component import Component
from autobahn.twisted.wamp import Session
from autobahn.wamp.exception import ApplicationError, TransportLost
from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger

from relayrouter.e2e.wamp import enable_payload_passthru

from .backoff import Backoff
from .credentials import Credentials, TlsClient
from .errors import ConfigError

# ABORT reasons that mean "this credential or configuration will not work".
REFUSALS = frozenset({
    "wamp.error.authentication_failed",
    "wamp.error.no_auth_method",
    "wamp.error.not_authorized",
    "wamp.error.authorization_failed",
    "wamp.error.no_such_realm",
    "wamp.error.no_such_role",
})
SCHEMES = {"ws": ("websocket", False, 80), "wss": ("websocket", True, 443),
           "rs": ("rawsocket", False, None), "rss": ("rawsocket", True, None)}
SERIALIZERS = ("cbor", "msgpack", "json")


@dataclass(frozen=True)
class RouterSettings:
    url: str
    realm: str
    credentials: Credentials = field(default_factory=Credentials)
    tls: TlsClient | None = None
    serializer: str = "cbor"
    retry_initial: float = 0.5
    retry_max: float = 30.0
    auth_retry: float = 60.0
    connect_timeout: int = 10
    # announce payload_passthru_mode in HELLO (needed to publish or call with ppt_* options)
    payload_passthru: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in SCHEMES:
            raise ConfigError(f"--router: {self.url!r} must start with ws://, wss://, rs:// or rss://")
        if not parts.hostname:
            raise ConfigError(f"--router: {self.url!r} has no host")
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"--router: {self.url!r} has a bad port") from None
        if port is None and SCHEMES[parts.scheme][2] is None:
            raise ConfigError(f"--router: {self.url!r}: RawSocket URLs need a port")
        if not self.realm:
            raise ConfigError("--realm: required")
        if self.serializer not in SERIALIZERS:
            raise ConfigError(f"--serializer: {self.serializer!r} is not one of {', '.join(SERIALIZERS)}")
        if self.credentials.method == "tls" and not (self.tls and self.tls.cert_file):
            raise ConfigError("--auth tls: --tls-cert and --tls-key are required")
        if not 0 < self.retry_initial <= self.retry_max:
            raise ConfigError("--retry-max: must be at least the initial retry delay and above 0")
        if self.auth_retry <= 0:
            raise ConfigError("--auth-retry: must be above 0")

    @property
    def kind(self) -> str:
        return SCHEMES[urlsplit(self.url).scheme][0]

    @property
    def secure(self) -> bool:
        return SCHEMES[urlsplit(self.url).scheme][1]

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or SCHEMES[parts.scheme][2]

    @property
    def http_base(self) -> str:
        """The router's HTTP site on the same listener (``http(s)://host:port``)."""
        parts = urlsplit(self.url)
        return f"{'https' if self.secure else 'http'}://{parts.netloc}"


class _Attempt:
    """One connection attempt; ``abandoned`` once the service stopped during it."""

    def __init__(self) -> None:
        self.abandoned = False
        self.session = None


class _ConnectorSession(Session):
    """Joins with the connector's credentials and answers their challenge."""

    def onConnect(self) -> None:
        attempt = self.config.extra["attempt"]
        attempt.session = self
        if attempt.abandoned:
            self.disconnect()
            return
        credentials = self.config.extra["credentials"]
        if self.config.extra.get("payload_passthru"):
            enable_payload_passthru(self)
        self.join(self.config.realm, authmethods=credentials.authmethods,
                  authid=credentials.authid, authextra=credentials.authextra)

    def onChallenge(self, challenge):
        if not _can_send(self._transport):
            # The CHALLENGE crossed our close (the service stopped while we were connecting):
            # an answer cannot be sent, and Autobahn's failure to send it would be nobody's
            # (an unhandled error). Left unanswered: the connection is going away.
            return defer.Deferred()
        return self.config.extra["credentials"].answer(challenge)

    # Autobahn's Component session (the "shim") leaves calls, publishes and the
    # like of a lost session waiting forever; fail them, as ApplicationSession does.
    def onLeave(self, details):
        self._errback_outstanding_requests(ApplicationError(details.reason, details.message))
        return super().onLeave(details)

    def onDisconnect(self):
        self._errback_outstanding_requests(TransportLost())
        return super().onDisconnect()


def _can_send(transport) -> bool:
    """Whether a WAMP message can still go out on ``transport`` (a WebSocket that began to
    close cannot send; a RawSocket writes until it is gone)."""
    state = getattr(transport, "state", None)
    return transport is not None and (state is None or state == transport.STATE_OPEN)


class _QuietLog:
    """Autobahn's Component logs each attempt and each failure, with its traceback;
    twistd would print them all, at any level. What they say is in ``describe()``
    and in our own once-per-trouble lines, so they are dropped."""

    def _drop(self, format, **kw) -> None:
        pass

    critical = error = warn = info = debug = trace = _drop


class RouterConnection(service.Service):
    """Keeps one session to the router up; calls ``on_join(session, details)``
    (may return a Deferred) when it is, ``on_leave(reason)`` when it is lost."""

    log = Logger()

    def __init__(self, settings: RouterSettings, on_join: Callable | None = None,
                 on_leave: Callable | None = None, reactor=None, backoff: Backoff | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.settings = settings
        self.reactor = reactor
        self._on_join = on_join
        self._on_leave = on_leave
        self.backoff = backoff or Backoff(settings.retry_initial, settings.retry_max)
        self.status = "init"
        self.session = None
        self.attempts = 0  # since the last join
        self.joins = 0
        self.last_error: dict | None = None
        self.connected_since: float | None = None
        self._component = None
        self._run: defer.Deferred | None = None
        self._retry = None
        self._failure = None  # the exception that ended the current attempt
        self._logged = None  # (kind, message) last logged above debug
        self._ready_waiters: list[defer.Deferred] = []

    # ------------------------------------------------------------ service

    def startService(self) -> None:
        super().startService()
        self._attempt()

    def stopService(self):
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        for d in self._ready_waiters:
            d.errback(defer.CancelledError("router connection stopped"))
        self._ready_waiters = []
        self.status = "init"
        component, self._component = self._component, None
        if component is None:
            return defer.succeed(None)
        self._attempt_now.abandoned = True
        session = self._attempt_now.session
        if session is None or not session.is_attached():
            # Still connecting: Autobahn's Component cannot stop that cleanly, so
            # we let the attempt end by itself; a late connection hangs up at once.
            if session is not None and session._transport is not None:
                session._transport.close()
            return defer.succeed(None)
        run = self._run
        component.stop()
        return run.addTimeout(5, self.reactor, onTimeoutCancel=lambda *_: session._transport.abort())

    def when_ready(self) -> defer.Deferred:
        """Fires with the session once ``status`` is ``ready``."""
        if self.status == "ready":
            return defer.succeed(self.session)
        d = defer.Deferred()
        self._ready_waiters.append(d)
        return d

    def describe(self) -> dict:
        """What ``GET /status`` shows about the router side (no secrets)."""
        return {
            "status": self.status,
            "router": self.settings.url,
            "realm": self.settings.realm,
            "authmethod": self.settings.credentials.method,
            "authid": self.session_authid(),
            "attempts": self.attempts,
            "connected_since": self.connected_since,
            "last_error": self.last_error,
        }

    def session_authid(self) -> str | None:
        details = self.session.session_details if self.session is not None else None
        return getattr(details, "authid", None) or self.settings.credentials.authid

    # ------------------------------------------------------------ attempts

    def _attempt(self) -> None:
        self._retry = None
        if not self.running:
            return
        self.status = "connecting"
        self.attempts += 1
        self._failure = None
        self._setup_error = None
        self._attempt_now = _Attempt()
        component = Component(
            transports=[self._transport()], realm=self.settings.realm,
            extra={"credentials": self.settings.credentials, "attempt": self._attempt_now,
                   "payload_passthru": self.settings.payload_passthru},
            session_factory=_ConnectorSession)
        component.log = _QuietLog()
        component.on("join", self._joined)
        component.on("leave", self._left)
        component.on("connectfailure", self._connect_failed)
        self._component = component
        self._run = component.start(self.reactor)
        self._run.addBoth(self._ended, component)

    def _transport(self) -> dict:
        s = self.settings
        endpoint = endpoints.HostnameEndpoint(self.reactor, s.host, s.port, timeout=s.connect_timeout)
        if s.secure:
            endpoint = endpoints.wrapClientTLS((s.tls or TlsClient()).creator(s.host), endpoint)
        transport = {"type": s.kind, "url": s.url, "endpoint": endpoint, "max_retries": 0}
        if s.kind == "websocket":
            transport["serializers"] = [s.serializer]
        else:
            transport["serializer"] = s.serializer
        return transport

    def _connect_failed(self, component, error) -> None:
        self._failure = error

    def _left(self, session, details) -> None:
        if details.reason not in ("wamp.close.normal", "wamp.close.goodbye_and_out"):
            self._failure = ApplicationError(details.reason, details.message)

    @defer.inlineCallbacks
    def _joined(self, session, details):
        self.session = session
        try:
            if self._on_join is not None:
                yield self._on_join(session, details)
        except Exception as e:
            self._setup_error = f"setting up the session failed: {_describe(e)}"
            session.leave("wamp.close.normal", "connector setup failed")
            return
        if self.session is not session or not session.is_attached():
            return
        self.status = "ready"
        self.connected_since = time.time()
        self.attempts = 0
        self.joins += 1
        self.backoff.reset()
        self._logged = None
        self.log.info("joined realm {realm} at {url} as {authid} ({authrole})", realm=details.realm,
                      url=self.settings.url, authid=details.authid, authrole=details.authrole)
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(session)

    def _ended(self, result, component) -> None:
        if component is not self._component:
            return  # an attempt abandoned by stopService
        was_ready = self.status == "ready"
        self.session = None
        self.connected_since = None
        self._component = None
        self.status = "connecting" if self.running else "init"
        kind, message = self._classify(self._failure, result)
        if self._setup_error is not None:
            kind, message = "setup", self._setup_error
        if was_ready and self._on_leave is not None:
            try:
                self._on_leave(message)
            except Exception:
                self.log.failure("on_leave of the connector failed")
        if not self.running:
            return
        if was_ready:
            self.log.warn("lost the router session: {message}; reconnecting with backoff", message=message)
            self._report(kind, message, logged=True)
        elif kind is not None:
            self._report(kind, message)
        delay = self.backoff.next()
        if kind == "auth":
            slow = self.settings.auth_retry
            delay = max(delay, slow * (1 + self.backoff.jitter * self.backoff.rng()))
        self._retry = self.reactor.callLater(delay, self._attempt)

    @staticmethod
    def _classify(failure, result):
        if isinstance(failure, ApplicationError):
            message = failure.error_message()
            return ("auth" if failure.error in REFUSALS else "session"), message
        if failure is not None:
            return "connect", _describe(failure)
        return "session", "the session ended"

    def _report(self, kind: str, message: str, logged: bool = False) -> None:
        self.last_error = {"kind": kind, "message": message, "at": time.time()}
        # The same trouble in other words ("try again in 41 s" / "in 40 s") is no news.
        key = (kind, message.split(":")[0])
        if self._logged == key or logged:
            self._logged = key
            return  # said already; describe() has the latest
        self._logged = key
        if kind == "auth":
            self.log.error(
                "the router refused us: {message}. Check the credential (--auth {method}) and --realm;"
                " retrying no more often than every {every:.0f} s, logged again only if this changes",
                message=message, method=self.settings.credentials.method, every=self.settings.auth_retry)
        else:
            self.log.warn("router {url}: {message}; retrying with backoff (up to {max:.0f} s apart),"
                          " logged again only if this changes",
                          url=self.settings.url, message=message, max=self.settings.retry_max)


def _describe(error) -> str:
    name = type(error).__name__
    text = str(error).strip() or name
    return text if name in text else f"{name}: {text}"

