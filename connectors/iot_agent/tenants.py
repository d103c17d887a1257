"""One router session per tenant, following the router's tenants.

The management session (``--realm``) subscribes to
``relayrouter.realm.on_change`` first, then calls ``relayrouter.realm.list``
and serves every tenant listed; afterwards it applies only the events whose
``seq`` is above the list's (the router's race-free bootstrap).  A CREATE
starts a session to the new realm at once; a DELETE stops it.  When the
management session comes back after a loss, the list is read again and the
difference applied.  With ``--tenants a,b`` the set is fixed and no
management session is made.

Each tenant session is a :class:`connectors.common.RouterConnection` (its
own backoff and reconnection) to the tenant's realm, with the agent's
credentials; ``on_tenant_up(tenant, session)`` runs on each join (it
registers the agent's procedures there).
"""

from dataclasses import replace

from autobahn.wamp.exception import TransportLost
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from connectors.common import RouterConnection

log = Logger()

TENANCY_TOPIC = "relayrouter.realm.on_change"
TENANCY_LIST = "relayrouter.realm.list"


class TenantSessions(service.MultiService):
    def __init__(self, settings, reactor, on_tenant_up=None, on_tenant_down=None, fixed=None) -> None:
        super().__init__()
        self.settings = settings
        self.reactor = reactor
        self.on_tenant_up = on_tenant_up
        self.on_tenant_down = on_tenant_down
        self.fixed = tuple(fixed) if fixed else None
        self.connections: dict[str, RouterConnection] = {}
        self.sessions: dict[str, object] = {}  # tenant -> joined session
        self.seq = None  # the last tenancy change applied
        self._buffer: list | None = None
        self.management = None
        self.ready = defer.Deferred()  # fires once the first tenant list is applied
        if self.fixed is None:
            self.management = RouterConnection(settings, on_join=self._bootstrap, on_leave=self._lost,
                                               reactor=reactor)
            self.management.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        for tenant in self.fixed or ():
            self.attach(tenant)
        if self.fixed is not None and not self.ready.called:
            self.ready.callback(None)

    # -------------------------------------------------------- bootstrap

    @defer.inlineCallbacks
    def _bootstrap(self, session, details):
        self._buffer = []
        yield session.subscribe(self._on_change, TENANCY_TOPIC)
        listed = yield session.call(TENANCY_LIST)
        wanted = set(listed["tenants"])
        for tenant in sorted(set(self.connections) - wanted):
            self.detach(tenant)
        for tenant in listed["tenants"]:
            self.attach(tenant)
        self.seq = listed["seq"]
        buffered, self._buffer = self._buffer, None
        for event in buffered:
            self._apply(event)
        log.info("tenants: serving {count} ({names}) as of change {seq}", count=len(self.connections),
                 names=", ".join(sorted(self.connections)) or "none", seq=self.seq)
        if not self.ready.called:
            self.ready.callback(None)

    def _lost(self, reason) -> None:
        self._buffer = None

    def _on_change(self, event, *args, **kwargs) -> None:
        if self._buffer is not None:
            self._buffer.append(event)
        else:
            self._apply(event)

    def _apply(self, event) -> None:
        if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
            log.warn("tenants: ignoring a malformed tenancy event {event!r}", event=event)
            return
        if self.seq is not None and event["seq"] <= self.seq:
            return  # already in the list we read
        self.seq = event["seq"]
        tenant = event.get("tenant")
        if event.get("type") == "CREATE":
            self.attach(tenant)
        elif event.get("type") == "DELETE":
            self.detach(tenant)

    # ------------------------------------------------------ per tenant

    def attach(self, tenant: str) -> None:
        if tenant in self.connections or not isinstance(tenant, str):
            return
        settings = replace(self.settings, realm=tenant)
        connection = RouterConnection(settings, on_join=lambda s, d, t=tenant: self._up(t, s),
                                      on_leave=lambda reason, t=tenant: self._down(t), reactor=self.reactor)
        self.connections[tenant] = connection
        connection.setServiceParent(self)
        log.info("tenant {tenant}: attached", tenant=tenant)

    def detach(self, tenant: str) -> None:
        connection = self.connections.pop(tenant, None)
        if connection is None:
            return
        self._down(tenant)
        d = defer.maybeDeferred(connection.disownServiceParent)
        d.addErrback(lambda f: log.failure("tenant {tenant}: stopping its session", f, tenant=tenant))
        log.info("tenant {tenant}: detached", tenant=tenant)

    @defer.inlineCallbacks
    def _up(self, tenant: str, session):
        if self.on_tenant_up is not None:
            yield self.on_tenant_up(tenant, session)
        self.sessions[tenant] = session

    def _down(self, tenant: str) -> None:
        """The tenant's session is gone (lost, or detached: then ``served`` is already False)."""
        self.sessions.pop(tenant, None)
        if self.on_tenant_down is not None:
            self.on_tenant_down(tenant)

    # ------------------------------------------------------------ uses

    def session_for(self, tenant: str):
        return self.sessions.get(tenant)

    def served(self, tenant: str) -> bool:
        return tenant in self.connections

    def publish(self, tenant: str, topic: str, *args, **kwargs) -> str | None:
        """Publish on the tenant's session: ``None`` once handed to it, else
        why not: ``"tenant_offline"`` (no session, or its transport is going)
        or ``"failed"`` (the session refused the event, e.g. it cannot be
        serialized; logged)."""
        session = self.sessions.get(tenant)
        if session is None:
            return "tenant_offline"
        try:
            session.publish(topic, *args, **kwargs)
        except TransportLost:
            return "tenant_offline"
        except Exception as e:  # noqa: BLE001 - one event refused must not stop the others; it is stored anyway
            log.error("tenant {tenant}: publishing to {topic} failed: {error}", tenant=tenant, topic=topic,
                      error=f"{type(e).__name__}: {e}")
            return "failed"
        return None

    def describe(self) -> dict:
        return {"management": self.management.describe() if self.management else None,
                "seq": self.seq,
                "tenants": {t: c.status for t, c in sorted(self.connections.items())}}
