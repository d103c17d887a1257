"""The router: realms, the roles it announces, and where it reports what peers did."""

from typing import Any, Callable, Protocol

from autobahn.wamp.role import RoleBrokerFeatures, RoleDealerFeatures

from .stats import RouterStats
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


# What WELCOME announces, exactly what is implemented.  Autobahn's role
# classes accept unknown feature names but drop them, so they are set as
# attributes, which Welcome.marshal writes out.
BROKER_FEATURES = (
    "pattern_based_subscription",
    "publisher_exclusion",
    "publisher_identification",
    "subscriber_blackwhite_listing",
    "session_meta_api",
    "subscription_meta_api",
    "event_retention",
    "payload_passthru_mode",
)
DEALER_FEATURES = (
    "pattern_based_registration",
    "shared_registration",
    "caller_identification",
    "progressive_call_results",
    "call_canceling",
    "call_timeout",
    "session_meta_api",
    "registration_meta_api",
    "testament_meta_api",
    "payload_passthru_mode",
)


def _features(role_class, names):
    role = role_class()
    for name in names:
        setattr(role, name, True)
    return role


def welcome_roles(broker_extra: tuple = (), dealer_extra: tuple = ()) -> dict:
    """The roles WELCOME announces; a realm with more features (event history)
    announces them on top of the router's."""
    # "WELCOME.Details.roles ... MUST" announce the router's roles.
    return {"broker": _features(RoleBrokerFeatures, BROKER_FEATURES + broker_extra),
            "dealer": _features(RoleDealerFeatures, DEALER_FEATURES + dealer_extra)}


class Router:
    def __init__(self, clock: Clock, observer: RouterObserver | None = None) -> None:
        self.clock = clock
        self.observer = observer or RouterObserver()
        self.realms: dict[str, Realm] = {}
        self.welcome_roles = welcome_roles()
        self.stats = RouterStats()  # message counts and call latency, read by metrics

    def add_realm(self, name: str, **options) -> Realm:
        if name in self.realms:
            raise ValueError(f"realm '{name}' exists already")
        realm = Realm(name, self, **options)
        self.realms[name] = realm
        return realm

    def remove_realm(self, name: str) -> Realm:
        """Take a realm off the router (no HELLO finds it); its sessions stay
        until they are told to go (core/tenancy.py does)."""
        return self.realms.pop(name)

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
