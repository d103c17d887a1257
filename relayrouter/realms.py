"""Realms on the router from their configuration: at start (service.py) and from a
template at run time (tenancy.py). No Twisted here."""

from .core.realm import RealmPolicy
from .core.router import Router


def add_configured_realm(router: Router, realm, name: str | None = None):
    """A realm on ``router`` from its RealmConfig (or a template's, under ``name``).
    It takes no one until Security installs its authenticators (anonymous included)."""
    return router.add_realm(
        name or realm.name,
        authenticators={},
        policy=RealmPolicy(
            disclose_caller=realm.disclose_caller,
            disclose_publisher=realm.disclose_publisher,
            max_retained_events=realm.max_retained_events,
            outbound=realm.outbound,
            limits=realm.limits,
            pairing=realm.pairing.policy if realm.pairing is not None else None,
        ),
    )
