"""dojot's Kafka-WS, served by the agent: single-use tickets and a plain
WebSocket per topic with ``fields`` / ``where`` filters.

``GET /kafka-ws/v1/ticket`` (``Authorization: Bearer <JWT>``) ->
``{"ticket": "<64 hex>"}``, good once, for ``ticket_lifetime`` seconds (60).
Then ``ws://host/kafka-ws/v1/topics/<tenant>.<subject>?ticket=...&fields=...&where=...``
receives each message of ``<subject>`` in the ticket's tenant, filtered by
``where`` then projected by ``fields``, as one JSON text frame (a message that
does not pass, or projects to ``{}``, is not sent).

Close codes (dojot's): 4000-4004 a malformed ``where`` (see dojot_filter;
4999 where dojot answers that, with ``compat="dojot"``), 4401 a missing, unknown, used or expired ticket,
4403 a topic that is not the tenant's (it must start with ``<tenant>.``),
4408 the connection's lifetime is over (the later of the JWT's ``exp`` and
``max_lifetime``; -1 = only the JWT), 4503 the tenant is not served now.
A plain HTTP request to a topic URL gets 426.
"""

import hashlib
import json
import secrets
from dataclasses import dataclass
from urllib.parse import unquote

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.logger import Logger

from relayrouter.api import FilterError

from .dojot_filter import DojotFilter

log = Logger()

INVALID_TICKET = 4401
FORBIDDEN_TOPIC = 4403
EXPIRED_CONNECTION = 4408
SERVER_UNAVAILABLE = 4503
INTERNAL = 4999
TOPICS_PREFIX = "/kafka-ws/v1/topics/"


@dataclass(frozen=True)
class Grant:
    tenant: str
    jwt_exp: float | None
    issued: float


class Tickets:
    """Single-use tickets, kept by their SHA-256 (a lookup leaks no timing of the ticket)."""

    def __init__(self, clock, lifetime: float = 60.0, max_tickets: int = 100_000) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.max_tickets = max_tickets
        self._grants: dict[bytes, Grant] = {}

    def issue(self, tenant: str, jwt_exp: float | None) -> str:
        self._purge()
        if len(self._grants) >= self.max_tickets:
            raise OverflowError("too many unused tickets; try again in a minute")
        ticket = secrets.token_hex(32)
        self._grants[_digest(ticket)] = Grant(tenant, jwt_exp, self.clock())
        return ticket

    def take(self, ticket: str | None) -> Grant | None:
        if not ticket:
            return None
        grant = self._grants.pop(_digest(ticket), None)
        if grant is None or self.clock() - grant.issued > self.lifetime:
            return None
        return grant

    def _purge(self) -> None:
        now = self.clock()
        for key in [k for k, g in self._grants.items() if now - g.issued > self.lifetime]:
            del self._grants[key]


def _digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode("utf8", "replace")).digest()


class KafkaWsHub:
    """Open Kafka-WS connections by (tenant, subject); the agent hands it every
    message it publishes, and it subscribes in the router for other subjects."""

    def __init__(self, tickets: Tickets, clock, max_lifetime: float = 7200.0, local_subjects=(),
                 compat: str = "relayrouter") -> None:
        self.tickets = tickets
        self.compat = compat
        self.clock = clock
        self.max_lifetime = max_lifetime
        self.local_subjects = frozenset(local_subjects)
        self.connections: dict[tuple[str, str], set] = {}
        self.tenants = None  # set by the service: has session_for(tenant)
        self._wamp: dict[tuple[str, str], object] = {}  # (tenant, subject) -> pending/active subscription
        self.counters = {"sent": 0, "filtered": 0, "closed_4401": 0, "closed_4403": 0, "closed_4408": 0,
                         "closed_filter": 0}

    def deliver(self, tenant: str, subject: str, document) -> None:
        for connection in tuple(self.connections.get((tenant, subject), ())):
            try:
                connection.deliver(document)
            except Exception:  # noqa: BLE001 - one connection's failure must not stop the others (nor ingest)
                self.counters["failed"] = self.counters.get("failed", 0) + 1
                log.failure("Kafka-WS: delivering to a connection of {tenant}.{subject} failed",
                            tenant=tenant, subject=subject)

    def add(self, connection) -> None:
        key = (connection.tenant, connection.subject)
        self.connections.setdefault(key, set()).add(connection)
        if connection.subject not in self.local_subjects and key not in self._wamp:
            self._subscribe(key)

    def remove(self, connection) -> None:
        key = (connection.tenant, connection.subject)
        members = self.connections.get(key)
        if members is None:
            return
        members.discard(connection)
        if not members:
            del self.connections[key]
            _unsubscribe(self._wamp.pop(key, None))

    def _subscribe(self, key) -> None:
        tenant, subject = key
        session = self.tenants.session_for(tenant) if self.tenants is not None else None
        if session is None:
            return
        self._wamp[key] = "pending"

        def on_event(*args, **kwargs):
            document = args[0] if args and isinstance(args[0], dict) else kwargs
            self.deliver(tenant, subject, document)

        d = session.subscribe(on_event, subject)
        d.addCallbacks(lambda sub: self._subscribed(key, sub), lambda f: self._wamp.pop(key, None))

    def _subscribed(self, key, subscription) -> None:
        if key in self.connections:
            self._wamp[key] = subscription
        else:
            _unsubscribe(subscription)

    def tenant_gone(self, tenant: str) -> None:
        for (t, _), members in list(self.connections.items()):
            if t == tenant:
                for connection in tuple(members):
                    connection.close_with(SERVER_UNAVAILABLE, "the tenant is not served now")
        for key in [k for k in self._wamp if k[0] == tenant]:
            del self._wamp[key]


