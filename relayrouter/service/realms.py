"""Realms on the router from their configuration: at start (node.py) and from a
template at run time (tenancy.py), by one path: :class:`RealmBuilder`. No Twisted here.

Every part of the router that puts something on a realm (authenticators and
roles, deny-list procedures, history and mailboxes, pairs, the console, the
reload procedure) is an *installer*: ``install_realm(realm, rc)``, and
``forget_realm(realm)`` when a tenant goes.  The builder runs all of them, in
the order given, for a configured realm and for a tenant alike, so that a
realm made at run time has exactly what a configured one has.
"""

from dataclasses import replace

from ..core.realm import RealmPolicy
from ..core.router import Router


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


class RealmBuilder:
    """Builds realms with every installer's parts (see the module doc)."""

    def __init__(self, router: Router, installers=()) -> None:
        self.router = router
        self.installers = [i for i in installers if i is not None]

    def build(self, name: str, rc):
        """The realm ``name`` from ``rc`` (a RealmConfig, or a template's)."""
        rc = replace(rc, name=name)
        realm = add_configured_realm(self.router, rc)
        for installer in self.installers:
            installer.install_realm(realm, rc)
        return realm

    def unbuild(self, realm) -> None:
        """What the installers keep for ``realm`` (already off the router) let go."""
        for installer in reversed(self.installers):
            forget = getattr(installer, "forget_realm", None)
            if forget is not None:
                forget(realm)
