"""Failed authentication attempts, limited so that one user's mistakes lock
out that user, not everyone behind the same address.

Theory of operation
-------------------
A lab, a school or an office reaches us through one NAT address, so the
address alone cannot be the unit: ten typos by one person would lock out
everyone there.  Failures (verified wrong credentials) spend two kinds of
token bucket, each refilled as time passes:

* one per ``(address, authid)``: ``burst`` failures, refilled at
  ``per_minute``.  Spent, that authid is refused from that address before its
  credentials are looked at, until a token has grown back.  Brute-forcing one
  account is slowed, then refused; nobody else at the address notices.
* one per address: ``address_burst`` failures across all authids, refilled at
  ``address_per_minute``, a much larger ceiling for one client trying many
  authids (enumeration, password spraying).  Spent, the address's attempts
  are refused before their credentials are looked at, except for authids that
  logged in from that address within ``remember_success`` seconds: those are
  still checked, within their own budget.

A success costs nothing, and an attempt refused by a limit spends nothing
(hammering a locked account neither prolongs its lock nor brings the address
nearer its ceiling).  So a correct *guessable* secret (a static ticket,
WAMP-CRA) is refused only when its own ``(address, authid)`` budget is
spent, or while the address's ceiling is spent and the authid has not logged
in from there lately.

Credentials that cannot be guessed (a JWT whose signature and claims are
valid, a cryptosign signature, a TLS client certificate, a one-time ticket:
:func:`unguessable`) are never refused because of failures, theirs or
anybody else's: an attempt over a limit is still checked, and only let in if
it is one of those; anything else gets the limit's refusal, the same answer
whether its secret was right or wrong (so the limit is no oracle).

The authid is the one in HELLO; without one, the identity a JWT credential
claims (read without verifying it: it only picks the bucket): its ``sub``,
else its booking id, else its ``prefix``/``topic``, else a hash of the token,
so tokens that name nobody do not share one bucket; otherwise ``""``, shared
by the credentials that name nobody.  Anonymous logins are passed through:
there is nothing to guess.  Buckets that have refilled are forgotten, so
memory follows the failing clients; ``max_entries`` bounds each table (the
oldest entries go first).

In a cluster every node spends the same budgets: each failure verified here
is handed to ``share`` (the cluster publishes it, :mod:`relayrouter.cluster.limits`),
and :meth:`FailureLimiter.failed_elsewhere` spends the buckets for a failure
another node verified.  Successes (``remember_success``) stay per node.
"""

import base64
import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from ..core.auth import Accept, Challenge, Deny, JoinRequest
from ..httpinput import json_value

BY_AUTHID = "authid"
BY_ADDRESS = "address"


@dataclass(frozen=True, slots=True)
class FailureLimits:
    burst: int = 10  # failures per (address, authid) at once ...
    per_minute: float = 10.0  # ... refilled at this rate
    address_burst: int = 100  # failures per address, across all authids ...
    address_per_minute: float = 60.0  # ... refilled at this rate
    remember_success: float = 86400.0  # s: a login keeps its authid checked past the address ceiling
    max_entries: int = 100_000  # per table: pair buckets, address buckets, remembered logins


@dataclass(frozen=True, slots=True)
class Refusal:
    """An attempt refused before its credentials were looked at."""

    by: str  # BY_AUTHID or BY_ADDRESS
    retry_after: float  # seconds until a token has grown back

    @property
    def message(self) -> str:
        wait = max(1, round(self.retry_after))
        if self.by == BY_AUTHID:
            return (f"too many failed authentication attempts for this authid from your address; "
                    f"try again in {wait} s")
        return (f"too many failed authentication attempts from your address, across many authids; "
                f"try again in {wait} s")


class _Buckets:
    """Token buckets by key, spent by failures; a refilled bucket is forgotten."""

    def __init__(self, clock: Callable[[], float], burst: int, per_minute: float, max_entries: int) -> None:
        self.clock, self.burst, self.rate, self.max_entries = clock, burst, per_minute / 60.0, max_entries
        self.tokens_by_key: dict[Any, tuple[float, float]] = {}  # key -> (tokens, at), oldest touched first

    def wait(self, key) -> float | None:
        """Seconds until ``key`` has a token, or None if it has one now."""
        tokens = self._tokens(key)
        return None if tokens >= 1 else (1 - tokens) / self.rate

    def spend(self, key) -> None:
        tokens = max(self._tokens(key) - 1, 0.0)
        self.tokens_by_key.pop(key, None)  # re-insert: the dict stays in order of last use
        if len(self.tokens_by_key) >= self.max_entries:
            self._make_room()
        self.tokens_by_key[key] = (tokens, self.clock())

    def _tokens(self, key) -> float:
        entry = self.tokens_by_key.get(key)
        if entry is None:
            return float(self.burst)
        tokens, at = entry
        tokens = min(float(self.burst), tokens + (self.clock() - at) * self.rate)
        if tokens >= self.burst:
            del self.tokens_by_key[key]
        return tokens

    def bring_up_to_now(self) -> None:
        """Every bucket's tokens as of now, at the current rate (before the rate changes)."""
        now = self.clock()
        for key in list(self.tokens_by_key):
            tokens = self._tokens(key)
            if key in self.tokens_by_key:
                self.tokens_by_key[key] = (tokens, now)

    def _make_room(self) -> None:
        for key in list(self.tokens_by_key):
            self._tokens(key)
        while len(self.tokens_by_key) >= self.max_entries:
            del self.tokens_by_key[next(iter(self.tokens_by_key))]


