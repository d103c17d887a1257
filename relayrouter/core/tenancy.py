"""Tenants: realms created and deleted while the router runs.

Theory of operation
-------------------
A tenant is a realm made at run time from a named template of the
configuration (its auth, roles, limits, history, mailboxes).  An
administrator creates, deletes and lists tenants through router procedures
in the *management realms* (the statically configured ones, unless the
configuration names others) or over HTTP; each change is written to the
tenant store before it is answered, and every tenant is made again at start.

Each change gets the next number of one sequence (kept in the store) and is
published on ``relayrouter.realm.on_change`` in every management realm as
dojot's tenancy message plus that number::

    {"type": "CREATE" | "DELETE", "tenant": "<realm>", "seq": 7}

``relayrouter.realm.list`` answers ``{"tenants": [...], "seq": <the number of
the last change>}``.  A component bootstraps without a race by subscribing to
the topic *first*, then calling list, then applying only the events whose
``seq`` is greater than the list's (those at or below it are already in the
list).  One router thread assigns the numbers, so no change can fall in
between.

Deleting a tenant takes the realm off the router at once (a HELLO for it gets
``wamp.error.no_such_realm``) and ends each of its sessions with GOODBYE
``wamp.close.close_realm`` and the message "realm '<name>' was deleted".
"""

import re
from typing import Any, Callable, Mapping, Protocol

from . import errors
from .procedures import AdminPolicy, ProcedureError

CREATE = "relayrouter.realm.create"
DELETE = "relayrouter.realm.delete"
LIST = "relayrouter.realm.list"
TOPIC = "relayrouter.realm.on_change"

REALM_EXISTS = "relayrouter.error.realm_exists"
NO_SUCH_TEMPLATE = "relayrouter.error.no_such_template"
STORE_FAILED = "relayrouter.error.store_failed"

# One URI component, usable in topics, MQTT topic names and file names.
TENANT_NAME = re.compile(r"[a-z0-9_]{1,64}")


class TenantStore(Protocol):
    def load(self) -> tuple[int, list[tuple[str, str, float]]]:
        """(last sequence number, [(name, template, created)])."""

    def put(self, name: str, template: str, created: float, seq: int) -> None: ...

    def delete(self, name: str, seq: int) -> None:
        """Forget the tenant and note that its stored data is to be purged."""

    def purges(self) -> list[str]:
        """Deleted tenants whose stored data is not purged yet."""

    def purged(self, name: str) -> None: ...

    def close(self) -> None: ...


class MemoryTenantStore:
    def __init__(self) -> None:
        self.seq = 0
        self.tenants: dict[str, tuple[str, float]] = {}
        self.to_purge: set[str] = set()

    def load(self):
        return self.seq, [(name, t, c) for name, (t, c) in self.tenants.items()]

    def put(self, name, template, created, seq) -> None:
        self.tenants[name] = (template, created)
        self.seq = seq

    def delete(self, name, seq) -> None:
        self.tenants.pop(name, None)
        self.to_purge.add(name)
        self.seq = seq

    def purges(self) -> list[str]:
        return sorted(self.to_purge)

    def purged(self, name) -> None:
        self.to_purge.discard(name)

    def close(self) -> None:
        pass


class RealmBuilder(Protocol):
    """Makes and unmakes realms (the Twisted side installs auth, history...)."""

    def build(self, name: str, template: Any): ...

    def unbuild(self, realm) -> None: ...


