"""The limit keys: the documented example (docs/reference/router.md) is valid and says the defaults; bad values are named."""

import re
import tomllib
from pathlib import Path

import pytest

from relayrouter import config as cfg
from relayrouter.core.auth import AnonymousAuthenticator
from relayrouter.core.limits import SessionLimits
from relayrouter.service import build_router
from relayrouter.testing import FakeClock, join

README = Path(__file__).resolve().parents[1] / "docs" / "reference" / "router.md"


def test_readme_example_parses_and_shows_the_defaults():
    block = re.search(r"```toml\n(.*?)```", README.read_text(), re.S).group(1)
    config = cfg.parse(tomllib.loads(block))
    assert config.limits == cfg.Limits()
    assert config.realms[0].limits == SessionLimits()


@pytest.mark.parametrize("data, message", [
    ({"limits": {"max_depth": 1000}}, "limits.max_depth: must be between 3 and 400"),
    ({"limits": {"heartbeat_interval": 0.5}}, "at least 1 second"),
    ({"limits": {"heartbeat_timeout": 0}}, "limits.heartbeat_timeout"),
    ({"limits": {"rawsocket_ping": "yes"}}, "limits.rawsocket_ping: must be bool"),
    ({"realms": [{"name": "r", "limits": {"rate": -1}}]}, "realms[0].limits.rate"),
    ({"realms": [{"name": "r", "limits": {"max_sessions": -1}}]}, "realms[0].limits.max_sessions"),
    ({"realms": [{"name": "r", "limits": {"burst": 0}}]}, "realms[0].limits.burst: must be positive"),
    ({"realms": [{"name": "r", "limits": {"max_sesions": 1}}]}, "realms[0].limits.max_sesions: unknown key"),
])
def test_bad_limit_values_name_the_key(data, message):
    with pytest.raises(cfg.ConfigError, match=re.escape(message)):
        cfg.parse(data)


def test_zero_turns_limits_and_heartbeats_off():
    config = cfg.parse({"limits": {"heartbeat_interval": 0},
                        "realms": [{"name": "r", "limits": {"rate": 0, "max_sessions": 0}}]})
    assert config.limits.heartbeat_interval == 0
    assert config.realms[0].limits.rate == 0 and config.realms[0].limits.max_sessions == 0


def test_max_retained_events_reaches_the_realm_and_bounds_retention():
    config = cfg.parse({"realms": [{"name": "realm1", "max_retained_events": 2}]})
    assert config.realms[0].max_retained_events == 2
    router = build_router(config, FakeClock())
    realm = router.realms["realm1"]
    realm.authenticators = {"anonymous": AnonymousAuthenticator()}  # Security's part, not built here
    publisher = join(router)
    for n in range(3):
        publisher.receive([16, n + 1, {"retain": True}, f"com.t{n}", [n]])
    assert realm.counters["retained_events_evicted"] == 1
    late = join(router)
    late.receive([32, 1, {"get_retained": True}, "com.t0"])  # evicted: nothing comes
    late.receive([32, 2, {"get_retained": True}, "com.t2"])
    events = [msg for msg in late.take() if msg.MESSAGE_TYPE == 36]
    assert [e.args for e in events] == [[2]]


def test_max_retained_events_is_checked():
    with pytest.raises(cfg.ConfigError, match=r"realms\[0\]\.max_retained_events: must be positive"):
        cfg.parse({"realms": [{"name": "r", "max_retained_events": 0}]})
