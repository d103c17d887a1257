"""Pairs on the running router: procedures on the realms that pair, and the Micronets endpoint."""

from .config import ConfigError


class Pairing:
    """Installs ``[realms.pairing]``: the pairs procedures, and the legacy endpoint's resources."""

    def __init__(self, config, router, admin) -> None:
        self.router = router
        self.realms = []  # (realm, PairingConfig) for every realm that pairs
        paths: dict[str, str] = {}
        for i, rc in enumerate(config.realms):
            if rc.pairing is None:
                continue
            realm = router.realms[rc.name]
            realm.pairs.add_procedures(realm.procedures, admin)
            self.realms.append((realm, rc.pairing))
            path = rc.pairing.legacy.path
            if path and path in paths:
                raise ConfigError(f"realms[{i}].pairing.micronets_path: '{path}' is realm "
                                  f"'{paths[path]}''s already")
            paths[path] = rc.name

    def http_resources(self, clock, max_message_size: int) -> dict:
        from .transport import micronets

        children: dict = {}
        for realm, pairing in self.realms:
            if pairing.legacy.path:
                micronets.mount(children, self.router, realm, pairing.legacy, clock, max_message_size)
        return children
