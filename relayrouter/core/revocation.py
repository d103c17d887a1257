"""Revocation: a deny list over credential claims, and the guard that applies it.

Theory of operation
-------------------
An entry denies one value of one claim (``bid = "booking-1"``, ``jti = ...``,
``authid = "device-7"``) until it expires.  The :class:`DenyList` keeps every
live entry in a dict keyed by ``(claim, value)``; a check looks up each
configured claim of a credential there, so it costs a few dict lookups and
never touches the store (the store is written on add and remove only).

The :class:`SessionGuard` is shared by all realms of a router.  It is asked at
admission (after authentication, before WELCOME) whether the credential is
denied or already expired; it schedules the end of each session whose
credential expires (GOODBYE ``wamp.close.token_expired``); and when an entry
is added it ends every live session carrying it (GOODBYE
``wamp.close.revoked``) and tells its listeners (the one-time ticket vaults
void their pending tickets).  A session that does not answer our GOODBYE
within ``close_grace`` seconds is hung up on.

The :class:`DenyListApi` is the administration of the list, for admins only
(an :class:`AdminPolicy`): router procedures ``relayrouter.denylist.*`` and
the same operations behind the HTTP ``/denylist`` endpoints.
"""

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from . import errors
from .procedures import AdminPolicy, ProcedureError

CLOSE_REVOKED = "wamp.close.revoked"
CLOSE_TOKEN_EXPIRED = "wamp.close.token_expired"
# The session's authid is deniable under this name whatever the credential.
AUTHID = "authid"


@dataclass(frozen=True, slots=True)
class DenyEntry:
    claim: str  # "bid", "jti", "sub", "authid", ...
    value: str
    expires_at: float  # seconds since the epoch; the entry is dropped after it
    reason: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.claim, self.value

    def as_dict(self) -> dict:
        return {"claim": self.claim, "value": self.value, "expires_at": self.expires_at,
                "reason": self.reason}


class DenyListError(ValueError):
    """An add or remove the deny list refuses; the message says why."""


def claim_values(claims: Mapping | None, claim: str) -> tuple[str, ...]:
    """The string values of ``claim`` in a credential's claims (a string or a list of them)."""
    if not claims:
        return ()
    value = claims.get(claim)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(v for v in value if isinstance(v, str))
    return ()


class DenyList:
    """Live entries in memory, written through to a store (see relayrouter.store)."""

    def __init__(self, store, claims: Iterable[str], clock) -> None:
        self.store = store
        self.claims = tuple(dict.fromkeys((*claims, AUTHID)))
        self.clock = clock
        self.entries_by_key: dict[tuple[str, str], DenyEntry] = {}

    def load(self) -> None:
        """Every live entry of the (opened) store, once at start."""
        self.entries_by_key = {e.key: e for e in self.store.load(self.clock.seconds())}

    def add(self, claim: str, value: str, expires_at: float, reason: str = "") -> DenyEntry:
        if claim not in self.claims:
            raise DenyListError(f"claim '{claim}' is not deniable here (configured: {', '.join(self.claims)})")
        if not isinstance(value, str) or not value:
            raise DenyListError("the value to deny must be a non-empty string")
        if expires_at <= self.clock.seconds():
            raise DenyListError("the entry would expire before it starts: give a future expires_at or a positive ttl")
        entry = DenyEntry(claim, value, float(expires_at), reason)
        self.store.put(entry)
        self.entries_by_key[entry.key] = entry
        return entry

    def remove(self, claim: str, value: str) -> bool:
        entry = self.entries_by_key.pop((claim, value), None)
        self.store.delete(claim, value)
        return entry is not None

    def entries(self) -> list[DenyEntry]:
        now = self.clock.seconds()
        expired = [k for k, e in self.entries_by_key.items() if e.expires_at <= now]
        for key in expired:
            del self.entries_by_key[key]
        return sorted(self.entries_by_key.values(), key=lambda e: (e.claim, e.value))

    def match(self, authid: str | None, claims: Mapping | None) -> DenyEntry | None:
        """The live entry denying this credential, if any."""
        entries = self.entries_by_key
        if not entries:
            return None
        now = self.clock.seconds()
        for claim in self.claims:
            values = (authid,) if claim == AUTHID and authid else claim_values(claims, claim)
            for value in values:
                entry = entries.get((claim, value))
                if entry is not None and entry.expires_at > now:
                    return entry
        return None

    def denies(self, entry: DenyEntry, authid: str | None, claims: Mapping | None) -> bool:
        if entry.claim == AUTHID:
            return authid == entry.value
        return entry.value in claim_values(claims, entry.claim)


class NoGuard:
    """A realm's guard when the router has none (tests, embedding): admits everyone."""

    def admission(self, realm, session, accept) -> tuple[str, str] | None:
        return None

    def joined(self, session) -> None: ...
    def left(self, session) -> None: ...


