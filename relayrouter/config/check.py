"""Checks on values read from a configuration file, shared by every reader
(this package's, the relay's, decrypt-search's): each raises :class:`ConfigError` with a message that names the
key (``realms[1].limits.rate: must be ...``).

Plain data in, plain values out: no Twisted, nothing else of the router.

What the checks are asked is also what the configuration reference is made
of (docs/_ext/config_keys.py): inside :func:`recording`, every :func:`only`
notes a table and the keys it accepts, every :func:`get` (and the checks built
on it) a key's type and default, with no effect on what they decide.
"""

import contextlib
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Iterator


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


def key_name(key: str, name: str) -> str:
    """The full name of ``name`` inside the table at ``key`` ("" for the top level)."""
    return f"{key}.{name}" if key else name


def table(item: Any, key: str) -> None:
    if not isinstance(item, dict):
        raise ConfigError(f"{key}: must be a table")


def only(item: dict, key: str, allowed: set[str]) -> None:
    if _recorders:
        _recorders[-1].table(key, allowed, item, sys._getframe(1))
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
    if _recorders:
        _recorders[-1].key(key, name, kind, default)
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


# ------------------------------------------------------------ what is asked


@dataclass
class Recorder:
    """The tables and keys the checks were asked about, by their generic name
    (``realms[].limits``: an array's index, and a name the file chooses, as ``[]``).

    ``tables[path]``: the keys the table accepts; ``keys[(path, name)]``:
    the ``(kinds, default)`` pairs the checks were asked with (default None:
    required, :data:`OPTIONAL`: none); ``values[(path, name)]``: the types of
    the values given; ``instances[path]``: how many tables were checked there,
    ``given[(path, name)]`` in how many of them the key was given;
    ``sites``: the (file, line) of every check of a table's keys.
    """

    tables: dict[str, set[str]] = field(default_factory=dict)
    keys: dict[tuple[str, str], list[tuple[tuple[type, ...], Any]]] = field(default_factory=dict)
    values: dict[tuple[str, str], set[type]] = field(default_factory=dict)
    instances: dict[str, int] = field(default_factory=dict)
    given: dict[tuple[str, str], int] = field(default_factory=dict)
    sites: set[tuple[str, int]] = field(default_factory=set)
    # (path, name): leave that key out of the first such table checked, to see whether it is required
    drop: tuple[str, str] | None = None

    def table(self, key: str, allowed: set[str], item: Any = None, frame=None) -> None:
        path = generic(key)
        if self.drop and self.drop[0] == path and isinstance(item, dict) and self.drop[1] in item:
            del item[self.drop[1]]
            self.drop = None
        self.tables.setdefault(path, set()).update(allowed)
        self.instances[path] = self.instances.get(path, 0) + 1
        for name, value in (item.items() if isinstance(item, dict) else ()):
            self.given[(path, name)] = self.given.get((path, name), 0) + 1
            self.values.setdefault((path, name), set()).add(type(value))
        if frame is not None:
            self.sites.add((frame.f_code.co_filename, frame.f_lineno))

    def key(self, key: str, name: str, kind, default: Any) -> None:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        asked = self.keys.setdefault((generic(key), name), [])
        if (kinds, default) not in asked:
            asked.append((kinds, default))


_recorders: list[Recorder] = []


@contextlib.contextmanager
def recording(drop: tuple[str, str] | None = None) -> Iterator[Recorder]:
    """Note what the checks are asked while the block runs (not thread-safe: for documentation and tests)."""
    recorder = Recorder(drop=drop)
    _recorders.append(recorder)
    try:
        yield recorder
    finally:
        _recorders.remove(recorder)


class _Optional:
    def __repr__(self) -> str:
        return "OPTIONAL"


OPTIONAL = _Optional()  # a key's default when it has none and is not required


def note_table(key: str, allowed: set[str], item: Any = None, depth: int = 1) -> None:
    """For a reader with checks of its own (a connector's): a table and the keys it accepts,
    checked by the code ``depth`` frames up."""
    if _recorders:
        _recorders[-1].table(key, allowed, item, sys._getframe(depth))


def note_key(key: str, name: str, kind, default: Any) -> None:
    """For a reader with checks of its own: a key's type and default (None: required)."""
    if _recorders:
        _recorders[-1].key(key, name, kind, default)


_INDEX = re.compile(r"\[[^\]]*\]")


def generic(key: str) -> str:
    """``realms[1].limits`` -> ``realms[].limits``."""
    return _INDEX.sub("[]", key)
