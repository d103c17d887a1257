"""``[http_bridge]``: HTTP publish and call, Crossbar-style signed keys, and webhooks.

Called from :mod:`relayrouter.config`; errors name the key.
"""

from dataclasses import dataclass

from .configcheck import ConfigError
from .configcheck import array as _array, get as _get, only as _only, positive as _positive, table as _table

TOP_LEVEL_KEYS = {"http_bridge"}
ERROR_STATUS = ("mapped", "crossbar")


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
    name: str
    realm: str
    topic: str
    token: str | None = None  # bearer token the sender must present, if any
    github_secret: str | None = None  # X-Hub-Signature-256 / X-Hub-Signature check, if any

    def __repr__(self) -> str:
        return f"Webhook(name={self.name!r}, realm={self.realm!r}, topic={self.topic!r})"


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    default_realm: str | None = None
    max_body: int = 1024 * 1024
    call_timeout: float = 30.0
    timestamp_window: float = 300.0
    error_status: str = "mapped"
    keys: tuple = ()
    webhooks: tuple = ()


def http_bridge(data: dict, realm_names: set[str]) -> BridgeConfig | None:
    from .authconfig import _secret

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
        keys.append(BridgeKey(name, secret, realm, _get(k, "role", str, None, kkey),
                              _get(k, "authid", str, f"http-bridge:{name}", kkey)))
    hooks, names = [], set()
    for i, w in enumerate(_array(item, "webhooks")):
        wkey = f"{key}.webhooks[{i}]"
        _table(w, wkey)
        _only(w, wkey, {"name", "realm", "topic", "token_env", "token_file", "github_secret_env",
                        "github_secret_file"})
        name = _get(w, "name", str, None, wkey)
        if not name or "/" in name or name in names:
            raise ConfigError(f"{wkey}.name: {name!r} is empty, has a '/' or is configured twice")
        names.add(name)
        token = _secret({"secret_" + k[len("token_"):]: v for k, v in w.items() if k.startswith("token_")}, wkey) \
            if ("token_env" in w or "token_file" in w) else None
        github = _secret({"secret_" + k[len("github_secret_"):]: v for k, v in w.items()
                          if k.startswith("github_secret_")}, wkey) \
            if ("github_secret_env" in w or "github_secret_file" in w) else None
        hooks.append(Webhook(name, _realm_named(_get(w, "realm", str, None, wkey), realm_names, f"{wkey}.realm"),
                             _get(w, "topic", str, None, wkey), token, github))
    window = _get(item, "timestamp_window", (int, float), 300, key)
    timeout = _get(item, "call_timeout", (int, float), 30, key)
    if window <= 0 or timeout <= 0:
        raise ConfigError(f"{key}.timestamp_window/call_timeout: must be positive seconds")
    return BridgeConfig(default_realm=default_realm, max_body=_positive(item, "max_body", 1024 * 1024, key),
                        call_timeout=float(timeout), timestamp_window=float(window), error_status=error_status,
                        keys=tuple(keys), webhooks=tuple(hooks))


def _realm_named(name: str, realm_names: set[str], key: str) -> str:
    if name not in realm_names:
        raise ConfigError(f"{key}: no realm named '{name}' (configured: {', '.join(sorted(realm_names))})")
    return name
