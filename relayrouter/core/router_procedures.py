"""Procedures the router implements itself, and the deny-list administration.

The hook is one dict per realm, ``realm.router_procedures``: URI -> handler
``(realm, session, msg)``.  The dealer looks there before its registrations,
so a client can never register over a router procedure.  :func:`procedure`
wraps a plain function ``(session, args, kwargs) -> result`` into such a
handler: the result goes back as RESULT, a :class:`ProcedureError` as ERROR.

The deny-list procedures are guarded by an :class:`AdminPolicy`: an admin
role, or an admin scope in the session's credential claims.  The same
:class:`DenyListApi` serves the HTTP endpoints (transport/denylist.py).
"""

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from autobahn.wamp import message as m

from . import errors
from .revocation import DenyListError, SessionGuard

ADD = "relayrouter.denylist.add"
REMOVE = "relayrouter.denylist.remove"
LIST = "relayrouter.denylist.list"


class ProcedureError(Exception):
    def __init__(self, uri: str, text: str) -> None:
        super().__init__(text)
        self.uri = uri


def procedure(fn: Callable[[Any, list, dict], Any]) -> Callable:
    """A router-procedure handler around ``fn(session, args, kwargs) -> result``."""

    def handle(realm, session, msg: m.Call) -> None:
        try:
            result = fn(session, list(msg.args or ()), dict(msg.kwargs or {}))
        except ProcedureError as e:
            session.peer.send(m.Error(m.Call.MESSAGE_TYPE, msg.request, e.uri, args=[str(e)]))
            return
        session.peer.send(m.Result(msg.request, args=[result]))

    return handle


@dataclass(frozen=True, slots=True)
class AdminPolicy:
    """Who may administer: sessions or tokens with one of ``roles``, or ``scope`` among their scopes."""

    roles: frozenset = frozenset()
    scope: str | None = None
    scopes_claim: str = "scopes"

    def admits(self, authrole: str | None, claims: Mapping | None) -> bool:
        if authrole in self.roles:
            return True
        if self.scope is None or not claims:
            return False
        scopes = claims.get(self.scopes_claim)
        if isinstance(scopes, str):
            scopes = scopes.split()
        return isinstance(scopes, (list, tuple)) and self.scope in scopes


class DenyListApi:
    """add / remove / list over the guard, with argument checks; shared by WAMP and HTTP."""

    def __init__(self, guard: SessionGuard, admin: AdminPolicy, default_ttl: float) -> None:
        self.guard = guard
        self.admin = admin
        self.default_ttl = default_ttl

    def add(self, fields: Mapping) -> dict:
        claim, value = _claim_and_value(fields)
        now = self.guard.router.clock.seconds()
        expires_at = fields.get("expires_at")
        if expires_at is None:
            ttl = fields.get("ttl", self.default_ttl)
            if not _number(ttl) or ttl <= 0:
                raise ProcedureError(errors.INVALID_ARGUMENT, "ttl must be a positive number of seconds")
            expires_at = now + ttl
        elif not _number(expires_at):
            raise ProcedureError(errors.INVALID_ARGUMENT, "expires_at must be seconds since the epoch")
        reason = fields.get("reason", "")
        if not isinstance(reason, str):
            raise ProcedureError(errors.INVALID_ARGUMENT, "reason must be a string")
        try:
            entry, ended = self.guard.revoke(claim, value, float(expires_at), reason)
        except DenyListError as e:
            raise ProcedureError(errors.INVALID_ARGUMENT, str(e)) from None
        return {"entry": entry.as_dict(), "sessions_closed": ended}

    def remove(self, fields: Mapping) -> dict:
        claim, value = _claim_and_value(fields)
        return {"removed": self.guard.unrevoke(claim, value)}

    def list(self, fields: Mapping | None = None) -> dict:
        return {"entries": [e.as_dict() for e in self.guard.denylist.entries()]}

    # ------------------------------------------------------------------- WAMP

    def procedures(self) -> dict:
        return {ADD: procedure(self._guarded(self.add)),
                REMOVE: procedure(self._guarded(self.remove)),
                LIST: procedure(self._guarded(self.list))}

    def _guarded(self, operation: Callable[[Mapping], dict]) -> Callable:
        def call(session, args: list, kwargs: dict) -> dict:
            if not self.admin.admits(session.authrole, session.permissions):
                raise ProcedureError(errors.NOT_AUTHORIZED,
                                     f"session '{session.authid}' with role '{session.authrole}' "
                                     "may not administer the deny list")
            fields = dict(kwargs)
            for name, value in zip(("claim", "value"), args):
                fields.setdefault(name, value)
            return operation(fields)
        return call


def _claim_and_value(fields: Mapping) -> tuple[str, str]:
    claim, value = fields.get("claim"), fields.get("value")
    if not isinstance(claim, str) or not claim or not isinstance(value, str) or not value:
        raise ProcedureError(errors.INVALID_ARGUMENT, "give 'claim' and 'value' as non-empty strings")
    return claim, value


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
