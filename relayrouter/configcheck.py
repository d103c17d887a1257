"""Checks on values read from the configuration file, shared by config.py and
authconfig.py: each raises :class:`ConfigError` with a message that names the
key (``realms[1].limits.rate: must be ...``).

Plain data in, plain values out: no Twisted, nothing else of the router.
"""

from typing import Any


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


def key_name(key: str, name: str) -> str:
    """The full name of ``name`` inside the table at ``key`` ("" for the top level)."""
    return f"{key}.{name}" if key else name


def table(item: Any, key: str) -> None:
    if not isinstance(item, dict):
        raise ConfigError(f"{key}: must be a table")


def only(item: dict, key: str, allowed: set[str]) -> None:
    for name in item:
        if name not in allowed:
            raise ConfigError(f"{key_name(key, name)}: unknown key (expected one of {', '.join(sorted(allowed))})")


def array(data: dict, name: str) -> list:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise ConfigError(f"{name}: must be an array of tables ([[{name}]])")
    return value


_MISSING = object()


def get(item: dict, name: str, kind, default: Any, key: str) -> Any:
    """``item[name]`` checked to be of ``kind`` (a type or tuple); ``default`` None means required."""
    value = item.get(name, _MISSING)
    if value is _MISSING:
        if default is None:
            raise ConfigError(f"{key_name(key, name)}: required")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
        expected = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{key_name(key, name)}: must be {expected}, not {type(value).__name__}")
    return value


def seconds(item: dict, name: str, default: float, key: str) -> float:
    value = get(item, name, (int, float), default, key)
    if value <= 0:
        raise ConfigError(f"{key_name(key, name)}: must be a positive number of seconds")
    return float(value)


def seconds_or_off(item: dict, name: str, default: float, key: str) -> float:
    value = get(item, name, (int, float), default, key)
    if value < 0:
        raise ConfigError(f"{key_name(key, name)}: must be a number of seconds, or 0 for off")
    return float(value)


def count(item: dict, name: str, default: int, key: str) -> int:
    value = get(item, name, int, default, key)
    if value < 0:
        raise ConfigError(f"{key_name(key, name)}: must be a whole number, or 0 for no limit")
    return value


def positive(item: dict, name: str, default: int, key: str) -> int:
    value = get(item, name, int, default, key)
    if value <= 0:
        raise ConfigError(f"{key_name(key, name)}: must be positive")
    return value
