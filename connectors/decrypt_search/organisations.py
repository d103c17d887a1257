"""Several organisations in one decrypt-search process: the listing file.

A ``--config`` file whose only top-level key is ``organisations`` lists
ordinary single-organisation configuration files (paths relative to the
listing)::

    [[organisations]]
    config = "acme/decrypt-search.toml"
    authid = "acme-connector"
    ticket_file = "acme/router.ticket"

Each entry becomes a service of its own in the one process: its own router
session and identity, its own state subdirectory and store, its own private
key (its file's ``organisation.key_file`` / ``key_env``), its own HTTP
listeners and bearer keys.  Nothing is shared but the reactor.

Everything that would let one organisation see or disturb another is refused
at start, naming the key: two entries for the same organisation, the same
state subdirectory, store file or PostgreSQL DSN, the same HTTP endpoint,
bearer keys accepted by two organisations' APIs alike, a key or secret file
readable by group or others.  One organisation that cannot start refuses the
whole start: a process that serves some of its organisations and not the
others would fail them silently.

Plain data: this module reads files and builds frozen records, it starts
nothing.
"""

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from relayrouter.api import ConfigError

from . import config as cfg

ENTRY_KEYS = {"config", "state_dir", "authid", "auth", "ticket_file", "jwt_file", "cryptosign_key", "realm"}
STATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class Identity:
    """How one organisation's connector authenticates to the router; every
    field None: the command line's (--authid, --ticket-file, ...)."""
    authid: str | None = None
    auth: str | None = None
    ticket_file: str | None = None
    jwt_file: str | None = None
    cryptosign_key: str | None = None
    realm: str | None = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.authid, self.auth, self.ticket_file, self.jwt_file,
                                           self.cryptosign_key))


@dataclass(frozen=True)
class Organisation:
    where: str  # organisations[i]: what errors about this entry start with
    config_file: str
    config: cfg.Config
    state_name: str  # the subdirectory of --state-dir
    identity: Identity


def is_listing(path: str | Path) -> bool:
    """True when the file is a listing of organisations (its only table is ``organisations``)."""
    data = _read(Path(path))
    return "organisations" in data


