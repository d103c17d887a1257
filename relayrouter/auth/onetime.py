"""Browser-safe one-time tickets, bound to the claims of the token that minted them.

A browser should not hold a long-lived credential in a WebSocket URL or page.
It trades its JWT (``POST /ticket``, see transport/tickets.py) for a ticket
that is good for one join within a short lifetime (30 s by default).

* A ticket is ``rrt_`` + 256 random bits (url-safe base64).
* We keep only its SHA-256: a lookup by hash compares nothing secret byte by
  byte, so the lookup's timing tells nothing about the ticket, and a memory
  dump shows no usable ticket.
* Consuming pops the entry: single use, atomic in the reactor's one thread.
* The entry holds the :class:`Grant` (authid, authrole, claims, expiry of the
  token) and the session that joins with it gets exactly that.
* Revocation voids pending tickets whose claims it denies (:meth:`void`); the
  realm's admission check refuses a ticket whose token was revoked anyway.
* In a cluster the vault is *shared* (``shared``, see relayrouter/cluster/state.py):
  :meth:`share` hands a minted ticket's hash and grant to the cluster, which
  then owns it (the local copy goes), and :meth:`take` asks the cluster for a
  ticket this vault does not hold, so the ticket joins once on any node.  A
  ticket minted while the cluster is away stays here: it joins on this node only.
"""

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..core.auth import Accept

PREFIX = "rrt_"
DEFAULT_LIFETIME = 30.0
DEFAULT_MAX_PENDING = 100_000


@dataclass(frozen=True, slots=True)
class Grant:
    realm: str
    authid: str
    authrole: str
    claims: Mapping[str, Any]
    expires_at: float | None  # the token's exp: the session ends then

    def accept(self) -> Accept:
        return Accept(self.authid, self.authrole, "ticket", authprovider="one-time-ticket",
                      permissions=self.claims, expires_at=self.expires_at)


class TooManyTickets(Exception):
    """More unused tickets are pending than allowed; try again shortly."""


class OneTimeTickets:
    def __init__(self, clock: Callable[[], float], *, lifetime: float = DEFAULT_LIFETIME,
                 max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.max_pending = max_pending
        # sha256(ticket) -> (grant, ticket expiry); owned here.
        self.pending_by_digest: dict[bytes, tuple[Grant, float]] = {}
        # The cluster's tickets (put_ticket, take_ticket), or None on a node alone.
        self.shared = None

    def mint(self, grant: Grant) -> str:
        now = self.clock()
        if len(self.pending_by_digest) >= self.max_pending:
            self._purge(now)
            if len(self.pending_by_digest) >= self.max_pending:
                raise TooManyTickets("too many unused tickets are pending")
        ticket = PREFIX + secrets.token_urlsafe(32)
        expires_at = now + self.lifetime
        if grant.expires_at is not None:
            expires_at = min(expires_at, grant.expires_at)
        self.pending_by_digest[_digest(ticket)] = (grant, expires_at)
        return ticket

    def consume(self, ticket: Any, realm: str) -> Grant | None:
        """The grant for ``ticket`` if it is pending, unexpired and for ``realm``; it is used up either way."""
        if not isinstance(ticket, str) or not ticket.startswith(PREFIX):
            return None
        entry = self.pending_by_digest.pop(_digest(ticket), None)
        if entry is None:
            return None
        grant, expires_at = entry
        if self.clock() >= expires_at or grant.realm != realm:
            return None
        return grant

    def share(self, ticket: str) -> Any:
        """Hand a ticket just minted to the cluster: a Deferred firing with "cluster" (it joins
        on any node) or "node" (the cluster is away: it joins here only); "node" when alone."""
        if self.shared is None:
            return "node"
        digest = _digest(ticket)
        grant, expires_at = self.pending_by_digest[digest]

        def stored(shared: bool) -> str:
            if not shared:
                return "node"
            self.pending_by_digest.pop(digest, None)  # the cluster's now: used up there, once
            return "cluster"

        def failed(failure):
            self.pending_by_digest.pop(digest, None)  # maybe stored: never handed out, never usable
            return failure

        return self.shared.put_ticket(digest, grant, expires_at).addCallbacks(stored, failed)

    def take(self, ticket: Any, realm: str) -> Any:
        """:meth:`consume`, or when the ticket is not here and the vault is shared, a Deferred of
        the cluster's answer (a Grant or None; failing when the cluster cannot be asked)."""
        if not is_one_time_ticket(ticket):
            return None
        if self.shared is None or _digest(ticket) in self.pending_by_digest:
            return self.consume(ticket, realm)
        return self.shared.take_ticket(_digest(ticket), realm)

    def void(self, denied: Callable[[Grant], bool]) -> int:
        """Drop every pending ticket whose grant ``denied`` says is revoked."""
        doomed = [d for d, (grant, _) in self.pending_by_digest.items() if denied(grant)]
        for digest in doomed:
            del self.pending_by_digest[digest]
        return len(doomed)

    def _purge(self, now: float) -> None:
        expired = [d for d, (_, expires_at) in self.pending_by_digest.items() if expires_at <= now]
        for digest in expired:
            del self.pending_by_digest[digest]


def is_one_time_ticket(text: Any) -> bool:
    return isinstance(text, str) and text.startswith(PREFIX)


def _digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode("utf8")).digest()