class Tenancy:
    def __init__(self, router, templates: Mapping[str, Any], store: TenantStore, builder: RealmBuilder,
                 admin: AdminPolicy, default_template: str | None = None,
                 management_realms: tuple[str, ...] = ()) -> None:
        self.router = router
        self.templates = dict(templates)
        self.store = store
        self.builder = builder
        self.admin = admin
        self.default_template = default_template
        self.management_realms = management_realms
        self.seq = 0
        # name -> {"tenant", "template", "created"}, in creation order
        self.tenants: dict[str, dict] = {}
        # f(kind, name, template) after each change made ("CREATE" | "DELETE"; template None on
        # DELETE): how the cluster shares tenants.
        self.listeners: list[Callable[[str, str, str | None], None]] = []
        # () -> None, or why tenants cannot change now (the cluster out of sync): refused with it.
        self.check: Callable[[], str | None] | None = None

    # -------------------------------------------------------------- start

    def restore(self) -> None:
        """Make every stored tenant again; a missing template stops the start."""
        self.seq, stored = self.store.load()
        for name, template, created in stored:
            if template not in self.templates:
                raise ValueError(f"tenant '{name}' (kept in the state directory) was made from template "
                                 f"'{template}', which the configuration no longer has ([[realm_templates]])")
            if name in self.router.realms:
                raise ValueError(f"tenant '{name}' (kept in the state directory) has the name of a "
                                 "configured realm; rename one of them")
            self.builder.build(name, self.templates[template])
            self.tenants[name] = {"tenant": name, "template": template, "created": created}

    # ---------------------------------------------------------- operations

    def create(self, name, template=None) -> dict:
        self._checked()
        template = template if template is not None else self.default_template
        if not isinstance(name, str) or not TENANT_NAME.fullmatch(name):
            raise ProcedureError(errors.INVALID_ARGUMENT,
                                 f"tenant name {name!r} must be 1-64 of a-z, 0-9 and '_'")
        if template is not None and not isinstance(template, str):
            raise ProcedureError(NO_SUCH_TEMPLATE, f"template must be a template's name, not {template!r}"[:200])
        if template is None:
            raise ProcedureError(NO_SUCH_TEMPLATE, "name a template: the configuration has no default "
                                 "([tenants] default_template)")
        if template not in self.templates:
            known = ", ".join(sorted(self.templates)) or "none"
            raise ProcedureError(NO_SUCH_TEMPLATE, f"no realm template '{template}' (configured: {known})")
        if name in self.router.realms:
            raise ProcedureError(REALM_EXISTS, f"realm '{name}' exists already")
        created = self.router.clock.seconds()
        seq = self.seq + 1
        self._store(self.store.put, name, template, created, seq)
        self.seq = seq
        self.builder.build(name, self.templates[template])
        self.tenants[name] = {"tenant": name, "template": template, "created": created}
        self._publish("CREATE", name)
        self._tell("CREATE", name, template)
        return {"tenant": name, "template": template, "seq": seq}

    def delete(self, name, reason=None) -> dict:
        if not isinstance(name, str) or name not in self.tenants:
            raise ProcedureError(errors.NO_SUCH_REALM, f"no tenant named {name!r}")
        self._checked()
        if reason is not None and not isinstance(reason, str):
            raise ProcedureError(errors.INVALID_ARGUMENT, "reason must be a string")
        seq = self.seq + 1
        self._store(self.store.delete, name, seq)
        self.seq = seq
        del self.tenants[name]
        realm = self.router.remove_realm(name)
        text = f"realm '{name}' was deleted" + (f": {reason}" if reason else "")
        sessions = list(realm.sessions.values())
        for session in sessions:
            session.goodbye(errors.CLOSE_CLOSE_REALM, text)
        self.builder.unbuild(realm)
        self._publish("DELETE", name)
        self._tell("DELETE", name, None)
        return {"tenant": name, "seq": seq, "sessions_closed": len(sessions)}

    def list(self) -> dict:
        return {"tenants": list(self.tenants), "seq": self.seq,
                "details": [dict(t) for t in self.tenants.values()]}

    def _checked(self) -> None:
        problem = self.check() if self.check is not None else None
        if problem is not None:
            raise ProcedureError(errors.UNAVAILABLE, problem)

    def _tell(self, kind: str, name: str, template: str | None) -> None:
        for listener in self.listeners:
            listener(kind, name, template)

    def _store(self, write: Callable, *args) -> None:
        try:
            write(*args)
        except Exception as e:  # the store's own error: say so, change nothing
            raise ProcedureError(STORE_FAILED, f"the tenant store failed ({type(e).__name__}); "
                                 "nothing was changed") from None

    def _publish(self, kind: str, name: str) -> None:
        event = {"type": kind, "tenant": name, "seq": self.seq}
        for realm_name in self.management_realms:
            realm = self.router.realms.get(realm_name)
            if realm is None:
                continue
            matches = realm.broker.subscriptions.match(TOPIC)
            if matches:
                realm.broker.publish_meta(matches, TOPIC, [event])

    # ---------------------------------------------------- router procedures

    def add_procedures(self, registry) -> None:
        registry.add(CREATE, self._admin_only(lambda call: self.create(*_args(call, ("name", "template")))))
        registry.add(DELETE, self._admin_only(lambda call: self.delete(*_args(call, ("name", "reason")))))
        # Components bootstrap from the list: the realm's role rules for `call` decide alone.
        registry.add(LIST, lambda call: self.list())

    def _admin_only(self, operation: Callable) -> Callable:
        def handle(call):
            session = call.session
            if not self.admin.admits(session.authrole, session.permissions):
                raise ProcedureError(errors.NOT_AUTHORIZED,
                                     f"session '{session.authid}' with role '{session.authrole}' "
                                     "may not administer tenants")
            return operation(call)
        return handle


def _args(call, names: tuple[str, ...]) -> list:
    """Positional arguments first, keyword arguments by name, None for the rest."""
    values = list(call.args[:len(names)]) + [None] * max(0, len(names) - len(call.args))
    for i, name in enumerate(names):
        if name in call.kwargs:
            values[i] = call.kwargs[name]
    return values
