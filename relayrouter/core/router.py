"""The router: realms, the roles it announces, and where it reports what peers did."""

from typing import Any, Callable, Protocol

from autobahn.wamp.role import RoleBrokerFeatures, RoleDealerFeatures

from .peer import Peer, TransportInfo
from .realm import Realm
from .session import RouterSession


class Timer(Protocol):
    def cancel(self) -> None: ...
    def active(self) -> bool: ...


class Clock(Protocol):
    """Time, passed in: Twisted's reactor fits, and so does testing.FakeClock."""

    def seconds(self) -> float: ...
    def callLater(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer: ...


class RouterObserver:
    """Told about faults worth logging; the Twisted side logs them. Silent by default."""

    def protocol_violation(self, session, text: str) -> None: ...
    def internal_error(self, session, error) -> None: ...
    def auth_denied(self, session, deny) -> None: ...


def _welcome_roles() -> dict:
    # "WELCOME.Details.roles ... MUST" announce the router's roles; features
    # list only what is implemented.
    broker = RoleBrokerFeatures(
        pattern_based_subscription=True,
        publisher_exclusion=True,
        publisher_identification=True,
        subscriber_blackwhite_listing=True,
    )
    dealer = RoleDealerFeatures(
        pattern_based_registration=True,
        shared_registration=True,
        caller_identification=True,
        progressive_call_results=True,
    )
    return {"broker": broker, "dealer": dealer}


class Router:
    def __init__(self, clock: Clock, observer: RouterObserver | None = None) -> None:
        self.clock = clock
        self.observer = observer or RouterObserver()
        self.realms: dict[str, Realm] = {}
        self.welcome_roles = _welcome_roles()

    def add_realm(self, name: str, **options) -> Realm:
        if name in self.realms:
            raise ValueError(f"realm '{name}' exists already")
        realm = Realm(name, self, **options)
        self.realms[name] = realm
        return realm

    def session(self, peer: Peer, transport: TransportInfo) -> RouterSession:
        """A new session for a freshly connected peer, waiting for its HELLO."""
        return RouterSession(self, peer, transport)

    def sessions(self):
        for realm in self.realms.values():
            yield from realm.sessions.values()

    # Called by sessions; forwarded to the observer.
    def on_protocol_violation(self, session, text: str) -> None:
        self.observer.protocol_violation(session, text)

    def on_internal_error(self, session, error) -> None:
        self.observer.internal_error(session, error)

    def on_auth_denied(self, session, deny) -> None:
        self.observer.auth_denied(session, deny)