def _unsubscribe(subscription) -> None:
    """Unsubscribe if the session is still there; a session that is gone took it along."""
    if subscription is None or not hasattr(subscription, "unsubscribe") or not subscription.active:
        return
    try:
        d = subscription.unsubscribe()
    except Exception:  # noqa: BLE001 - the transport is closing
        return
    if hasattr(d, "addErrback"):
        d.addErrback(lambda failure: None)  # lost with the session: nothing left to undo


class KafkaWsProtocol(WebSocketServerProtocol):
    hub: KafkaWsHub = None

    tenant = subject = None
    _filter = None
    _timer = None
    _closing = False

    def onConnect(self, request):
        self._path = request.path
        self._params = request.params

    def onOpen(self) -> None:
        hub = self.factory.hub
        ticket = _one(self._params, "ticket")
        grant = hub.tickets.take(ticket)
        if grant is None:
            self.close_with(INVALID_TICKET, "Missing ticket" if not ticket else "Invalid ticket")
            return
        topic = unquote(self._path[len(TOPICS_PREFIX):]) if self._path.startswith(TOPICS_PREFIX) else ""
        if not topic.lower().startswith(grant.tenant.lower() + ".") or len(topic) <= len(grant.tenant) + 1:
            self.close_with(FORBIDDEN_TOPIC, "Tenant can't access this topic")
            return
        try:
            self._filter = DojotFilter(_one(self._params, "fields"), _one(self._params, "where"), hub.compat)
        except FilterError as e:
            hub.counters["closed_filter"] += 1
            self.close_with(e.code, e.message[:120])
            return
        if hub.tenants is not None and hub.tenants.session_for(grant.tenant) is None:
            self.close_with(SERVER_UNAVAILABLE, "the tenant is not served now")
            return
        self.tenant, self.subject = grant.tenant, topic[len(grant.tenant) + 1:]
        hub.add(self)
        self._arm_expiry(hub, grant)

    def _arm_expiry(self, hub: KafkaWsHub, grant: Grant) -> None:
        now = hub.clock()
        ends = [t for t in (grant.jwt_exp, now + hub.max_lifetime if hub.max_lifetime > 0 else None) if t]
        if ends:
            from twisted.internet import reactor

            self._timer = reactor.callLater(max(0.0, max(ends) - now), self.close_with, EXPIRED_CONNECTION,
                                            "Connection lifetime")

    def deliver(self, document) -> None:
        out = self._filter.apply(document)
        if not out:
            self.factory.hub.counters["filtered"] += 1
            return
        self.sendMessage(json.dumps(out, separators=(",", ":")).encode(), isBinary=False)
        self.factory.hub.counters["sent"] += 1

    def close_with(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        counters = self.factory.hub.counters
        key = f"closed_{code}"
        if key in counters:
            counters[key] += 1
        self.sendClose(code, reason)

    def onClose(self, wasClean, code, reason) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.tenant is not None:
            self.factory.hub.remove(self)


def _one(params: dict, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def make_factory(hub: KafkaWsHub) -> WebSocketServerFactory:
    factory = WebSocketServerFactory()
    factory.protocol = KafkaWsProtocol
    factory.hub = hub
    factory.setProtocolOptions(autoPingInterval=30, autoPingTimeout=30)
    return factory
