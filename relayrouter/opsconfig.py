"""``[metrics]``: who may read /metrics, /ready and the details of /health.

Called from :mod:`relayrouter.config`; errors name the key.
"""

from dataclasses import dataclass

from .configcheck import ConfigError
from .configcheck import get as _get, only as _only, table as _table  # the shared checks

TOP_LEVEL_KEYS = {"metrics"}


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
    from .authconfig import _secret

    item = data.get("metrics", {})
    key = "metrics"
    _table(item, key)
    _only(item, key, {"enabled", "secret_env", "secret_file", "loopback_open"})
    token = _secret(item, key) if ("secret_env" in item or "secret_file" in item) else None
    if token is not None and len(token) < 16:
        raise ConfigError(f"{key}: the metrics token must be at least 16 characters")
    return MetricsConfig(enabled=_get(item, "enabled", bool, True, key), token=token,
                         loopback_open=_get(item, "loopback_open", bool, True, key))
