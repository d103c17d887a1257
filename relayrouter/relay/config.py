"""The ``[relay]`` table: practable-compatible access and raw WebSocket streams.

Checked at start like the rest of the file; errors name the key
(``relay.prefixes[0]: ...``).  See docs/reference/relay.md.
"""

from dataclasses import dataclass
from typing import Any

from ..config.check import ConfigError
from ..config.check import OPTIONAL, note_key  # what the reader asks, for the configuration reference
from .. import proxies
from ..core.uri import uri_problem
from ..config.check import (  # the shared checks, under this module's private names
    get as _get, only as _only, positive as _positive, seconds as _seconds, table as _table,
)

DEFAULT_WAMP_TOPIC = "relay.{prefix}.{topic}"
# Path parts the HTTP site uses already; a prefix may not take them.
RESERVED_PATHS = frozenset({"health", "ticket", "denylist", "bids", "status", "relay", "mailbox"})


@dataclass(frozen=True, slots=True)
class RelayConfig:
    realm: str
    prefixes: tuple[str, ...] = ("session",)
    wamp_topic: str = DEFAULT_WAMP_TOPIC
    code_lifetime: float = 30.0
    allow_no_booking_id: bool = False
    public_url: str | None = None  # ws(s)://host[/base] of handed-out URIs; None: from the request
    authrole: str | None = None  # None: the role the realm's JWT settings give
    buffer_messages: int = 128  # frames waiting for one raw reader ...
    buffer_bytes: int = 8 * 1024 * 1024  # ... and their bytes; then the oldest frame is dropped
    stats_interval: float = 5.0
    stats_topic: str = "stats"  # the practable stats topic under the first prefix; "" for none
    admin_scope: str = "relay:admin"
    stats_scope: str = "relay:stats"
    trusted_proxies: tuple = ()  # ip networks whose X-Forwarded-For names the client (proxies.py)

    def wamp_topic_for(self, prefix: str, topic: str) -> str:
        return self.wamp_topic.format(prefix=prefix, topic=topic)


KEYS = {"realm", "prefixes", "wamp_topic", "code_lifetime", "allow_no_booking_id", "public_url",
        "authrole", "buffer_messages", "buffer_bytes", "stats_interval", "stats_topic",
        "admin_scope", "stats_scope", "trusted_proxies"}


def parse(item: Any, data: dict, key: str = "relay") -> RelayConfig:
    """The relay settings from the ``[relay]`` table of the whole file ``data``
    (whose realms and listeners are validated on their own)."""
    _table(item, key)
    _only(item, key, KEYS)
    realm = _get(item, "realm", str, None, key)
    realms = {r.get("name"): r for r in data.get("realms", []) if isinstance(r, dict)}
    ws_paths = {str(listener.get("path", "ws")).strip("/").split("/")[0]
                for listener in data.get("listeners", []) if isinstance(listener, dict)
                and listener.get("type") == "websocket"} or {"ws"}
    rc = realms.get(realm)
    if rc is None:
        raise ConfigError(f"{key}.realm: no realm named '{realm}' is configured")
    if not isinstance(rc.get("auth"), dict) or "jwt" not in rc["auth"]:
        raise ConfigError(f"{key}.realm: realm '{realm}' has no [realms.auth.jwt] to check relay tokens with")
    if "anonymous" in rc["auth"] and not rc.get("roles"):
        # Relay tokens are confined whatever the roles say (relay/scope.py); anonymous sessions are
        # not: in a realm without roles they could write into every stream and take every tunnel.
        at = next(i for i, r in enumerate(data["realms"]) if r is rc)
        raise ConfigError(f"realms[{at}].auth.anonymous: realm '{realm}' is the relay's and has no "
                          "[[realms.roles]], so anonymous sessions could publish into every stream and register "
                          "every tunnel's procedures; give the anonymous role its rules, or take anonymous out")
    prefixes = tuple(_prefixes(item, key, ws_paths))
    wamp_topic = _get(item, "wamp_topic", str, DEFAULT_WAMP_TOPIC, key)
    if "{topic}" not in wamp_topic:
        raise ConfigError(f"{key}.wamp_topic: must contain {{topic}} (e.g. {DEFAULT_WAMP_TOPIC})")
    try:
        wamp_topic.format(prefix="p", topic="t")
    except (KeyError, IndexError, ValueError):
        raise ConfigError(f"{key}.wamp_topic: only {{prefix}} and {{topic}} may be filled in") from None
    for prefix in prefixes:  # a topic is one URI component, so the template must make a URI of every one
        problem = uri_problem(wamp_topic.format(prefix=prefix, topic="t"))
        if problem is not None:
            raise ConfigError(f"{key}.wamp_topic: {wamp_topic!r} makes no WAMP topic for the prefix '{prefix}'"
                              f" ({problem}; e.g. {DEFAULT_WAMP_TOPIC})")
    note_key(key, "public_url", str, OPTIONAL)
    note_key(key, "trusted_proxies", list, [])
    public_url = item.get("public_url")
    if public_url is not None and not (isinstance(public_url, str) and public_url.startswith(("ws://", "wss://"))):
        raise ConfigError(f"{key}.public_url: must be a ws:// or wss:// URL")
    stats_interval = _get(item, "stats_interval", (int, float), 5.0, key)
    if stats_interval < 0:
        raise ConfigError(f"{key}.stats_interval: must be a number of seconds, or 0 for off")
    return RelayConfig(
        realm=realm,
        prefixes=prefixes,
        wamp_topic=wamp_topic,
        code_lifetime=_seconds(item, "code_lifetime", 30.0, key),
        allow_no_booking_id=_get(item, "allow_no_booking_id", bool, False, key),
        public_url=public_url.rstrip("/") if public_url else None,
        authrole=_get(item, "authrole", str, "", key) or None,
        buffer_messages=_positive(item, "buffer_messages", 128, key),
        buffer_bytes=_positive(item, "buffer_bytes", 8 * 1024 * 1024, key),
        stats_interval=float(stats_interval),
        stats_topic=_get(item, "stats_topic", str, "stats", key),
        admin_scope=_get(item, "admin_scope", str, "relay:admin", key),
        stats_scope=_get(item, "stats_scope", str, "relay:stats", key),
        trusted_proxies=proxies.parse(item.get("trusted_proxies"), f"{key}.trusted_proxies"),
    )


def _prefixes(item: dict, key: str, ws_paths: set[str]):
    note_key(key, "prefixes", list, ["session"])
    values = item.get("prefixes", ["session"])
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{key}.prefixes: must be a non-empty list of path names")
    for i, prefix in enumerate(values):
        if not isinstance(prefix, str) or not prefix or not all(c.isalnum() or c in "-_" for c in prefix):
            raise ConfigError(f"{key}.prefixes[{i}]: {prefix!r} is not a path name (letters, digits, - and _)")
        if prefix in RESERVED_PATHS or prefix in ws_paths:
            raise ConfigError(f"{key}.prefixes[{i}]: '{prefix}' is a path the router uses already")
        yield prefix
