"""A realm: a routing and administrative domain with its own sessions,
broker, dealer, authenticators and authorization."""

from collections import Counter
from dataclasses import dataclass

from .auth import Accept, AnonymousAuthenticator
from .broker import Broker
from .dealer import Dealer
from .ids import global_id
from .meta import MetaApi, MetaEvents
from .realm_observer import RealmObserver  # noqa: F401 (part of this module's API)
from .procedures import ProcedureRegistry
from .limits import SessionLimiter, SessionLimits, address_of, join_refused
from .pairs import NOT_MINE, PairTable
from .revocation import NoGuard


@dataclass(frozen=True, slots=True)
class RealmPolicy:
    """What a realm allows beyond routing, as configured."""

    # Whether callers / publishers asking for disclosure (disclose_me) get it.
    disclose_caller: bool = True
    disclose_publisher: bool = True
    # How much may wait for a subscriber that is not reading, and the policy
    # then; applied by the transport (an OutboundLimits), None for its default.
    outbound: object = None
    # Retained events kept (one per topic, the oldest topic evicted first).
    max_retained_events: int = 10_000
    # Sessions, subscriptions, registrations, pending calls and message rate.
    limits: SessionLimits = SessionLimits()
    # Gateway/manager pairs (core/pairs.py PairPolicy), None when not configured.
    pairing: object = None


class AllowAll:
    """The development default: every action on every URI (realms with no roles)."""

    def authorize(self, session, action: str, uri: str, match: str = "exact") -> str | None:
        return None

    def discloses(self, session, kind: str, uri: str) -> bool | None:
        return None  # no opinion: the realm policy decides

    def forget(self, session) -> None:
        pass


class Realm:
    def __init__(self, name: str, router, *, authenticators=None, authorizer=None,
                 policy: RealmPolicy | None = None) -> None:
        self.name = name
        self.router = router
        self.sessions: dict[int, object] = {}
        self.sessions_by_address: Counter = Counter()  # peer host -> sessions, for limits
        self.authenticators: dict = (
            authenticators if authenticators is not None
            else {"anonymous": AnonymousAuthenticator()})
        self.authorizer = authorizer or AllowAll()
        # A feature's ceiling on some sessions, whatever the roles say (the relay's tokens,
        # relay/scope.py): authorize() and forget() like an authorizer's; None: no ceiling.
        self.confinement = None
        self.policy = policy or RealmPolicy()
        # Procedures the router answers itself (meta API, deny list, ...): features add
        # theirs with procedures.add(uri, handler); see core/procedures.py.
        self.procedures = ProcedureRegistry()
        # Meta events (wamp.session.on_join, ...) come from these hooks.
        self.observer = MetaEvents(self)
        self.meta = MetaApi(self)
        # Admission, credential expiry and revocation (core/revocation.py), shared by all realms.
        self.guard = NoGuard()
        # What was refused or dropped in this realm, by kind; read by metrics.
        self.counters: Counter = Counter()
        # Sessions that joined, by authentication method; read by metrics.
        self.joins_by_method: Counter = Counter()
        # WELCOME's roles when this realm announces more than the router's
        # (event history); None: the router's.
        self.welcome_roles: dict | None = None
        self.broker = Broker(self)
        self.dealer = Dealer(self)
        self.pairs = PairTable(self, self.policy.pairing) if self.policy.pairing else None

    def __repr__(self) -> str:
        return f"<Realm {self.name} sessions={len(self.sessions)}>"

    def now(self) -> float:
        return self.router.clock.seconds()

    # ---------------------------------------------------------------- sessions

    def admission(self, session, accept: Accept) -> tuple[str, str] | None:
        """Whether an authenticated session may join: None, or (reason, message)."""
        refusal = self.guard.admission(self, session, accept)
        if refusal is None and self.pairs is not None:
            refusal = self.pairs.admission(session, accept)
        return refusal if refusal is not None else join_refused(self, session)

    def attach(self, session) -> None:
        session_id = global_id()
        while session_id in self.sessions:
            session_id = global_id()
        session.session_id = session_id
        session.realm = self
        session.limiter = SessionLimiter(self.policy.limits, self.now())
        self.sessions[session_id] = session
        self.sessions_by_address[address_of(session.transport)] += 1

    def joined(self, session) -> None:
        self.joins_by_method[session.authmethod] += 1
        self.observer.joined(session)
        self.guard.joined(session)
        if self.pairs is not None:
            self.pairs.joined(session)

    def detach(self, session) -> None:
        self.broker.remove_session(session)
        self.dealer.remove_session(session)
        if self.sessions.pop(session.session_id, None) is not None:
            # Testaments: "published ... once either the WAMP session has detached
            # or the client connection has been lost" (GOODBYE included).
            if session.testaments:
                self.meta.publish_testaments(session)
            _forget_one(self.sessions_by_address, address_of(session.transport))
            self.observer.left(session)
            self.guard.left(session)
            if self.pairs is not None:
                self.pairs.left(session)
        self.authorizer.forget(session)
        if self.confinement is not None:
            self.confinement.forget(session)

    # ----------------------------------------------------------- authorization

    def replace_rules(self, authorizer) -> None:
        """New role rules (a reload).  A feature that wrapped the rules (its
        wrapper has the rules as ``inner``: the relay trusting its monitor)
        keeps wrapping the new ones."""
        outer, current = None, self.authorizer
        while hasattr(current, "inner"):
            outer, current = current, current.inner
        if outer is None:
            self.authorizer = authorizer
        else:
            outer.inner = authorizer

    def authorize(self, session, action: str, uri: str, match: str = "exact") -> str | None:
        """None when allowed, else a message saying what was refused."""
        if self.pairs is not None:
            # A pair's URIs are its two peers' alone, whatever the roles say.
            verdict = self.pairs.authorize(session, action, uri, match)
            if verdict is not NOT_MINE:
                return verdict
        if self.confinement is not None:
            refusal = self.confinement.authorize(session, action, uri, match)
            if refusal is not None:
                return refusal
        return self.authorizer.authorize(session, action, uri, match)

    def may_disclose_caller(self, session, uri: str | None = None) -> bool:
        granted = None if uri is None else self.authorizer.discloses(session, "caller", uri)
        return self.policy.disclose_caller if granted is None else granted

    def may_disclose_publisher(self, session, uri: str | None = None) -> bool:
        granted = None if uri is None else self.authorizer.discloses(session, "publisher", uri)
        return self.policy.disclose_publisher if granted is None else granted


def _forget_one(counter: Counter, key) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
