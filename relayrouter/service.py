"""Build the running router from a Config: core, listeners, logging."""

import txaio

txaio.use_twisted()

from twisted.application import service  # noqa: E402
from twisted.internet import defer, endpoints  # noqa: E402
from twisted.logger import Logger  # noqa: E402

from .config import Config, Listener  # noqa: E402
from .core.auth import AnonymousAuthenticator  # noqa: E402
from .core.realm import RealmPolicy  # noqa: E402
from .core.router import Router, RouterObserver  # noqa: E402
from .transport.connection import OutboundLimits  # noqa: E402
from .transport.http import build_site  # noqa: E402
from .transport.rawsocket import RouterRawSocketFactory  # noqa: E402
from .transport.serializers import router_serializers  # noqa: E402
from .transport.websocket import RouterWebSocketFactory  # noqa: E402

log = Logger(namespace="relayrouter")


class LoggingObserver(RouterObserver):
    """Logs each fault once, with who caused it and never a credential."""

    def protocol_violation(self, session, text: str) -> None:
        log.info("Protocol violation by {peer}: {text}", peer=session.transport.peer, text=text)

    def internal_error(self, session, error) -> None:
        log.failure("Internal error handling a message from {peer}",
                    failure=_as_failure(error), peer=session.transport.peer)

    def auth_denied(self, session, deny) -> None:
        log.info("Authentication refused for {peer}: {text}", peer=session.transport.peer,
                 text=deny.message)


def _as_failure(error):
    from twisted.python.failure import Failure

    if isinstance(error, Failure):
        return error
    try:
        raise error
    except BaseException:
        return Failure()


def build_router(config: Config, clock) -> Router:
    router = Router(clock=clock.seconds, observer=LoggingObserver())
    for realm in config.realms:
        authenticators = {}
        if realm.anonymous:
            authenticators["anonymous"] = AnonymousAuthenticator(realm.anonymous_role)
        router.add_realm(
            realm.name,
            authenticators=authenticators,
            policy=RealmPolicy(
                disclose_caller=realm.disclose_caller,
                disclose_publisher=realm.disclose_publisher,
                outbound=realm.outbound,
            ),
        )
    return router


class RouterService(service.MultiService):
    """The router and its listeners, as one Twisted service."""

    def __init__(self, config: Config, reactor=None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.router = build_router(config, reactor)
        self.serializers = router_serializers()
        self.listeners: list[ListenerService] = []
        for listener in config.listeners:
            self._add_listener(listener)

    def _add_listener(self, listener: Listener) -> None:
        limits = self.config.limits
        common = dict(clock=self.reactor, outbound_limits=OutboundLimits(),
                      hello_timeout=limits.hello_timeout,
                      max_message_size=limits.max_message_size)
        if listener.kind == "websocket":
            factory = RouterWebSocketFactory(self.router, self.serializers, **common)
            factory = build_site(self.router, factory, listener.path)
        else:
            factory = RouterRawSocketFactory(self.router, self.serializers, **common)
        listening = ListenerService(self.reactor, listener, factory, self.router)
        listening.setServiceParent(self)
        self.listeners.append(listening)

    def when_listening(self) -> defer.Deferred:
        """Fires with the listening ports, once all are bound."""
        return defer.gatherResults([s.ready for s in self.listeners], consumeErrors=True)


class ListenerService(service.Service):
    """Binds one configured endpoint while the service runs."""

    def __init__(self, reactor, listener: Listener, factory, router) -> None:
        self.reactor = reactor
        self.listener = listener
        self.factory = factory
        self.router = router
        self.port = None
        self.ready: defer.Deferred = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        endpoint = endpoints.serverFromString(self.reactor, self.listener.endpoint)
        d = endpoint.listen(self.factory)
        d.addCallbacks(self._listening, self._failed)

    def _listening(self, port):
        self.port = port
        self._announce(port)
        self.ready.callback(port)

    def _failed(self, failure):
        log.critical("Cannot listen on {endpoint}: {error}", endpoint=self.listener.endpoint,
                     error=failure.getErrorMessage())
        self.ready.errback(failure)
        if self.reactor.running:
            self.reactor.stop()

    def stopService(self):
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()

    def _announce(self, port) -> None:
        listener = self.listener
        address = port.getHost()
        host = getattr(address, "host", None)
        if listener.kind == "websocket" and host is not None:
            url = f"ws://{_url_host(host)}:{address.port}/{listener.path}"
            if _is_tls(port):
                url = "wss" + url[2:]
            log.info("relayrouter listening: WebSocket at {url} (realms: {realms})",
                     url=url, realms=", ".join(self.router.realms))
        else:
            log.info("relayrouter listening: {kind} on {address} (realms: {realms})",
                     kind=listener.kind, address=address, realms=", ".join(self.router.realms))


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_tls(port) -> bool:
    return "TLS" in type(getattr(port, "factory", None) or object()).__name__
