"""``[metrics]``: who may read /metrics, /ready and the details of /health;
``[console]``: who may use the web console, and whether they may change the deny list.

Called from :mod:`relayrouter.config`; errors name the key.
"""

from dataclasses import dataclass

from .check import ConfigError
from .check import get as _get, only as _only, table as _table  # the shared checks

TOP_LEVEL_KEYS = {"metrics", "console"}


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    # Callers from a loopback address need no credential; others need this bearer
    # token (none configured: they get the bare status of /health and /ready only).
    token: str | None = None
    loopback_open: bool = True

    def __repr__(self) -> str:  # never the token
        return f"MetricsConfig(enabled={self.enabled}, token={'set' if self.token else None}, " \
               f"loopback_open={self.loopback_open})"


def metrics(data: dict) -> MetricsConfig:
    from .auth import _secret

    item = data.get("metrics", {})
    key = "metrics"
    _table(item, key)
    _only(item, key, {"enabled", "secret_env", "secret_file", "loopback_open"})
    token = _secret(item, key) if ("secret_env" in item or "secret_file" in item) else None
    if token is not None and len(token) < 16:
        raise ConfigError(f"{key}: the metrics token must be at least 16 characters")
    return MetricsConfig(enabled=_get(item, "enabled", bool, True, key), token=token,
                         loopback_open=_get(item, "loopback_open", bool, True, key))


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """Console users: viewers see everything the console shows and change
    nothing; operators may also add and remove deny-list entries.  The
    router's admins ([revocation]) are operators as well."""

    roles: tuple[str, ...] = ()  # viewers, by authrole
    scope: str | None = None  # viewers, by a scope in the credential's ``scopes``
    operator_roles: tuple[str, ...] = ()
    operator_scope: str | None = None


def console(data: dict) -> ConsoleConfig:
    item = data.get("console", {})
    key = "console"
    _table(item, key)
    _only(item, key, {"roles", "scope", "operator_roles", "operator_scope"})
    return ConsoleConfig(roles=_names(item, "roles", key), scope=_scope(item, "scope", key),
                         operator_roles=_names(item, "operator_roles", key),
                         operator_scope=_scope(item, "operator_scope", key))


def _names(item: dict, name: str, key: str) -> tuple[str, ...]:
    value = _get(item, name, list, [], key)
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}.{name}: must be a list of role names (non-empty strings)")
    return tuple(value)


def _scope(item: dict, name: str, key: str) -> str | None:
    value = _get(item, name, str, "", key)
    if name in item and not value:
        raise ConfigError(f"{key}.{name}: must be a non-empty scope name")
    return value or None
