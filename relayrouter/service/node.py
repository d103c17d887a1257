"""Build the running router from a Config: core, listeners, logging."""

import txaio

txaio.use_twisted()
# Autobahn logs every frame at debug level; formatting those events for the
# log file would cost more than routing the message.
txaio.set_global_log_level("info")

from twisted.application import service  # noqa: E402
import platform  # noqa: E402
from collections import Counter  # noqa: E402
import signal  # noqa: E402
import weakref  # noqa: E402

import autobahn  # noqa: E402
import twisted  # noqa: E402

from twisted.internet import defer, endpoints, task  # noqa: E402
from twisted.logger import Logger  # noqa: E402

from .. import __version__  # noqa: E402
from ..config import Config, ConfigError, Listener  # noqa: E402
from .realms import RealmBuilder, add_configured_realm  # noqa: E402
from ..core import errors  # noqa: E402
from ..core.router import Router, RouterObserver  # noqa: E402
from ..transport import autobahn_overrides  # noqa: E402
from ..transport.http import build_site  # noqa: E402
from ..transport.rawsocket import RouterRawSocketFactory  # noqa: E402
from ..transport.serializers import router_serializers  # noqa: E402
from ..transport.tls import wrap as wrap_tls  # noqa: E402
from .metrics import Metrics  # noqa: E402
from ..config.ops import MetricsConfig  # noqa: E402
from .pairing import Pairing  # noqa: E402
from ..transport import ops_http  # noqa: E402
from ..console import Console, ConsoleAccess  # noqa: E402
from .reload import Reloader  # noqa: E402
from .security import Security  # noqa: E402
from .durable import Durable  # noqa: E402
from .tenancy import TenancyWiring  # noqa: E402
from ..transport.websocket import RouterWebSocketFactory  # noqa: E402

log = Logger(namespace="relayrouter")


class LoggingObserver(RouterObserver):
    """Logs each fault once, with who caused it and never a credential; counts refused logins."""

    def __init__(self) -> None:
        # (realm asked for, method tried, ABORT reason) -> refusals; read by metrics.
        self.auth_refusals: Counter = Counter()

    def protocol_violation(self, session, text: str) -> None:
        log.info("Protocol violation by {peer}: {text}", text=text, **_context(session))

    def internal_error(self, session, error) -> None:
        log.failure("Internal error handling a message from {peer}",
                    failure=_as_failure(error), **_context(session))

    def auth_denied(self, session, deny) -> None:
        log.info("Authentication refused for {peer}: {text}", text=deny.message, **_context(session))
        join, authenticator = session._join, session._authenticator
        method = getattr(authenticator, "authmethod", None) or "none"
        self.auth_refusals[(getattr(join, "realm", "") or "", method, deny.reason)] += 1


def _context(session) -> dict:
    """Who a log line is about, for the JSON log's fields: never a credential."""
    join = session._join
    realm = session.realm.name if session.realm is not None else getattr(join, "realm", None)
    return {"peer": session.transport.peer, "realm": realm, "session": session.session_id or None,
            "authid": session.authid or getattr(join, "authid", None)}


def _as_failure(error):
    from twisted.python.failure import Failure

    if isinstance(error, Failure):
        return error
    try:
        raise error
    except BaseException:
        return Failure()


def build_router(config: Config, clock) -> Router:
    router = Router(clock=clock, observer=LoggingObserver())
    for realm in config.realms:
        add_configured_realm(router, realm)
    return router


