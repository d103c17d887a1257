"""Per-session and per-realm limits the core enforces, and their counters.

Theory of operation
-------------------
A realm's :class:`SessionLimits` are configured under ``[realms.limits]``.
Sessions are counted at join (``max_sessions``, and ``max_sessions_per_address``
by the peer's host); a join over either is answered with ABORT.  An
established session holds a :class:`SessionLimiter`: a token bucket over the
messages it sends (``rate`` per second, ``burst`` at once), and the counts of
what it was refused.  Subscriptions, registrations and pending calls are
counted from the session's own indexes (``session.subscriptions``, ...), so
there is nothing to keep in step.

The WAMP spec has no URI for "limit exceeded": we answer with
``relayrouter.error.limit_exceeded`` and a message naming the limit, as it is
spelled in the configuration, so an operator can find it.  Every refusal is
counted in ``realm.counters["limit.<name>"]`` and ``session.limiter.refused``.

Messages that release resources or answer someone else (YIELD, ERROR,
UNSUBSCRIBE, UNREGISTER, CANCEL, GOODBYE, ABORT) are never rate limited:
refusing them would leave a caller waiting or keep a subscription alive.
A request over the rate gets ERROR; a PUBLISH that asked for no
acknowledgement is dropped (and counted), as it has no way to be answered.
"""

from collections import Counter
from dataclasses import dataclass

from autobahn.wamp import message as m

LIMIT_EXCEEDED = "relayrouter.error.limit_exceeded"


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """A realm's limits on its sessions; 0 means no limit."""

    # Defaults bound what one misbehaving client can take without getting in
    # the way of real deployments (a NAT or a test rig puts thousands of
    # sessions behind one address; one session can stream tens of thousands
    # of messages a second).  Tighten them per realm for untrusted clients.
    max_sessions: int = 50_000  # sessions in the realm
    max_sessions_per_address: int = 10_000  # sessions in the realm from one peer host
    max_subscriptions: int = 10_000  # per session
    max_registrations: int = 1_000  # per session
    max_pending_calls: int = 1_000  # per session, calls it made that are not answered yet
    rate: float = 100_000.0  # messages per second per session
    burst: int = 100_000  # messages a session may send at once above the rate


class SessionLimiter:
    """An established session's message budget (a token bucket) and refusals."""

    __slots__ = ("limits", "refused", "_tokens", "_last")

    def __init__(self, limits: SessionLimits, now: float) -> None:
        self.limits = limits
        self.refused: Counter = Counter()
        self._tokens = float(limits.burst)
        self._last = now

    def take(self, now: float) -> bool:
        """Spend one message; False when the session is over its rate."""
        rate = self.limits.rate
        if not rate:
            return True
        tokens = min(self.limits.burst, self._tokens + (now - self._last) * rate)
        self._last = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True


# Answering or releasing: never refused.
_EXEMPT = frozenset(cls.MESSAGE_TYPE for cls in (
    m.Yield, m.Error, m.Unsubscribe, m.Unregister, m.Cancel, m.Goodbye, m.Abort))


def admit_message(session, message: m.Message) -> bool:
    """Whether an established session's message may be handled (the rate limit)."""
    limiter = session.limiter
    if limiter is None or message.MESSAGE_TYPE in _EXEMPT:
        return True
    if limiter.take(session.realm.now()):
        return True
    limits = limiter.limits
    text = (f"rate: this session sent more than {limits.rate:g} messages per second "
            f"(burst {limits.burst}); slow down")
    if type(message) is m.Publish and not message.acknowledge:
        count(session, "rate")
    else:
        refuse(session, message, "rate", text)
    return False


def subscription_refused(session) -> str | None:
    return _over(session, "max_subscriptions", len(session.subscriptions), "subscriptions")


def registration_refused(session, pending: int = 0) -> str | None:
    """``pending``: REGISTERs of the session still on their way (a cluster's directory)."""
    return _over(session, "max_registrations", len(session.registrations) + pending, "registrations")


def call_refused(session) -> str | None:
    return _over(session, "max_pending_calls", len(session.calls), "calls waiting for a result")


def _over(session, name: str, held: int, what: str) -> str | None:
    limiter = session.limiter
    limit = getattr(limiter.limits, name) if limiter is not None else 0
    if not limit or held < limit:
        return None
    return f"{name}: this session has {held} {what}, the realm's limit"


def refuse(session, request: m.Message, name: str, text: str) -> None:
    """Answer a request with ERROR relayrouter.error.limit_exceeded, and count it."""
    count(session, name)
    session.peer.send(m.Error(request.MESSAGE_TYPE, request.request, LIMIT_EXCEEDED, args=[text]))


def count(session, name: str) -> None:
    if session.limiter is not None:
        session.limiter.refused[name] += 1
    if session.realm is not None:
        session.realm.counters[f"limit.{name}"] += 1


# ----------------------------------------------------------------- joining


def address_of(transport) -> str:
    """The peer's host, from a peer string like ``tcp4:127.0.0.1:53120``."""
    peer = transport.peer or ""
    if peer.startswith(("tcp4:", "tcp6:")):
        return peer.rsplit(":", 1)[0]
    return peer


def join_refused(realm, session) -> tuple[str, str] | None:
    """None, or the (reason, message) of the ABORT refusing a join."""
    limits = realm.policy.limits
    if limits.max_sessions and len(realm.sessions) >= limits.max_sessions:
        realm.counters["limit.max_sessions"] += 1
        return LIMIT_EXCEEDED, (f"max_sessions: realm '{realm.name}' has {len(realm.sessions)} "
                                "sessions, its limit; try again later")
    per_address = limits.max_sessions_per_address
    address = address_of(session.transport)
    if per_address and address and realm.sessions_by_address[address] >= per_address:
        realm.counters["limit.max_sessions_per_address"] += 1
        return LIMIT_EXCEEDED, (f"max_sessions_per_address: realm '{realm.name}' has "
                                f"{per_address} sessions from {address}, its limit")
    return None
