"""The durability parts of the configuration file: ``[storage]``, and per
realm ``[[realms.history]]`` and ``[[realms.mailboxes]]``.

Called from :mod:`relayrouter.config`; every value is checked here and
errors name the key, like the rest of the file.
"""

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import ConfigError, _get, _name, _only, _positive, _table
from .core.history import HistoryRule
from .core.matching import MATCH_POLICIES
from .core.uri import pattern_problem

TOP_LEVEL_KEYS = {"storage"}
REALM_KEYS = {"history", "mailboxes"}
SYNCHRONOUS = ("full", "normal")


@dataclass(frozen=True, slots=True)
class StorageConfig:
    dsn: str | None = None  # PostgreSQL; None: SQLite in state_dir
    synchronous: str = "full"  # SQLite: full | normal
    max_batch: int = 4096  # most work items in one group commit

    def __repr__(self) -> str:  # the DSN may carry a password (from the environment)
        where = "postgresql" if self.dsn else "sqlite"
        return f"StorageConfig({where}, synchronous={self.synchronous!r}, max_batch={self.max_batch})"


def storage(data: dict) -> StorageConfig:
    item = data.get("storage", {})
    key = "storage"
    _table(item, key)
    _only(item, key, {"dsn", "dsn_env", "dsn_file", "synchronous", "max_batch"})
    sources = [name for name in ("dsn", "dsn_env", "dsn_file") if name in item]
    if len(sources) > 1:
        raise ConfigError(f"{key}: give one of dsn, dsn_env, dsn_file, not {' and '.join(sources)}")
    dsn = _dsn(item, key, sources[0]) if sources else None
    synchronous = _get(item, "synchronous", str, "full", key)
    if synchronous not in SYNCHRONOUS:
        raise ConfigError(f"{key}.synchronous: must be 'full' or 'normal', not {synchronous!r}")
    return StorageConfig(dsn=dsn, synchronous=synchronous,
                         max_batch=_positive(item, "max_batch", 4096, key))


def _dsn(item: dict, key: str, source: str) -> str:
    if source == "dsn":
        dsn = _get(item, "dsn", str, None, key)
        if _password(dsn):
            raise ConfigError(f"{key}.dsn: has a password in it; secrets stay out of the file: "
                              "use dsn_env or dsn_file, or PGPASSWORD / ~/.pgpass")
    elif source == "dsn_env":
        var = _get(item, "dsn_env", str, None, key)
        dsn = os.environ.get(var, "")
        if not dsn:
            raise ConfigError(f"{key}.dsn_env: environment variable {var} is not set or empty")
    else:
        path = _get(item, "dsn_file", str, None, key)
        try:
            with open(path, encoding="utf8") as f:
                dsn = f.read().strip()
        except OSError as e:
            raise ConfigError(f"{key}.dsn_file: cannot read '{path}': {e.strerror}") from None
    scheme = dsn.split(":", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{_name(key, source)}: must be a postgresql:// URL "
                          "(leave it out for SQLite in state_dir)")
    return dsn


def _password(dsn: str) -> bool:
    try:
        return urlsplit(dsn).password is not None or "password=" in dsn
    except ValueError:
        return False


# ------------------------------------------------------------------ history


def realm_history(item: dict, key: str) -> tuple | None:
    """``[[realms.history]]``: the realm's rules, or None when it keeps no history."""
    rules = tuple(_history_rule(rule, f"{key}.history[{i}]")
                  for i, rule in enumerate(_array(item, "history", key)))
    seen: set = set()
    for i, rule in enumerate(rules):
        if rule.key in seen:
            raise ConfigError(f"{key}.history[{i}].uri: '{rule.uri}' ({rule.match}) has a rule already")
        seen.add(rule.key)
    return rules or None


def _history_rule(item, key: str) -> HistoryRule:
    _table(item, key)
    _only(item, key, {"uri", "match", "limit", "max_age"})
    uri = _get(item, "uri", str, None, key)
    match = _match(item, key)
    problem = pattern_problem(uri, match)
    if problem is not None:
        raise ConfigError(f"{key}.uri: {problem}")
    return HistoryRule(uri=uri, match=match, limit=_positive(item, "limit", 1000, key),
                       max_age=_seconds_or_forever(item, "max_age", key))


def _match(item: dict, key: str) -> str:
    match = _get(item, "match", str, "exact", key)
    if match not in MATCH_POLICIES:
        raise ConfigError(f"{key}.match: must be exact, prefix or wildcard, not {match!r}")
    return match


def _seconds_or_forever(item: dict, name: str, key: str, default: float = 0.0) -> float:
    value = _get(item, name, (int, float), default, key)
    if value < 0:
        raise ConfigError(f"{_name(key, name)}: must be a number of seconds, or 0 for no limit")
    return float(value)


def _array(item: dict, name: str, key: str) -> list:
    value = item.get(name, [])
    if not isinstance(value, list):
        raise ConfigError(f"{_name(key, name)}: must be an array of tables ([[realms.{name}]])")
    return value
