"""``[http_bridge]``: HTTP publish and call, Crossbar-style signed keys, and webhooks.

Called from :mod:`relayrouter.config`; errors name the key.
"""

from dataclasses import dataclass

from .check import ConfigError
from .check import OPTIONAL, note_key  # what the reader asks, for the configuration reference
from .check import array as _array, get as _get, only as _only, positive as _positive, table as _table

TOP_LEVEL_KEYS = {"http_bridge"}
ERROR_STATUS = ("mapped", "crossbar")
WEBHOOK_EVENTS = ("kwargs", "crossbar")
DEFAULT_WEBHOOK_ROLE = "webhook"


@dataclass(frozen=True, slots=True)
class BridgeKey:
    """A Crossbar HTTP bridge key: requests signed with its secret act as ``authid``/``role``."""

    key: str
    secret: str
    realm: str
    role: str
    authid: str

    def __repr__(self) -> str:  # never the secret
        return f"BridgeKey(key={self.key!r}, realm={self.realm!r}, role={self.role!r})"


@dataclass(frozen=True, slots=True)
class Webhook:
    name: str  # "" for the webhook at POST /webhook (Crossbar's path)
    realm: str
    topic: str
    token: str | None = None  # bearer token the sender must present, if any
    github_secret: str | None = None  # X-Hub-Signature-256 check, if any
    role: str = DEFAULT_WEBHOOK_ROLE  # the role whose rules its publications meet
    event: str = "kwargs"  # "kwargs": body, content_type, headers; "crossbar": args[0] = {"body", "headers"}

    def __repr__(self) -> str:
        return f"Webhook(name={self.name!r}, realm={self.realm!r}, topic={self.topic!r}, role={self.role!r})"


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    default_realm: str | None = None
    max_body: int = 1024 * 1024
    call_timeout: float = 30.0
    timestamp_window: float = 300.0
    error_status: str = "mapped"
    keys: tuple = ()
    webhooks: tuple = ()


def http_bridge(data: dict, realm_roles: dict) -> BridgeConfig | None:
    """``realm_roles``: realm name -> its role names, or None for a realm without roles."""
    from .auth import _secret

    realm_names = set(realm_roles)

    if "http_bridge" not in data:
        return None
    key = "http_bridge"
    item = data["http_bridge"]
    _table(item, key)
    _only(item, key, {"default_realm", "max_body", "call_timeout", "timestamp_window", "error_status",
                      "keys", "webhooks"})
    default_realm = item.get("default_realm")
    if default_realm is not None:
        _realm_named(_get(item, "default_realm", str, None, key), realm_names, f"{key}.default_realm")
    error_status = _get(item, "error_status", str, "mapped", key)
    if error_status not in ERROR_STATUS:
        raise ConfigError(f"{key}.error_status: must be one of {', '.join(ERROR_STATUS)}, not {error_status!r}")
    keys, seen = [], set()
    for i, k in enumerate(_array(item, "keys")):
        kkey = f"{key}.keys[{i}]"
        _table(k, kkey)
        _only(k, kkey, {"key", "secret_env", "secret_file", "realm", "role", "authid"})
        name = _get(k, "key", str, None, kkey)
        if name in seen:
            raise ConfigError(f"{kkey}.key: '{name}' is configured twice")
        seen.add(name)
        secret = _secret(k, kkey)
        if len(secret) < 16:
            raise ConfigError(f"{kkey}: the secret must be at least 16 characters")
        realm = _realm_named(_get(k, "realm", str, None, kkey), realm_names, f"{kkey}.realm")
        keys.append(BridgeKey(name, secret, realm, _role(k, kkey, realm, realm_roles, None),
                              _get(k, "authid", str, f"http-bridge:{name}", kkey)))
    hooks, names = [], set()
    for i, w in enumerate(_array(item, "webhooks")):
        hook = _webhook(w, f"{key}.webhooks[{i}]", realm_roles, error_status, _secret)
        if "/" in hook.name or hook.name in names:
            raise ConfigError(f"{key}.webhooks[{i}].name: {hook.name!r} has a '/' or is configured twice "
                              "(one webhook may leave it out: it is served at POST /webhook)")
        names.add(hook.name)
        hooks.append(hook)
    window = _get(item, "timestamp_window", (int, float), 300, key)
    timeout = _get(item, "call_timeout", (int, float), 30, key)
    if window <= 0 or timeout <= 0:
        raise ConfigError(f"{key}.timestamp_window/call_timeout: must be positive seconds")
    return BridgeConfig(default_realm=default_realm, max_body=_positive(item, "max_body", 1024 * 1024, key),
                        call_timeout=float(timeout), timestamp_window=float(window), error_status=error_status,
                        keys=tuple(keys), webhooks=tuple(hooks))


def _webhook(w, wkey: str, realm_roles: dict, error_status: str, _secret) -> Webhook:
    _table(w, wkey)
    _only(w, wkey, {"name", "realm", "topic", "role", "event", "token_env", "token_file", "github_secret_env",
                    "github_secret_file"})
    name = _get(w, "name", str, "", wkey)
    realm = _realm_named(_get(w, "realm", str, None, wkey), set(realm_roles), f"{wkey}.realm")
    role = _role(w, wkey, realm, realm_roles, DEFAULT_WEBHOOK_ROLE)
    event = _get(w, "event", str, "crossbar" if error_status == "crossbar" else "kwargs", wkey)
    if event not in WEBHOOK_EVENTS:
        raise ConfigError(f"{wkey}.event: must be one of {', '.join(WEBHOOK_EVENTS)}, not {event!r}")
    for noted in ("token_env", "token_file", "github_secret_env", "github_secret_file"):
        note_key(wkey, noted, str, OPTIONAL)
    token = _secret({"secret_" + k[len("token_"):]: v for k, v in w.items() if k.startswith("token_")}, wkey) \
        if ("token_env" in w or "token_file" in w) else None
    github = _secret({"secret_" + k[len("github_secret_"):]: v for k, v in w.items()
                      if k.startswith("github_secret_")}, wkey) \
        if ("github_secret_env" in w or "github_secret_file" in w) else None
    return Webhook(name, realm, _get(w, "topic", str, None, wkey), token, github, role, event)


def _role(item: dict, key: str, realm: str, realm_roles: dict, default: str | None) -> str:
    """The ``role`` a key or webhook acts as: one of its realm's roles, when the realm has roles."""
    role = _get(item, "role", str, default, key)
    roles = realm_roles[realm]
    if roles is not None and role not in roles:
        raise ConfigError(f"{key}.role: realm '{realm}' has no role '{role}' (its roles: "
                          f"{', '.join(sorted(roles)) or 'none'})")
    return role


def _realm_named(name: str, realm_names: set[str], key: str) -> str:
    if name not in realm_names:
        raise ConfigError(f"{key}: no realm named '{name}' (configured: {', '.join(sorted(realm_names))})")
    return name
