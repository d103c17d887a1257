"""The web console: static pages at ``/console/`` and the router procedures
they call, over the router itself (autobahn-js in the browser).

Who may use it
--------------
``[console]`` names console roles (and JWT scopes) at two levels: *viewers*
(``roles`` / ``scope``) see everything the console shows and change nothing;
*operators* (``operator_roles`` / ``operator_scope``) may also add and remove
deny-list entries.  The router's admins (``[revocation]``, as a reload leaves
them) are operators too.  Anyone else is refused by every procedure here
with ``wamp.error.not_authorized``, and the page says so.

Reach: a console user of a configured realm sees the whole router (every
realm, the deny list); one of a realm made at run time (a tenant) sees its
own realm only, and no deny list (it is router-wide).

The page logs in like any client (ticket or JWT) and reads everything
through WAMP: the meta API (``wamp.session.*``, ``wamp.subscription.*``,
``wamp.registration.*`` and their events), the deny list, mailboxes and
pairs procedures, and the procedures here:

* ``relayrouter.console.access()`` -> ``{"authid", "authrole", "realm",
  "access": "view" | "operate", "reach": "router" | "realm"}``: what the
  caller may do; the page asks first and leaves when refused;
* ``relayrouter.console.overview()`` -> ``{"time", "realms": [{"name",
  "sessions"}], "messages_received", "messages_sent", "bytes_received",
  "bytes_sent", "publications", "rate": {"in", "out", "seconds"}}``:
  router-wide totals, and the message rates the page draws (:class:`RateMeter`);
* ``relayrouter.console.sessions(realm=None)`` -> ``{"realm", "sessions":
  [{"session", "authid", "authrole", "authmethod", "transport", "peer",
  "serializer", "since", "rx_bytes", "tx_bytes"}]}`` for the caller's realm
  (or the one named);
* ``relayrouter.cluster.nodes()`` -> ``{"nodes": [{"name", "self",
  "version", "addresses", "sessions", "load", "up_since", "last_heard"}]}``:
  the cluster's nodes (:mod:`relayrouter.cluster.nodes`), on a clustered
  router only, for console users of a configured realm (router reach).
"""

import os
from collections import deque

from ..core import errors
from ..core.meta import iso8601
from ..core.procedures import AdminPolicy, ProcedureError
from ..config.ops import ConsoleConfig
from ..core.stats import traffic
from ..httpinput import BadInput, path_segment

ACCESS = "relayrouter.console.access"
OVERVIEW = "relayrouter.console.overview"
SESSIONS = "relayrouter.console.sessions"
CLUSTER_NODES = "relayrouter.cluster.nodes"
STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
VIEW, OPERATE = "view", "operate"


class ConsoleAccess:
    """Who may use the console, and how far (see the module doc)."""

    def __init__(self, config: ConsoleConfig | None, admin, configured_realms) -> None:
        self.admin = admin  # the router's admins (security.CurrentAdmin)
        self.configured_realms = frozenset(configured_realms)
        self.reload(config or ConsoleConfig())

    def reload(self, config: ConsoleConfig) -> None:
        self.config = config
        self.viewers = AdminPolicy(frozenset(config.roles), config.scope)
        self.operators = AdminPolicy(frozenset(config.operator_roles), config.operator_scope)

    def level(self, authrole, claims) -> str | None:
        """OPERATE, VIEW, or None (no console)."""
        if self.admin.admits(authrole, claims) or self.operators.admits(authrole, claims):
            return OPERATE
        return VIEW if self.viewers.admits(authrole, claims) else None

    def admits(self, authrole, claims) -> bool:
        """Any console user (AdminPolicy's signature: for pairs and mailbox listings)."""
        return self.level(authrole, claims) is not None

    def sees_router(self, realm) -> bool:
        return realm.name in self.configured_realms

    def admits_deny_list(self, session, write: bool) -> bool:
        """The deny list for console users of configured realms: read for
        viewers, write for operators (core.revocation.DenyListApi asks)."""
        if not self.sees_router(session.realm):
            return False
        level = self.level(session.authrole, session.permissions)
        return level == OPERATE if write else level is not None

    def refusal(self, session) -> str:
        return (f"session '{session.authid}' with role '{session.authrole}' may not use the console "
                "(console.roles, console.operator_roles or the router's admins may)")


RATE_WINDOW = 10.0  # seconds a rate is measured over


class RateMeter:
    """Messages per second over the last ``window`` seconds, from the router's totals.

    Pages poll every second and refresh their tables every two (or what
    ``refresh_ms`` says), and those refreshes are messages too: a rate taken
    between two consecutive polls counts a refresh burst in every other one and
    zig-zags under steady traffic.  Measured over a window holding whole
    refresh periods, the same traffic gives a flat line.  Totals are recorded
    as overview calls come (from any page); the rate is from the record whose
    age is nearest ``window`` (timers are not exact) to now.
    """

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self.samples: deque = deque(maxlen=1024)  # (time, received, sent), oldest first

    def rate(self, now: float, received: int, sent: int) -> dict:
        while self.samples and now - self.samples[0][0] > 2 * self.window:
            self.samples.popleft()
        earlier = [s for s in self.samples if s[0] < now]
        base = min(earlier, key=lambda s: abs(now - s[0] - self.window)) if earlier else None
        self.samples.append((now, received, sent))
        if base is None:
            return {"in": None, "out": None, "seconds": 0.0}
        span = now - base[0]
        return {"in": (received - base[1]) / span, "out": (sent - base[2]) / span, "seconds": span}