class RouterService(service.MultiService):
    """The router and its listeners, as one Twisted service."""

    def __init__(self, config: Config, reactor=None, handle_signals: bool = False,
                 reload_config=None) -> None:
        """``reload_config()``: the configuration read again (file + command line),
        for SIGHUP and relayrouter.config.reload; None: nothing to re-read."""
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        autobahn_overrides.verify()
        self.config = config
        self.reactor = reactor
        self.handle_signals = handle_signals
        self.wamp_factories: list = []
        self._stopping = False
        self.router = Router(clock=reactor, observer=LoggingObserver())
        # Authenticators, roles, deny list, tickets.
        self.security = Security(config, self.router, reactor)
        # Who may use the web console ([console]): it reads the deny list, pairs and mailboxes.
        self.console_access = ConsoleAccess(config.console, self.security.admin,
                                            (r.name for r in config.realms))
        self.security.denylist_api.also = self.console_access
        # The durable store, and history and mailboxes on the realms that have them.
        self.durable = Durable(config, self.router, reactor)
        self.durable.admin, self.durable.viewers = self.security.admin, self.console_access
        # Gateway/manager pairs, and the Micronets endpoint for their legacy peers.
        self.pairing = Pairing(config, self.router, self.security.admin, readers=self.console_access)
        # The web console at /console/ and its procedures.
        self.console = Console(self.router, self.console_access)
        # SIGHUP and relayrouter.config.reload: what can change live, applied live.
        self.reloader = Reloader(self, reload_config) if reload_config is not None else None
        # One path for every realm, configured or a tenant: each part above installs its share.
        self.realm_builder = RealmBuilder(self.router, (self.security, self.durable, self.pairing,
                                                        self.console, self.reloader))
        for realm_config in config.realms:
            self.realm_builder.build(realm_config.name, realm_config)
        # Tenants: realms made and unmade at run time from [[realm_templates]].
        self.tenancy = TenancyWiring(config, self.router, self.security, self.realm_builder, self.durable)
        self.durable.report_unclaimed()
        # The remote-lab relay (raw WebSocket streams, practable's access API), if configured.
        self.relay = None
        if config.relay is not None:
            from ..relay.hub import Relay

            self.relay = Relay(config.relay, self.router, self.security, config.limits, reactor)
        # [cluster]: this node's realms routed across the other nodes through NATS.
        self.cluster = None
        if config.cluster is not None:
            from ..cluster import Cluster

            self.cluster = Cluster(config.cluster, self.router, reactor)
            for realm in list(self.router.realms.values()):
                self.cluster.attach(realm)
            # Deny list, one-time tickets, retained events and tenants: in JetStream for every node.
            self.cluster.share_state(self.security, self.tenancy.tenancy)
            # Failed-login budgets spent by every node's failures (cluster/limits.py).
            from ..cluster.limits import SharedLimits

            SharedLimits(self.cluster, self.security.limiter)
            # Mailboxes in the PostgreSQL database every node shares, kept in step by notices (cluster/mailboxes.py).
            from ..cluster.mailboxes import MailboxPeers

            self.durable.share_with(MailboxPeers(self.cluster))
            # The cluster's nodes for operators (relayrouter.cluster.nodes, the console, /metrics).
            self.cluster.nodes.addresses = self._addresses
            self.console.install_cluster(self.cluster)
        # /metrics, /health, /ready; refused logins are counted by the observer.
        self.auth_refusals = self.router.observer.auth_refusals
        self.metrics = Metrics(self)
        # POST /publish, /call, /webhook/{name} ([http_bridge]).
        self.http_bridge = None
        if config.http_bridge is not None:
            from ..transport.http_bridge import HttpBridge

            self.http_bridge = HttpBridge(config.http_bridge, self.security, self.router, reactor)
        self.serializers = router_serializers()
        self.listeners: list[ListenerService] = []
        for listener in config.listeners:
            self._add_listener(listener)

    def _add_listener(self, listener: Listener) -> None:
        limits = self.config.limits
        if listener.kind == "websocket":
            wamp_factory = RouterWebSocketFactory(self.router, self.serializers, limits, clock=self.reactor)
            wamp_factory.origin_policy = self.security.origins
            wamp_factory.trusted_proxies = self.security.proxies
            resources = self.security.http_resources(listener.path)
            resources.update(self.durable.http_resources())
            resources.update(self.tenancy.http_resources())
            if self.relay is not None:
                resources.update(self.relay.http_resources())
            resources.update(self.pairing.http_resources(self.reactor, limits))
            resources.update(ops_http.resources(self, self.metrics, self.config.metrics or MetricsConfig()))
            if self.http_bridge is not None:
                resources.update(self.http_bridge.resources())
            resources.update(self.console.http_resources())
            factory = build_site(self.router, wamp_factory, listener.path, resources, self.security.proxies)
            # twisted.web's idle timeout (12 h by default) is what closes a
            # connection that never finishes its HTTP request or upgrade.
            factory.timeOut = limits.hello_timeout
        else:
            factory = wamp_factory = RouterRawSocketFactory(self.router, self.serializers, limits,
                                                            clock=self.reactor)
        factory = wrap_tls(factory, listener.tls)
        self.wamp_factories.append(wamp_factory)
        _track_connections(factory)
        endpoints_ = self.pairing.endpoints() if listener.kind == "websocket" else ()
        listening = ListenerService(self.reactor, listener, factory, self.router, endpoints_)
        listening.setServiceParent(self)
        self.listeners.append(listening)

    def when_listening(self) -> defer.Deferred:
        """Fires with the listening ports, once all are bound."""
        return defer.gatherResults([s.ready for s in self.listeners], consumeErrors=True)

    def stopService(self):
        d = defer.maybeDeferred(super().stopService)
        if self.relay is not None:
            self.relay.stop()
        if self.http_bridge is not None:
            self.http_bridge.close()
        d.addBoth(self._close_stores)
        return d

    def _close_stores(self, result):
        """Once the listeners are down, whatever happened: tenants, deny list, durable store."""
        self.tenancy.stop()
        closing = self.cluster.stop() if self.cluster is not None else None
        self.security.stop()
        self.durable.stop()
        if closing is not None:  # NATS on the reactor's loop: closed once the loop has run its part
            return closing.addBoth(lambda _: result)
        return result

    def _addresses(self) -> list[str]:
        """``host:port`` of each listener bound now."""
        bound = [listener.port.getHost() for listener in self.listeners if listener.port is not None]
        return [f"{_url_host(a.host)}:{a.port}" for a in bound if getattr(a, "host", None) is not None]

    def connections(self) -> list:
        return [c for factory in self.wamp_factories for c in factory.connections]

    def _unestablished(self) -> list:
        """Transports with no WAMP connection yet (mid HTTP request or RawSocket handshake)."""
        protocols = [p for listener in self.listeners for p in listener.factory.live_protocols]
        # Behind TLS the protocol is the wrapper's; a Micronets connection has no WAMP
        # connection either, but shutdown closes it with a frame.
        inner = [(p, getattr(p, "wrappedProtocol", p)) for p in protocols]
        transports = [autobahn_overrides.transport_of(p) for p, proto in inner
                      if getattr(proto, "_conn", None) is None and not getattr(proto, "is_micronets", False)]
        return [t for t in transports if t is not None and getattr(t, "connected", True)]

    def startService(self) -> None:
        if self.handle_signals:
            # Before the listeners are announced, so that a signal sent as soon
            # as they are is ours; and again once the reactor runs, as it
            # installs its own handlers when it starts.
            self._install_signal_handlers()
            self.reactor.callWhenRunning(self._install_signal_handlers)
        log.info("relayrouter {version} starting (Python {python}, Twisted {twisted}, Autobahn {autobahn})",
                 version=__version__, python=platform.python_version(),
                 twisted=twisted.__version__, autobahn=autobahn.__version__)
        self.security.start()  # the deny list is loaded before anyone can connect
        if self.cluster is not None:
            self.cluster.start()
        super().startService()
        self.durable.start()
        if self.relay is not None:
            self.relay.start()

    # ---------------------------------------------------------- shutdown

    def _install_signal_handlers(self) -> None:
        # Replaces the reactor's own handlers, which stop at once (and make
        # twistd exit with the signal): we say GOODBYE first, then exit 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self, signum, frame) -> None:
        self.reactor.callFromThread(self.reload, "SIGHUP")

    def reload(self, why: str) -> dict | None:
        """Re-read the configuration and apply what can change live (see reload.py)."""
        if self.reloader is None:
            log.warn("{why}: no configuration file (--config) to re-read", why=why)
            return None
        try:
            return self.reloader.reload(why)
        except ConfigError:
            return None  # logged, with the key; the running configuration stays

    def _on_signal(self, signum, frame) -> None:
        self.reactor.callFromThread(self._graceful_stop, signal.Signals(signum).name)

    def _graceful_stop(self, why: str) -> None:
        if self._stopping:
            log.warn("Second {why}: stopping now", why=why)
            self.reactor.stop()
            return
        log.info("{why} received: closing sessions (at most {t}s), then stopping",
                 why=why, t=self.config.limits.shutdown_timeout)
        d = self.shutdown()
        d.addErrback(lambda failure: log.failure("Shutdown failed", failure))
        d.addBoth(lambda _: self.reactor.stop())

    @defer.inlineCallbacks
    def shutdown(self):
        """Stop accepting, say GOODBYE (wamp.close.system_shutdown) to every
        session, and wait a bounded time for them to go."""
        self._stopping = True
        yield defer.gatherResults(
            [defer.maybeDeferred(s.stopService) for s in self.listeners], consumeErrors=True)
        for transport in self._unestablished():
            transport.abortConnection()  # nothing to say GOODBYE to
        # Micronets peers first: a WAMP partner's GOODBYE would otherwise close them as "peer gone".
        for legacy in self.pairing.connections():
            legacy.shut_down("the router is shutting down")  # a close frame: Micronets has no GOODBYE
        for connection in self.connections():
            connection.session.goodbye(errors.CLOSE_SYSTEM_SHUTDOWN, "the router is shutting down")
        for peer in list(self.relay.peers) if self.relay is not None else ():
            peer.session.goodbye(errors.CLOSE_SYSTEM_SHUTDOWN, "the router is shutting down")
        deadline = self.reactor.seconds() + self.config.limits.shutdown_timeout
        while (self.connections() or self.pairing.connections()) and self.reactor.seconds() < deadline:
            yield task.deferLater(self.reactor, 0.05, lambda: None)
        left = self.connections()
        for connection in left:
            connection.drop()
        legacy_left = self.pairing.connections()
        for legacy in legacy_left:
            legacy.dropConnection(abort=True)
        left = left + legacy_left
        log.info("Shutdown: {closed} sessions closed cleanly, {dropped} dropped",
                 closed="all" if not left else "some", dropped=len(left))