class FailureLimiter:
    """The failure budgets of one router (WAMP joins and the HTTP endpoints that take tokens).

    ``counters``: ``failures`` (verified wrong credentials), ``refused_authid``
    and ``refused_address`` (attempts refused by each limit, credentials
    unchecked), ``successes``.
    """

    def __init__(self, clock: Callable[[], float], limits: FailureLimits = FailureLimits()) -> None:
        self.clock = clock  # read through the limiter, so a test may swap it
        self.limits = limits
        now = lambda: self.clock()  # noqa: E731
        self.pairs = _Buckets(now, limits.burst, limits.per_minute, limits.max_entries)
        self.addresses = _Buckets(now, limits.address_burst, limits.address_per_minute, limits.max_entries)
        self.logins_by_pair: dict[tuple[str, str], float] = {}  # (address, authid) -> last success
        self.counters = {"failures": 0, "refused_authid": 0, "refused_address": 0, "successes": 0}
        # f(address, authid) after each failure verified here, or None: how a cluster shares them.
        self.share: Callable[[str, str], None] | None = None

    def reload(self, limits: FailureLimits) -> None:
        """New budgets (a configuration reload): buckets already spent keep
        what they hold, capped by the new bursts, and refill at the new rates."""
        self.limits = limits
        for buckets, burst, per_minute in ((self.pairs, limits.burst, limits.per_minute),
                                           (self.addresses, limits.address_burst, limits.address_per_minute)):
            buckets.bring_up_to_now()  # what was refilled at the old rate is kept
            buckets.burst, buckets.rate, buckets.max_entries = burst, per_minute / 60.0, limits.max_entries

    @property
    def refused(self) -> int:
        return self.counters["refused_authid"] + self.counters["refused_address"]

    def check(self, address: str, authid: str) -> Refusal | None:
        """Whether an attempt may have its credentials checked; a Refusal (counted) if not."""
        refusal = self.peek(address, authid)
        if refusal is not None:
            self.refusing(refusal)
        return refusal

    def peek(self, address: str, authid: str) -> Refusal | None:
        """The Refusal an attempt would get now, not counted (see :meth:`settle`)."""
        wait = self.pairs.wait((address, authid))
        if wait is not None:
            return Refusal(BY_AUTHID, wait)
        wait = self.addresses.wait(address)
        if wait is not None and not self._logged_in_lately(address, authid):
            return Refusal(BY_ADDRESS, wait)
        return None

    def refusing(self, refusal: Refusal) -> None:
        self.counters["refused_authid" if refusal.by == BY_AUTHID else "refused_address"] += 1

    def settle(self, address: str, authid: str, refusal: Refusal | None, decision: Any) -> Any:
        """The answer to an attempt that :meth:`peek` gave ``refusal`` and the
        authenticator ``decision`` (Accept or Deny): an unguessable Accept
        always stands; else a refusal (counted, nothing spent), else the
        decision, counted as a failure or a success."""
        if isinstance(decision, Accept) and unguessable(decision):
            self.succeeded(address, authid)
            return decision
        if refusal is not None:
            self.refusing(refusal)
            return refusal
        if isinstance(decision, Accept):
            self.succeeded(address, authid)
        elif isinstance(decision, Deny):
            self.failed(address, authid)
        return decision

    def failed(self, address: str, authid: str) -> None:
        self.counters["failures"] += 1
        self._spend(address, authid)
        if self.share is not None:
            self.share(address, authid)

    def failed_elsewhere(self, address: str, authid: str) -> None:
        """A failure another node of the cluster verified: the same budgets
        spent, counted apart (``failures_elsewhere``)."""
        self.counters["failures_elsewhere"] = self.counters.get("failures_elsewhere", 0) + 1
        self._spend(address, authid)

    def _spend(self, address: str, authid: str) -> None:
        self.pairs.spend((address, authid))
        self.addresses.spend(address)

    def succeeded(self, address: str, authid: str) -> None:
        self.counters["successes"] += 1
        logins = self.logins_by_pair
        logins.pop((address, authid), None)
        if len(logins) >= self.limits.max_entries:
            del logins[next(iter(logins))]  # the least recent login
        logins[(address, authid)] = self.clock()

    def _logged_in_lately(self, address: str, authid: str) -> bool:
        at = self.logins_by_pair.get((address, authid))
        return at is not None and self.clock() - at <= self.limits.remember_success