class Console:
    def __init__(self, router, access: ConsoleAccess) -> None:
        self.router = router
        self.access = access
        self.meter = RateMeter()
        self.cluster = None  # relayrouter.cluster.Cluster, on a clustered router (install_cluster)

    def install_realm(self, realm, rc) -> None:
        """The console's procedures on a realm (realms.RealmBuilder)."""
        realm.procedures.add(ACCESS, self._users_only(self.whoami))
        realm.procedures.add(OVERVIEW, self._users_only(self.overview))
        realm.procedures.add(SESSIONS, self._users_only(self.sessions))
        if self.cluster is not None:
            realm.procedures.add(CLUSTER_NODES, self._users_only(self.cluster_nodes))

    def install_cluster(self, cluster) -> None:
        """The cluster view on every realm, those made later included."""
        self.cluster = cluster
        for realm in self.router.realms.values():
            realm.procedures.add(CLUSTER_NODES, self._users_only(self.cluster_nodes))

    def _users_only(self, fn):
        def handle(call):
            session = call.session
            level = self.access.level(session.authrole, session.permissions)
            if level is None:
                raise ProcedureError(errors.NOT_AUTHORIZED, self.access.refusal(session))
            return fn(call, level)
        return handle

    def whoami(self, call, level) -> dict:
        session = call.session
        return {"authid": session.authid, "authrole": session.authrole, "realm": call.realm.name,
                "access": level, "reach": "router" if self.access.sees_router(call.realm) else "realm"}

    def overview(self, call, level) -> dict:
        stats = self.router.stats
        bytes_in, bytes_out = traffic(stats, (session.peer for session in self.router.sessions()))
        realms = sorted(self.router.realms.items()) if self.access.sees_router(call.realm) else [
            (call.realm.name, call.realm)]
        now, received, sent = self.router.clock.seconds(), sum(stats.received), sum(stats.sent)
        return {
            "time": now,
            "realms": [{"name": name, "sessions": len(realm.sessions)} for name, realm in realms],
            "messages_received": received,
            "messages_sent": sent,
            "bytes_received": bytes_in,
            "bytes_sent": bytes_out,
            "publications": stats.publications,
            "rate": self.meter.rate(now, received, sent),
        }

    def sessions(self, call, level) -> dict:
        name = call.kwargs.get("realm")
        if name is None and call.args:
            name = call.args[0]
        if name is not None and not isinstance(name, str):
            raise ProcedureError(errors.INVALID_ARGUMENT, "realm must be a realm's name")
        if name not in (None, call.realm.name) and not self.access.sees_router(call.realm):
            raise ProcedureError(errors.NOT_AUTHORIZED, f"the console of realm '{call.realm.name}' "
                                 "shows that realm only")
        realm = call.realm if name is None else self.router.realms.get(name)
        if realm is None:
            raise ProcedureError(errors.INVALID_ARGUMENT, f"no realm {name!r}")
        return {"realm": realm.name, "sessions": [_row(s) for s in realm.sessions.values()]}

    def cluster_nodes(self, call, level) -> dict:
        if not self.access.sees_router(call.realm):
            raise ProcedureError(errors.NOT_AUTHORIZED, f"the console of realm '{call.realm.name}' shows "
                                 "that realm only, not the cluster")
        return {"nodes": self.cluster.nodes.listing()}

    # ---------------------------------------------------------------- HTTP

    @staticmethod
    def http_resources() -> dict:
        from twisted.web import static
        from ..transport import http_doc
        from ..transport.http import JsonNotFound

        class Pages(static.File):
            childNotFound = JsonNotFound("no such file in the console")  # noqa: N815 - twisted.web's name

            def directoryListing(self):  # noqa: N802 - twisted.web's name
                return JsonNotFound("no such file in the console")

            def getChild(self, path, request):  # noqa: N802
                # twisted.web fails on a NUL (ValueError: a 500) and logs a traceback for
                # a segment that is not UTF-8: neither names a file here.
                if not _file_name(path):
                    return JsonNotFound("no such file in the console")
                return super().getChild(path, request)

        pages = Pages(STATIC_DIR)
        pages.indexNames = ["index.html"]
        pages.openapi = http_doc.CONSOLE
        return {b"console": pages}


def _file_name(segment: bytes) -> bool:
    try:
        path_segment(segment)
    except BadInput:
        return False
    return True


def _row(session) -> dict:
    transport, peer = session.transport, session.peer
    since = getattr(peer, "connected_at", None)
    return {
        "session": session.session_id,
        "authid": session.authid,
        "authrole": session.authrole,
        "authmethod": session.authmethod,
        "transport": transport.kind,
        "peer": getattr(peer, "remote", None) or transport.peer,  # a bridge session: its last HTTP client
        "serializer": transport.serializer,
        "since": iso8601(since) if since is not None else None,
        "rx_bytes": getattr(peer, "rx_bytes", None),
        "tx_bytes": getattr(peer, "tx_bytes", None),
    }