class ListenerService(service.Service):
    """Binds one configured endpoint while the service runs."""

    def __init__(self, reactor, listener: Listener, factory, router, micronets=()) -> None:
        """``micronets``: (path, realm) of the Micronets endpoints this listener's site serves."""
        self.micronets = tuple(micronets)
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
        self.reactor.callWhenRunning(self._announce, port)
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
            base = url[:len(url) - len(listener.path)] if listener.path else url
            for path, realm in self.micronets:
                log.info("relayrouter listening: Micronets endpoint at {url}<meetup-id> (realm: {realm})",
                         url=f"{base.rstrip('/')}/{path.strip('/')}/", realm=realm)
        else:
            log.info("relayrouter listening: {kind} on {address} (realms: {realms})",
                     kind=listener.kind, address=address, realms=", ".join(self.router.realms))


def _track_connections(factory) -> None:
    """Keep ``factory.live_protocols``: every protocol it built that is still
    alive, so that shutdown can close connections that never became WAMP
    sessions.  (Not ``protocols``: Twisted's TLS wrapping factory has that.)"""
    factory.live_protocols = weakref.WeakSet()
    autobahn_overrides.track_built_protocols(factory, factory.live_protocols.add)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_tls(port) -> bool:
    return "TLS" in type(getattr(port, "factory", None) or object()).__name__
