"""Pairs on the running router: procedures on the realms that pair, and the Micronets endpoint."""

from dataclasses import replace

from ..config import ConfigError
from ..core.pairs import PairTable


class Pairing:
    """Installs ``[realms.pairing]``: the pairs procedures, and the legacy endpoint's resources."""

    def __init__(self, config, router, admin, readers=None) -> None:
        """``readers``: who else may list pairs (the console's users), or None."""
        self.router = router
        self.admin = admin
        self.readers = readers
        self.realms = []  # (realm, PairingConfig) for every realm that pairs
        self.configured = {rc.name for rc in config.realms}
        self.meetups_by_realm: dict[str, list] = {}  # the Micronets endpoints' shared settings
        paths: dict[str, str] = {}
        for i, rc in enumerate(config.realms):
            if rc.pairing is None:
                continue
            path = rc.pairing.legacy.path
            if path and path in paths:
                raise ConfigError(f"realms[{i}].pairing.micronets_path: '{path}' is realm "
                                  f"'{paths[path]}''s already")
            paths[path] = rc.name

    def install_realm(self, realm, rc) -> None:
        """The pairs procedures on a realm that pairs (realms.RealmBuilder); a
        configured one also gets its Micronets endpoint (http_resources)."""
        if rc.pairing is None:
            return
        realm.pairs.add_procedures(realm.procedures, self.admin, self.readers)
        if rc.name in self.configured:
            self.realms.append((realm, rc.pairing))

    def http_resources(self, clock, limits) -> dict:
        from ..transport import micronets

        children: dict = {}
        for realm, pairing in self.realms:
            if pairing.legacy.path:
                meetups = micronets.mount(children, self.router, realm, pairing.legacy, clock, limits)
                self.meetups_by_realm.setdefault(realm.name, []).append(meetups)
        return children

    def endpoints(self) -> list[tuple[str, str]]:
        """(path, realm) of every Micronets endpoint a WebSocket listener serves."""
        return [(pairing.legacy.path, realm.name) for realm, pairing in self.realms if pairing.legacy.path]

    def connections(self) -> list:
        """Every open Micronets connection, on every listener."""
        return [c for meetups in (m for ms in self.meetups_by_realm.values() for m in ms)
                for c in list(meetups.connections)]

    # -------------------------------------------------------------- reload

    def reload_realm(self, realm, before, after) -> None:
        """New ``[realms.pairing]`` of a running realm (reload.py checked that
        it is not removed and keeps its Micronets path): who is a peer and
        ``on_conflict`` for the next joins, the Micronets meetup and ping
        settings for the next legacy connections. A realm that did not pair
        starts to: sessions that joined before are no peers until they join again."""
        realm.policy = replace(realm.policy, pairing=after.policy)
        if realm.pairs is None:
            realm.pairs = PairTable(realm, after.policy)
            realm.pairs.add_procedures(realm.procedures, self.admin, self.readers)
        realm.pairs.policy = after.policy
        for meetups in self.meetups_by_realm.get(realm.name, ()):
            meetups.settings = replace(after.legacy, path=meetups.settings.path)