def address_of(peer: str) -> str:
    """'tcp4:127.0.0.1:53120' -> 'tcp4:127.0.0.1' (the port changes per connection)."""
    if peer.startswith(("tcp4:", "tcp6:")):
        return peer.rsplit(":", 1)[0]
    return peer


_MAX_TOKEN = 16384
# Credentials no one can guess: a valid one is never refused by a limit.
UNGUESSABLE_METHODS = frozenset({"jwt", "cryptosign", "tls"})
UNGUESSABLE_PROVIDERS = frozenset({"jwt", "relay", "one-time-ticket"})  # authmethod ticket


def unguessable(accept: Accept) -> bool:
    """Whether an Accept was earned with a credential that cannot be guessed
    (a verified signature or certificate, or a 256-bit one-time ticket)."""
    return accept.authmethod in UNGUESSABLE_METHODS or accept.authprovider in UNGUESSABLE_PROVIDERS


def claimed_authid(credential: Any) -> str:
    """The identity a JWT credential claims, unverified (it only picks a budget):
    its ``sub``, else ``booking:<booking_id or bid>``, else ``topic:<prefix>/<topic>``,
    else ``token:<hash>``; "" for anything that is not a JWT."""
    if type(credential) is not str or len(credential) > _MAX_TOKEN or credential.count(".") != 2:
        return ""
    body = credential.split(".")[1]
    try:
        claims = json_value(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)), field="the token")
    except ValueError:  # not base64, or BadInput: not JSON, nested too deep
        claims = None
    claims = claims if type(claims) is dict else {}
    sub, bid, topic = claims.get("sub"), claims.get("booking_id") or claims.get("bid"), claims.get("topic")
    if type(sub) is str and sub:
        return sub
    if type(bid) is str and bid:
        return f"booking:{bid}"
    if type(topic) is str and topic:
        return f"topic:{claims.get('prefix')}/{topic}"
    return "token:" + hashlib.sha256(credential.encode("utf8", "replace")).hexdigest()[:32]


class RateLimited:
    """Wraps an authenticator: refuses attempts over a budget, counts its decisions.

    The budget's key is HELLO's authid, else the identity the credential
    claims (:func:`claimed_authid`; ``""`` when there is none).  WAMP-CRA
    (guessable only) is refused at HELLO when over a budget; every other
    method's attempt is decided by :meth:`FailureLimiter.settle`, so a valid
    unguessable credential gets in whatever the budgets say.  A Challenge goes
    out unchecked: the AUTHENTICATE that answers it is settled.
    """

    def __init__(self, inner, limiter: FailureLimiter) -> None:
        self.inner = inner
        self.limiter = limiter
        self.authmethod = inner.authmethod

    def hello(self, request: JoinRequest) -> Any:
        if self.authmethod == "anonymous":  # nothing to guess, nothing to limit
            return self.inner.hello(request)
        address = address_of(request.transport.peer)
        token = request.authextra.get("token") if self.authmethod == "jwt" else None
        authid = request.authid or claimed_authid(token)
        refusal = self.limiter.peek(address, authid)
        if refusal is not None and self.authmethod == "wampcra":
            self.limiter.refusing(refusal)
            return Deny(refusal.message)
        return self._settled(address, authid, refusal, self.inner.hello(request))

    def authenticate(self, request: JoinRequest, state, signature: str, extra: dict) -> Any:
        address = address_of(request.transport.peer)
        authid = request.authid or claimed_authid(signature)
        refusal = self.limiter.peek(address, authid)
        return self._settled(address, authid, refusal, self.inner.authenticate(request, state, signature, extra))

    def _settled(self, address: str, authid: str, refusal: Refusal | None, decision: Any) -> Any:
        if hasattr(decision, "addBoth"):
            return decision.addBoth(lambda d: self._settled(address, authid, refusal, d))
        if isinstance(decision, Challenge):
            return decision
        outcome = self.limiter.settle(address, authid, refusal, decision)
        return Deny(outcome.message) if isinstance(outcome, Refusal) else outcome
