"""The web console: static pages at ``/console/`` and the router procedures
they call, over the router itself (autobahn-js in the browser).

The page logs in like any client (ticket or JWT) and reads everything
through WAMP: the meta API (``wamp.session.*``, ``wamp.subscription.*``,
``wamp.registration.*`` and their events), the deny list, mailboxes and
pairs procedures, and the two procedures here, for admins only
(``revocation.admin_roles`` / ``admin_scope``):

* ``relayrouter.console.overview()`` -> ``{"time", "realms": [{"name",
  "sessions"}], "messages_received", "messages_sent", "bytes_received",
  "bytes_sent", "publications"}``: router-wide totals; the page draws rates
  from two of them;
* ``relayrouter.console.sessions(realm=None)`` -> ``{"realm", "sessions":
  [{"session", "authid", "authrole", "authmethod", "transport", "peer",
  "serializer", "since", "rx_bytes", "tx_bytes"}]}`` for the caller's realm
  (or the one named).
"""

import os

from ..core import errors
from ..core.meta import iso8601
from ..core.procedures import ProcedureError
from ..core.stats import traffic

OVERVIEW = "relayrouter.console.overview"
SESSIONS = "relayrouter.console.sessions"
STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")


class Console:
    def __init__(self, router, admin) -> None:
        self.router = router
        self.admin = admin  # an AdminPolicy (or the security's CurrentAdmin)

    def add_procedures(self, realm) -> None:
        realm.procedures.add(OVERVIEW, self._admin_only(self.overview))
        realm.procedures.add(SESSIONS, self._admin_only(self.sessions))

    def _admin_only(self, fn):
        def handle(call):
            session = call.session
            if not self.admin.admits(session.authrole, session.permissions):
                raise ProcedureError(errors.NOT_AUTHORIZED,
                                     f"session '{session.authid}' with role '{session.authrole}' "
                                     "may not use the console")
            return fn(call)
        return handle

    def overview(self, call) -> dict:
        stats = self.router.stats
        bytes_in, bytes_out = traffic(stats, (session.peer for session in self.router.sessions()))
        return {
            "time": self.router.clock.seconds(),
            "realms": [{"name": name, "sessions": len(realm.sessions)}
                       for name, realm in sorted(self.router.realms.items())],
            "messages_received": sum(stats.received),
            "messages_sent": sum(stats.sent),
            "bytes_received": bytes_in,
            "bytes_sent": bytes_out,
            "publications": stats.publications,
        }

    def sessions(self, call) -> dict:
        name = call.kwargs.get("realm")
        if name is None and call.args:
            name = call.args[0]
        if name is not None and not isinstance(name, str):
            raise ProcedureError(errors.INVALID_ARGUMENT, "realm must be a realm's name")
        realm = call.realm if name is None else self.router.realms.get(name)
        if realm is None:
            raise ProcedureError(errors.INVALID_ARGUMENT, f"no realm {name!r}")
        return {"realm": realm.name, "sessions": [_row(s) for s in realm.sessions.values()]}

    # ---------------------------------------------------------------- HTTP

    @staticmethod
    def http_resources() -> dict:
        from twisted.web import static
        from twisted.web.pages import notFound

        class Pages(static.File):
            def directoryListing(self):  # noqa: N802 - twisted.web's name
                return notFound()

        pages = Pages(STATIC_DIR)
        pages.indexNames = ["index.html"]
        return {b"console": pages}


def _row(session) -> dict:
    transport, peer = session.transport, session.peer
    since = getattr(peer, "connected_at", None)
    return {
        "session": session.session_id,
        "authid": session.authid,
        "authrole": session.authrole,
        "authmethod": session.authmethod,
        "transport": transport.kind,
        "peer": transport.peer,
        "serializer": transport.serializer,
        "since": iso8601(since) if since is not None else None,
        "rx_bytes": getattr(peer, "rx_bytes", None),
        "tx_bytes": getattr(peer, "tx_bytes", None),
    }
