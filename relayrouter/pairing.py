"""Pairs on the running router: procedures on the realms that pair, and the Micronets endpoint."""

from .config import ConfigError


class Pairing:
    """Installs ``[realms.pairing]``: the pairs procedures, and the legacy endpoint's resources."""

    def __init__(self, config, router, admin, readers=None) -> None:
        """``readers``: who else may list pairs (the console's users), or None."""
        self.router = router
        self.admin = admin
        self.readers = readers
        self.realms = []  # (realm, PairingConfig) for every realm that pairs
        self.configured = {rc.name for rc in config.realms}
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

    def http_resources(self, clock, max_message_size: int) -> dict:
        from .transport import micronets

        children: dict = {}
        for realm, pairing in self.realms:
            if pairing.legacy.path:
                micronets.mount(children, self.router, realm, pairing.legacy, clock, max_message_size)
        return children