def load(path: str | Path) -> tuple:
    """The organisations of a listing file, each configuration loaded and checked, clashes refused."""
    path = Path(path)
    data = _read(path)
    unknown = sorted(set(data) - {"organisations"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (a listing of organisations holds only [[organisations]]; "
                          "the rest goes in each organisation's own file)")
    entries = data["organisations"]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError("organisations: must be a non-empty array of tables ([[organisations]])")
    organisations = tuple(_entry(item, f"organisations[{i}]", path.parent) for i, item in enumerate(entries))
    check_apart(organisations)
    return organisations


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text("utf8"))
    except OSError as e:
        raise ConfigError(f"--config: cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config: {path} is not valid TOML: {e}") from None


def _entry(item: dict, where: str, base: Path) -> Organisation:
    for key in item:
        if key not in ENTRY_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key")
    for key, value in item.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.{key}: must be a non-empty string")
    if "config" not in item:
        raise ConfigError(f"{where}.config: required (the organisation's decrypt-search configuration file)")
    config_file = base / item["config"]
    try:
        config = cfg.load(config_file)
    except ConfigError as e:
        raise ConfigError(f"{where} ({config_file}): {e}") from None
    if config.key_file is None and config.key_env is None:
        raise ConfigError(f"{where} ({config_file}): organisation.key_file or organisation.key_env: required "
                          "(each organisation names its own key in its own file)")
    state_name = item.get("state_dir", config.org)
    if not STATE_NAME.match(state_name):
        raise ConfigError(f"{where}.state_dir: {state_name!r} must be a plain directory name (letters, digits, "
                          "'.', '_', '-'), made under --state-dir")
    files = {k: str(base / item[k]) for k in ("ticket_file", "jwt_file", "cryptosign_key") if k in item}
    identity = Identity(authid=item.get("authid"), auth=item.get("auth"), realm=item.get("realm"), **files)
    return Organisation(where, str(config_file), config, state_name, identity)


# ------------------------------------------------------------ kept apart

def check_apart(organisations: tuple) -> None:
    """Refuse what two organisations would share, naming the later entry's key."""
    _unique(organisations, lambda o: o.config.org, "config", "organisation.name {value!r} is also {other}'s")
    _unique(organisations, lambda o: o.state_name, "state_dir", "{value!r} is also {other}'s state directory")
    _unique(organisations, _store_of, "config", "store {value} is also {other}'s (give each its own store.path "
                                                "or store.dsn)")
    seen: list = []  # (endpoint key, organisations[i])
    for org in organisations:
        for n, listen in enumerate(org.config.http_listen):
            for key in _endpoint_keys(listen):
                other = next((where for k, where in seen if _same_endpoint(k, key)), None)
                if other is not None:
                    raise ConfigError(f"{org.where} ({org.config_file}): http.listen[{n}] {listen!r}: the same "
                                      f"endpoint as {other}'s")
            seen += [(key, org.where) for key in _endpoint_keys(listen)]
    _bearer_apart(organisations)


def _unique(organisations, value_of, key: str, message: str) -> None:
    seen: dict = {}
    for org in organisations:
        value = value_of(org)
        if value in seen:
            raise ConfigError(f"{org.where}.{key}: " + message.format(value=value, other=seen[value]))
        seen[value] = org.where


def _store_of(org: Organisation) -> str:
    """What one organisation's store is: the DSN, or the SQLite path (relative: under its state subdirectory)."""
    config = org.config
    if config.store_backend == "postgresql":
        return f"postgresql {config.store_dsn}"
    if Path(config.store_path).is_absolute():
        return str(Path(config.store_path).resolve())
    return f"<state>/{org.state_name}/{config.store_path}"


def _endpoint_keys(listen: str) -> list:
    """What an HTTP endpoint string binds: ("tcp", port, interface) for TCP/TLS on a fixed port (interface
    "*" for all of them), ("unix", path); port 0 binds a fresh port every time and clashes with nothing."""
    kind, _, rest = listen.partition(":")
    parts = rest.split(":")
    named = dict(p.split("=", 1) for p in parts if "=" in p)
    positional = [p for p in parts if "=" not in p]
    if kind in ("tcp", "tcp6", "ssl"):
        port = named.get("port") or (positional[0] if positional else "")
        if port in ("", "0"):
            return []
        interface = named.get("interface", "")
        return [("tcp", port, "*")] if interface in ("", "0.0.0.0", "::") else [("tcp", port, interface)]
    if kind == "unix":
        return [("unix", named.get("address") or (positional[0] if positional else ""))]
    return [("other", listen)]


def _same_endpoint(a: tuple, b: tuple) -> bool:
    """All interfaces ("*") take the port on every one of them."""
    if a[0] == b[0] == "tcp":
        return a[1] == b[1] and "*" in (a[2], b[2]) or a == b
    return a == b


def _bearer_apart(organisations: tuple) -> None:
    """Two APIs that accept the same signing key with no audience or issuer telling them apart would
    each take the other's tokens: refused."""
    seen: list = []
    for org in organisations:
        auth = org.config.http_auth
        if auth is None:
            continue
        material = set(_key_material(auth))
        for other, other_auth, other_material in seen:
            if material & other_material and not _told_apart(auth, other_auth):
                raise ConfigError(f"{org.where} ({org.config_file}): http.auth.keys: a key that {other}'s API "
                                  "accepts too, with the same audience and issuer: each would take the other's "
                                  "tokens (give each organisation its own key, or its own http.auth.audience)")
        seen.append((org.where, auth, material))


def _key_material(auth) -> list:
    found = [("url", auth.jwks_url)] if auth.jwks_url else []
    for key in auth.keys:
        if key.secret is not None:
            found.append(("secret", key.secret))
        if key.public_pem is not None:
            found.append(("pem", key.public_pem.strip()))
        for jwk in (key.jwks or {}).get("keys", []):
            found.append(("jwk", repr(sorted((k, str(v)) for k, v in jwk.items()))))
    return found


def _told_apart(a, b) -> bool:
    return bool((a.audience and b.audience and a.audience != b.audience)
                or (a.issuer and b.issuer and a.issuer != b.issuer))
