"""The router's configuration: a TOML file, command-line options on top.

Everything is validated at start; a bad value stops the router with an error
that names the key (``realms[1].name: ...``).  docs/reference/ has every key.
"""

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import auth as authconfig, bridge as bridgeconfig, cluster as clusterconfig, durable as durableconfig
from . import ops as opsconfig, pairs as pairconfig, tenants as tenantconfig
from .check import ConfigError  # noqa: F401 (part of this module's API)
from .check import (  # the shared checks, under this module's private names
    array as _list, count as _count, get as _get,
    only as _only, positive as _positive, seconds as _seconds,
    seconds_or_off as _seconds_or_off, table as _table,
)
from ..core.limits import SessionLimits
from .limits import SLOW_CONSUMER_POLICIES, ListenerSettings, OutboundLimits
from ..relay import config as relay_config

DEFAULT_WEBSOCKET = "tcp:8080:interface=127.0.0.1"
DEFAULT_REALM = "realm1"
# Retained events a realm keeps (one per topic, the oldest topic evicted first).
DEFAULT_MAX_RETAINED_EVENTS = 10_000


@dataclass(frozen=True, slots=True)
class Listener:
    kind: str  # "websocket" or "rawsocket"
    endpoint: str
    path: str = "ws"  # WebSocket only: the URL path of the WAMP endpoint
    tls: Any = None  # authconfig.TlsConfig, or None for plain TCP


@dataclass(frozen=True, slots=True)
class RealmConfig:
    name: str
    anonymous: bool = True
    anonymous_role: str = "anonymous"
    disclose_caller: bool = True
    disclose_publisher: bool = True
    max_retained_events: int = DEFAULT_MAX_RETAINED_EVENTS
    outbound: OutboundLimits = field(default_factory=OutboundLimits)
    limits: SessionLimits = field(default_factory=SessionLimits)
    auth: Any = None  # authconfig.RealmAuth; None: the anonymous keys above decide
    roles: Any = None  # tuple of core.authorization.Role; None: every action allowed
    history: Any = None  # tuple of core.history.HistoryRule; None: no event history
    mailboxes: Any = None  # tuple of core.mailbox.MailboxRule; None: no mailboxes
    pairing: Any = None  # pairconfig.PairingConfig; None: no pairs in this realm


@dataclass(frozen=True, slots=True)
class Limits(ListenerSettings):
    """``[limits]``: the listeners' settings (this record is what they are
    given), and the service's own."""

    shutdown_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Config:
    listeners: tuple[Listener, ...] = ()
    realms: tuple[RealmConfig, ...] = ()
    limits: Limits = field(default_factory=Limits)
    state_dir: str = "./relayrouter-state"
    security: Any = None  # authconfig.SecurityConfig (http, revocation, auth_limits)
    metrics: Any = None  # opsconfig.MetricsConfig; None: its defaults
    console: Any = None  # opsconfig.ConsoleConfig; None: its defaults (admins only)
    http_bridge: Any = None  # bridgeconfig.BridgeConfig; None: no /publish, /call, /webhook
    storage: Any = None  # durableconfig.StorageConfig
    tenants: Any = None  # tenantconfig.TenantsConfig: realms made at run time
    relay: Any = None  # relay.config.RelayConfig, or None: no raw relay
    cluster: Any = None  # clusterconfig.ClusterConfig, or None: this node runs alone

    def with_defaults(self) -> "Config":
        """Fill what neither the file nor the command line gave."""
        listeners = self.listeners or (Listener("websocket", DEFAULT_WEBSOCKET),)
        realms = self.realms or (RealmConfig(DEFAULT_REALM),)
        return replace(self, listeners=listeners, realms=realms)


# ---------------------------------------------------------------- loading


def load(path: str | Path) -> Config:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    return parse(data)


