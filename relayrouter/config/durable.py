"""The durability parts of the configuration file: ``[storage]``, and per
realm ``[[realms.history]]`` and ``[[realms.mailboxes]]``.

Called from :mod:`relayrouter.config`; every value is checked here and
errors name the key, like the rest of the file.
"""

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from .check import ConfigError
from .check import OPTIONAL, note_key  # what the reader asks, for the configuration reference
from .check import (  # the shared checks, under this module's private names
    get as _get, key_name as _name, only as _only,
    positive as _positive, table as _table,
)
from ..core.history import HistoryRule
from ..core.mailbox_rules import HTTP_MODES, OVERFLOW_POLICIES, MailboxRule, rule_problem
from ..core.matching import MATCH_POLICIES
from ..core.uri import pattern_problem

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
    for noted in ("dsn", "dsn_env", "dsn_file"):
        note_key(key, noted, str, OPTIONAL)
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


# ---------------------------------------------------------------- mailboxes

_MAILBOX_KEYS = {"uri", "max_messages", "max_bytes", "max_message_bytes", "max_age", "overflow",
                 "visibility_timeout", "max_messages_per_sender", "max_bytes_per_sender", "http",
                 "token_secret_env", "token_secret_file"}


def realm_mailboxes(item: dict, key: str) -> tuple | None:
    """``[[realms.mailboxes]]``: the realm's mailbox rules, or None."""
    rules = tuple(_mailbox_rule(rule, f"{key}.mailboxes[{i}]")
                  for i, rule in enumerate(_array(item, "mailboxes", key)))
    seen: set = set()
    for i, rule in enumerate(rules):
        if rule.uri in seen:
            raise ConfigError(f"{key}.mailboxes[{i}].uri: '{rule.uri}' is configured twice")
        seen.add(rule.uri)
    return rules or None


def _mailbox_rule(item, key: str) -> MailboxRule:
    _table(item, key)
    _only(item, key, _MAILBOX_KEYS)
    default = MailboxRule("x.{authid}")
    uri = _get(item, "uri", str, None, key)
    problem = rule_problem(uri) or pattern_problem(_filled(uri), "exact")
    if problem is not None:
        raise ConfigError(f"{key}.uri: {problem}")
    overflow = _get(item, "overflow", str, default.overflow, key)
    if overflow not in OVERFLOW_POLICIES:
        raise ConfigError(f"{key}.overflow: must be refuse or drop-oldest, not {overflow!r}")
    http = _get(item, "http", str, default.http, key)
    if http not in HTTP_MODES:
        raise ConfigError(f"{key}.http: must be token, open or off, not {http!r}")
    secret = _token_secret(item, key) if http == "token" else None
    if http != "token" and ({"token_secret_env", "token_secret_file"} & set(item)):
        raise ConfigError(f"{key}: token_secret_* is only for http = \"token\"")
    max_bytes = _positive(item, "max_bytes", default.max_bytes, key)
    max_message_bytes = _positive(item, "max_message_bytes", min(default.max_message_bytes, max_bytes), key)
    if max_message_bytes > max_bytes:
        raise ConfigError(f"{key}.max_message_bytes: larger than max_bytes ({max_bytes})")
    visibility = _get(item, "visibility_timeout", (int, float), default.visibility_timeout, key)
    if visibility <= 0:
        raise ConfigError(f"{key}.visibility_timeout: must be a positive number of seconds")
    max_messages = _positive(item, "max_messages", default.max_messages, key)
    per_sender = _positive(item, "max_messages_per_sender", min(default.max_messages_per_sender, max_messages), key)
    default_share = min(max(default.max_bytes_per_sender, max_message_bytes), max_bytes)
    per_sender_bytes = _positive(item, "max_bytes_per_sender", default_share, key)
    if per_sender > max_messages:
        raise ConfigError(f"{key}.max_messages_per_sender: larger than max_messages ({max_messages})")
    if per_sender_bytes > max_bytes:
        raise ConfigError(f"{key}.max_bytes_per_sender: larger than max_bytes ({max_bytes})")
    if per_sender_bytes < max_message_bytes:
        raise ConfigError(f"{key}.max_bytes_per_sender: smaller than max_message_bytes ({max_message_bytes}):"
                          " a message of the largest size could never be put")
    return MailboxRule(
        uri=uri, max_messages=max_messages, max_bytes=max_bytes, max_message_bytes=max_message_bytes,
        max_age=_seconds_or_forever(item, "max_age", key, default.max_age),
        overflow=overflow, visibility_timeout=float(visibility), max_messages_per_sender=per_sender,
        max_bytes_per_sender=per_sender_bytes, http=http, token_secret=secret)


def _filled(uri: str) -> str:
    import re

    return re.sub(r"\{[A-Za-z_][A-Za-z0-9_]*\}", "owner", uri)


def _token_secret(item: dict, key: str) -> bytes:
    note_key(key, "token_secret_file", str, OPTIONAL)
    if "token_secret_env" in item:
        var = _get(item, "token_secret_env", str, None, key)
        value = os.environ.get(var, "")
        if not value:
            raise ConfigError(f"{key}.token_secret_env: environment variable {var} is not set or empty")
    elif "token_secret_file" in item:
        path = _get(item, "token_secret_file", str, None, key)
        try:
            with open(path, encoding="utf8") as f:
                value = f.read().rstrip("\r\n")
        except OSError as e:
            raise ConfigError(f"{key}.token_secret_file: cannot read '{path}': {e.strerror}") from None
    else:
        raise ConfigError(f"{key}: http = \"token\" (the default) needs token_secret_env or "
                          "token_secret_file (or http = \"open\" / \"off\")")
    if len(value) < 16:
        raise ConfigError(f"{key}: the token secret must be at least 16 characters")
    return value.encode()