class SessionGuard:
    """Applies the deny list and credential expiry to every realm of a router."""

    def __init__(self, router, denylist: DenyList, *, close_grace: float = 2.0) -> None:
        self.router = router
        self.denylist = denylist
        self.close_grace = close_grace
        self.expiry_timers: dict[Any, Any] = {}  # session -> Timer, for sessions whose credential expires
        self.revocation_listeners: list[Callable[[DenyEntry], None]] = []
        # Told (claim, value) of each entry removed (the cluster shares removals).
        self.unrevocation_listeners: list[Callable[[str, str], None]] = []
        self.counters = {"revoked_sessions": 0, "expired_sessions": 0, "refused_denied": 0}

    # ----------------------------------------------------------- realm hooks

    def admission(self, realm, session, accept) -> tuple[str, str] | None:
        if accept.expires_at is not None and accept.expires_at <= self.router.clock.seconds():
            return errors.AUTHENTICATION_FAILED, "the credential has expired"
        if self.denylist.match(accept.authid, accept.permissions) is not None:
            self.counters["refused_denied"] += 1
            return errors.NOT_AUTHORIZED, "this credential has been revoked"
        return None

    def joined(self, session) -> None:
        if session.expires_at is None:
            return
        delay = max(0.0, session.expires_at - self.router.clock.seconds())
        self.expiry_timers[session] = self.router.clock.callLater(delay, self._expire, session)

    def left(self, session) -> None:
        timer = self.expiry_timers.pop(session, None)
        if timer is not None and timer.active():
            timer.cancel()

    # --------------------------------------------------------------- revoking

    def revoke(self, claim: str, value: str, expires_at: float, reason: str = "") -> tuple[DenyEntry, int]:
        """Deny a claim value: refuse it from now on and end live sessions carrying it."""
        entry = self.denylist.add(claim, value, expires_at, reason)
        ended = 0
        for session in list(self.router.sessions()):
            if self.denylist.denies(entry, session.authid, session.permissions):
                self._end(session, CLOSE_REVOKED, "the session's credential has been revoked")
                ended += 1
        self.counters["revoked_sessions"] += ended
        for listener in self.revocation_listeners:
            listener(entry)
        return entry, ended

    def unrevoke(self, claim: str, value: str) -> bool:
        removed = self.denylist.remove(claim, value)
        for listener in self.unrevocation_listeners:
            listener(claim, value)
        return removed

    # ---------------------------------------------------------------- ending

    def _expire(self, session) -> None:
        self.expiry_timers.pop(session, None)
        self.counters["expired_sessions"] += 1
        self._end(session, CLOSE_TOKEN_EXPIRED, "the session's credential has expired")

    def _end(self, session, reason: str, text: str) -> None:
        session.goodbye(reason, text)
        self.router.clock.callLater(self.close_grace, _hang_up_if_closing, session)


def _hang_up_if_closing(session) -> None:
    from .session import State

    if session.state is State.CLOSING:
        session.peer.close()


# ------------------------------------------------------- administration API

ADD = "relayrouter.denylist.add"
REMOVE = "relayrouter.denylist.remove"
LIST = "relayrouter.denylist.list"


class DenyListApi:
    """add / remove / list over the guard, with argument checks; shared by the
    router procedures and the HTTP endpoints (transport/tickets.py)."""

    def __init__(self, guard: SessionGuard, admin: AdminPolicy, default_ttl: float) -> None:
        self.guard = guard
        self.admin = admin
        self.default_ttl = default_ttl
        # Others who may, beyond the admins: ``also.admits_deny_list(session, write)``
        # (the web console's users), or None.
        self.also = None

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

    # ---------------------------------------------------- router procedures

    def add_procedures(self, registry) -> None:
        """Add relayrouter.denylist.* to a realm's ProcedureRegistry."""
        for uri, operation, write in ((ADD, self.add, True), (REMOVE, self.remove, True),
                                      (LIST, self.list, False)):
            registry.add(uri, self._handler(operation, write))

    def _admits(self, session, write: bool) -> bool:
        if self.admin.admits(session.authrole, session.permissions):
            return True
        return self.also is not None and self.also.admits_deny_list(session, write)

    def _handler(self, operation: Callable[[Mapping], dict], write: bool) -> Callable:
        def handle(call) -> dict:
            session = call.session
            if not self._admits(session, write):
                raise ProcedureError(errors.NOT_AUTHORIZED,
                                     f"session '{session.authid}' with role '{session.authrole}' "
                                     "may not administer the deny list")
            fields = dict(call.kwargs)
            for name, value in zip(("claim", "value"), call.args):
                fields.setdefault(name, value)
            return operation(fields)
        return handle


def _claim_and_value(fields: Mapping) -> tuple[str, str]:
    claim, value = fields.get("claim"), fields.get("value")
    if not isinstance(claim, str) or not claim or not isinstance(value, str) or not value:
        raise ProcedureError(errors.INVALID_ARGUMENT, "give 'claim' and 'value' as non-empty strings")
    return claim, value


def _number(value) -> bool:
    """A count of seconds: finite, and within what a float holds exactly (1e12 s is 31,700 years)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and -1e12 <= value <= 1e12