def parse(data: dict) -> Config:
    _only(data, "", {"listeners", "realms", "limits", "state_dir", "relay"} | authconfig.TOP_LEVEL_KEYS
          | durableconfig.TOP_LEVEL_KEYS | tenantconfig.TOP_LEVEL_KEYS | opsconfig.TOP_LEVEL_KEYS
          | bridgeconfig.TOP_LEVEL_KEYS | clusterconfig.TOP_LEVEL_KEYS)
    realms = _realms(_list(data, "realms"))
    return _durable_across_nodes(Config(
        security=authconfig.security(data),
        storage=durableconfig.storage(data),
        tenants=tenantconfig.tenants(data, {r.name for r in realms}, _realm),
        listeners=tuple(_listener(item, f"listeners[{i}]")
                        for i, item in enumerate(_list(data, "listeners"))),
        realms=realms,
        limits=_limits(data.get("limits", {}), "limits"),
        state_dir=_get(data, "state_dir", str, "./relayrouter-state", ""),
        relay=_relay(data),
        metrics=opsconfig.metrics(data),
        console=opsconfig.console(data),
        http_bridge=bridgeconfig.http_bridge(data, {r.name: None if r.roles is None else {role.name for role in r.roles}
                                                    for r in realms}),
        cluster=clusterconfig.cluster(data),
    ))


def _durable_across_nodes(config: Config) -> Config:
    """A clustered node keeps mailboxes and history in the store every node
    shares (PostgreSQL): on a file of its own, an owner that reconnects to
    another node would not find its mailbox there, nor a reader every node's
    events (docs/reference/cluster.md, "Mailboxes and event history")."""
    if config.cluster is None or (config.storage is not None and config.storage.dsn):
        return config
    templates = config.tenants.templates if config.tenants is not None else ()
    users = [f"realm '{r.name}' ({' and '.join(w for w in ('mailboxes', 'history') if getattr(r, w))})"
             for r in (*config.realms, *templates) if r.history or r.mailboxes]
    if users:
        raise ConfigError("storage.dsn: a clustered node ([cluster]) keeps mailboxes and event history in the "
                          "PostgreSQL database every node shares; set [storage] dsn (or dsn_env, dsn_file) "
                          f"on every node, or move {', '.join(users)} out of the cluster")
    return config


def _relay(data: dict):
    """The [relay] table, checked against the (raw) realms and listeners it refers to."""
    if "relay" not in data:
        return None
    return relay_config.parse(data["relay"], data)


def _listener(item: Any, key: str) -> Listener:
    _table(item, key)
    _only(item, key, {"type", "endpoint", "path", "tls"})
    kind = _get(item, "type", str, None, key)
    if kind not in ("websocket", "rawsocket"):
        raise ConfigError(f"{key}.type: must be 'websocket' or 'rawsocket', not {kind!r}")
    endpoint = _get(item, "endpoint", str, None, key)
    path = _get(item, "path", str, "ws", key).strip("/")
    return Listener(kind, endpoint, path, authconfig.listener_tls(item.get("tls"), f"{key}.tls"))


def _realms(items: list) -> tuple[RealmConfig, ...]:
    realms = tuple(_realm(item, f"realms[{i}]") for i, item in enumerate(items))
    seen: set[str] = set()
    for i, realm in enumerate(realms):
        if realm.name in seen:
            raise ConfigError(f"realms[{i}].name: realm '{realm.name}' is configured twice")
        seen.add(realm.name)
    return realms


