"""A realm: a routing and administrative domain with its own sessions,
broker, dealer, authenticators and authorization."""

from collections import Counter
from dataclasses import dataclass

from .auth import Accept, AnonymousAuthenticator
from .broker import Broker
from .dealer import Dealer
from .ids import global_id
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


class AllowAll:
    """The development default: every action on every URI (realms with no roles)."""

    def authorize(self, session, action: str, uri: str, match: str = "exact") -> str | None:
        return None

    def discloses(self, session, kind: str, uri: str) -> bool | None:
        return None  # no opinion: the realm policy decides

    def forget(self, session) -> None:
        pass


class RealmObserver:
    """Notified of what happens in a realm (meta events, metrics). Does nothing by default."""

    def joined(self, session) -> None: ...
    def left(self, session) -> None: ...
    def subscribed(self, session, subscription, created: bool) -> None: ...
    def unsubscribed(self, session, subscription, deleted: bool) -> None: ...
    def registered(self, session, registration, created: bool) -> None: ...
    def unregistered(self, session, registration, deleted: bool) -> None: ...


class Realm:
    def __init__(self, name: str, router, *, authenticators=None, authorizer=None,
                 policy: RealmPolicy | None = None) -> None:
        self.name = name
        self.router = router
        self.sessions: dict[int, object] = {}
        self.authenticators: dict = (
            authenticators if authenticators is not None
            else {"anonymous": AnonymousAuthenticator()})
        self.authorizer = authorizer or AllowAll()
        self.policy = policy or RealmPolicy()
        self.observer = RealmObserver()
        # Admission, credential expiry and revocation (core/revocation.py), shared by all realms.
        self.guard = NoGuard()
        # Procedures the router itself implements, by URI (consulted by the dealer before
        # registrations): uri -> handler(realm, session, msg); see core/router_procedures.py.
        self.router_procedures: dict = {}
        # What was refused or dropped in this realm, by kind; read by metrics.
        self.counters: Counter = Counter()
        self.broker = Broker(self)
        self.dealer = Dealer(self)

    def __repr__(self) -> str:
        return f"<Realm {self.name} sessions={len(self.sessions)}>"

    def now(self) -> float:
        return self.router.clock.seconds()

    # ---------------------------------------------------------------- sessions

    def admission(self, session, accept: Accept) -> tuple[str, str] | None:
        """Whether an authenticated session may join: None, or (reason, message)."""
        return self.guard.admission(self, session, accept)

    def attach(self, session) -> None:
        session_id = global_id()
        while session_id in self.sessions:
            session_id = global_id()
        session.session_id = session_id
        session.realm = self
        self.sessions[session_id] = session

    def joined(self, session) -> None:
        self.observer.joined(session)
        self.guard.joined(session)

    def detach(self, session) -> None:
        self.broker.remove_session(session)
        self.dealer.remove_session(session)
        if self.sessions.pop(session.session_id, None) is not None:
            self.observer.left(session)
            self.guard.left(session)
        self.authorizer.forget(session)

    # ----------------------------------------------------------- authorization

    def authorize(self, session, action: str, uri: str, match: str = "exact") -> str | None:
        """None when allowed, else a message saying what was refused."""
        return self.authorizer.authorize(session, action, uri, match)

    def may_disclose_caller(self, session, uri: str | None = None) -> bool:
        granted = None if uri is None else self.authorizer.discloses(session, "caller", uri)
        return self.policy.disclose_caller if granted is None else granted

    def may_disclose_publisher(self, session, uri: str | None = None) -> bool:
        granted = None if uri is None else self.authorizer.discloses(session, "publisher", uri)
        return self.policy.disclose_publisher if granted is None else granted
