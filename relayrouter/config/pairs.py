"""``[realms.pairing]``: gateway/manager pairs, and the Micronets endpoint.

Called from :mod:`relayrouter.config`; every value is checked here and errors
name the key, like the rest of the file.
"""

from dataclasses import dataclass

from .check import ConfigError
from .check import get as _get, only as _only, table as _table  # the shared checks
from ..core.pairs import DEFAULT_PEER, PairPolicy

REALM_KEYS = {"pairing"}
DEFAULT_PATH = "micronets/v1/ws-proxy"
DEFAULT_MEETUP = "sub/{subscriber}/{box}"


@dataclass(frozen=True, slots=True)
class LegacySettings:
    """The Micronets endpoint of a pairing realm (transport/micronets.py)."""

    path: str = DEFAULT_PATH  # "" turns the endpoint off
    meetup: str = DEFAULT_MEETUP  # the meetup id a pair's peers must use
    ping_interval: float = 10.0
    ping_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class PairingConfig:
    policy: PairPolicy
    legacy: LegacySettings


def realm_pairing(item: dict, key: str) -> PairingConfig | None:
    if "pairing" not in item:
        return None
    key = f"{key}.pairing"
    table = item["pairing"]
    _table(table, key)
    _only(table, key, {"peer", "on_conflict", "micronets_path", "meetup", "ping_interval", "ping_timeout"})
    try:
        policy = PairPolicy(peer=_get(table, "peer", str, DEFAULT_PEER, key),
                            on_conflict=_get(table, "on_conflict", str, "refuse", key))
    except ValueError as e:
        raise ConfigError(f"{key}.{e}") from None
    meetup = _get(table, "meetup", str, DEFAULT_MEETUP, key)
    try:
        meetup.format(subscriber="s", box="b")
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"{key}.meetup: '{meetup}' may use only {{subscriber}} and {{box}} ({e})") from None
    legacy = LegacySettings(path=_get(table, "micronets_path", str, DEFAULT_PATH, key).strip("/"),
                            meetup=meetup,
                            ping_interval=_interval(table, "ping_interval", key),
                            ping_timeout=_interval(table, "ping_timeout", key))
    return PairingConfig(policy, legacy)


def _interval(table: dict, name: str, key: str) -> float:
    value = _get(table, name, (int, float), 10, key)
    if isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key}.{name}: must be at least 1 second")
    return float(value)