def _realm(item: Any, key: str) -> RealmConfig:
    _table(item, key)
    _only(item, key, {"name", "anonymous", "anonymous_role", "disclose_caller",
                      "disclose_publisher", "max_retained_events", "outbound", "limits"} | authconfig.REALM_KEYS
          | durableconfig.REALM_KEYS | pairconfig.REALM_KEYS)
    name = _get(item, "name", str, None, key)
    if not name or any(c.isspace() for c in name) or "#" in name:
        raise ConfigError(f"{key}.name: {name!r} is not a valid realm name")
    auth = authconfig.realm_auth(item, key)
    return RealmConfig(
        name=name,
        auth=auth,
        roles=authconfig.realm_roles(item, key),
        history=durableconfig.realm_history(item, key),
        mailboxes=durableconfig.realm_mailboxes(item, key),
        pairing=pairconfig.realm_pairing(item, key),
        # With an auth section, anonymous is off unless [realms.auth.anonymous] says otherwise.
        anonymous=_get(item, "anonymous", bool, auth is None, key),
        anonymous_role=_get(item, "anonymous_role", str, "anonymous", key),
        disclose_caller=_get(item, "disclose_caller", bool, True, key),
        disclose_publisher=_get(item, "disclose_publisher", bool, True, key),
        max_retained_events=_positive(item, "max_retained_events", DEFAULT_MAX_RETAINED_EVENTS, key),
        outbound=_outbound(item.get("outbound", {}), f"{key}.outbound"),
        limits=_session_limits(item.get("limits", {}), f"{key}.limits"),
    )


def _outbound(item: Any, key: str) -> OutboundLimits:
    _table(item, key)
    _only(item, key, {"max_messages", "max_bytes", "policy"})
    default = OutboundLimits()
    policy = _get(item, "policy", str, default.policy, key)
    if policy not in SLOW_CONSUMER_POLICIES:
        raise ConfigError(f"{key}.policy: must be one of {', '.join(SLOW_CONSUMER_POLICIES)}, not {policy!r}")
    return OutboundLimits(
        max_messages=_positive(item, "max_messages", default.max_messages, key),
        max_bytes=_positive(item, "max_bytes", default.max_bytes, key),
        policy=policy,
    )


_SESSION_LIMIT_COUNTS = ("max_sessions", "max_sessions_per_address", "max_subscriptions",
                         "max_registrations", "max_pending_calls")


def _session_limits(item: Any, key: str) -> SessionLimits:
    _table(item, key)
    _only(item, key, {*_SESSION_LIMIT_COUNTS, "rate", "burst"})
    default = SessionLimits()
    counts = {name: _count(item, name, getattr(default, name), key) for name in _SESSION_LIMIT_COUNTS}
    rate = _get(item, "rate", (int, float), default.rate, key)
    if rate < 0:
        raise ConfigError(f"{key}.rate: must be a number of messages per second, or 0 for no limit")
    return SessionLimits(**counts, rate=float(rate),
                         burst=_positive(item, "burst", default.burst, key))


def _limits(item: Any, key: str) -> Limits:
    _table(item, key)
    _only(item, key, {"max_message_size", "max_depth", "hello_timeout", "shutdown_timeout",
                      "heartbeat_interval", "heartbeat_timeout", "rawsocket_ping"})
    default = Limits()
    size = _positive(item, "max_message_size", default.max_message_size, key)
    if size < 512:
        raise ConfigError(f"{key}.max_message_size: must be at least 512 bytes")
    depth = _positive(item, "max_depth", default.max_depth, key)
    if not 3 <= depth <= 400:
        raise ConfigError(f"{key}.max_depth: must be between 3 and 400 (CBOR's own limit)")
    interval = _seconds_or_off(item, "heartbeat_interval", default.heartbeat_interval, key)
    timeout = _seconds(item, "heartbeat_timeout", default.heartbeat_timeout, key)
    # Autobahn runs WebSocket ping timers on whole seconds.
    if 0 < interval < 1 or timeout < 1:
        raise ConfigError(f"{key}.heartbeat_interval/heartbeat_timeout: at least 1 second (or interval 0 for off)")
    return Limits(
        max_message_size=size,
        max_depth=depth,
        hello_timeout=_seconds(item, "hello_timeout", default.hello_timeout, key),
        shutdown_timeout=_seconds(item, "shutdown_timeout", default.shutdown_timeout, key),
        heartbeat_interval=interval,
        heartbeat_timeout=timeout,
        rawsocket_ping=_get(item, "rawsocket_ping", bool, False, key),
    )
