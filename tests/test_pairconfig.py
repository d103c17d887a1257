"""[realms.pairing]: every bad value stops the router with an error naming the key."""

import pytest

from relayrouter import config as cfg
from relayrouter.service.pairing import Pairing
from relayrouter.service import build_router


def realm(**pairing):
    return {"realms": [{"name": "micronets", "pairing": pairing}]}


@pytest.mark.parametrize("pairing, message", [
    ({"peers": "x"}, "realms[0].pairing.peers: unknown key"),
    ({"on_conflict": "evict"}, "realms[0].pairing.on_conflict: 'evict' is not one of refuse, replace"),
    ({"peer": "(?P<class>a):(?P<box>b)"}, "realms[0].pairing.peer: the regex must name the groups class, "
                                          "subscriber and box (missing: subscriber)"),
    ({"peer": "("}, "realms[0].pairing.peer: '(' is not a valid regex"),
    ({"meetup": "sub/{subscriber}/{boxid}"}, "realms[0].pairing.meetup: 'sub/{subscriber}/{boxid}' may use only"),
    ({"ping_interval": 0}, "realms[0].pairing.ping_interval: must be at least 1 second"),
    ({"ping_timeout": "10"}, "realms[0].pairing.ping_timeout: must be"),
])
def test_bad_pairing_values_name_the_key(pairing, message):
    with pytest.raises(cfg.ConfigError) as info:
        cfg.parse(realm(**pairing))
    assert str(info.value).startswith(message), str(info.value)


def test_defaults():
    pairing = cfg.parse(realm()).realms[0].pairing
    assert pairing.policy.on_conflict == "refuse"
    assert (pairing.legacy.path, pairing.legacy.meetup) == ("micronets/v1/ws-proxy", "sub/{subscriber}/{box}")
    assert pairing.policy.identify("gateway:8675309:00224dd149bb").pair == ("8675309", "00224dd149bb")
    assert pairing.policy.identify("device-7") is None


def test_two_realms_cannot_share_a_micronets_path():
    config = cfg.parse({"realms": [{"name": "a", "pairing": {}}, {"name": "b", "pairing": {}}]})
    router = build_router(config, clock=None)
    with pytest.raises(cfg.ConfigError, match=r"realms\[1\].pairing.micronets_path: 'micronets/v1/ws-proxy' "
                                              "is realm 'a''s already"):
        Pairing(config, router, admin=None)
