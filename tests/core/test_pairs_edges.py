"""The edges of a pair's URI fence: patterns just long enough, or just short of
a component boundary, to reach into another pair."""

import pytest
from autobahn.wamp import message as m

from tests.core.test_pairs import GW, make, peer

FENCED = "only a pair's own two peers"


@pytest.mark.parametrize("pattern", [
    "relayrouter.pair...presence",  # every pair's presence: exactly five components
    "relayrouter....presence",
    "..8675309..presence",
    "....",
    "relayrouter.pair.8675309..presence",
    "relayrouter.pair...event.x",
])
def test_a_wildcard_as_long_as_a_pair_uri_is_fenced_for_outsiders_and_peers(pattern):
    router, _ = make()
    outsider, gw = peer(router, "service-a"), peer(router, GW)
    for p in (outsider, gw):
        p.receive([32, 1, {"match": "wildcard"}, pattern])
        (reply,) = p.take()
        assert isinstance(reply, m.Error) and FENCED in reply.args[0], (pattern, reply)


@pytest.mark.parametrize("pattern", ["relayrouter.pair.x", "relayrouter.pair..", "a.b.c.d.e.f"])
def test_a_wildcard_of_another_length_is_the_realms_to_decide(pattern):
    router, _ = make()
    outsider = peer(router, "service-a")
    outsider.receive([32, 1, {"match": "wildcard"}, pattern])
    assert isinstance(outsider.take()[-1], m.Subscribed)


def test_a_prefix_without_its_last_dot_reaches_a_longer_box_and_is_fenced():
    router, _ = make()
    gw = peer(router, GW)
    gw.receive([32, 1, {"match": "prefix"}, "relayrouter.pair.8675309.00224dd149bb"])
    (reply,) = gw.take()
    assert isinstance(reply, m.Error) and FENCED in reply.args[0]
    gw.receive([32, 2, {"match": "prefix"}, "relayrouter.pair.8675309.00224dd149bb."])
    assert isinstance(gw.take()[-1], m.Subscribed)


def test_a_wildcard_inside_the_peers_own_pair_is_its_own():
    router, _ = make()
    gw = peer(router, GW)
    gw.receive([32, 1, {"match": "wildcard"}, "relayrouter.pair.8675309.00224dd149bb.event."])
    assert isinstance(gw.take()[-1], m.Subscribed)
    gw.receive([32, 2, {"match": "wildcard"}, "relayrouter.pair.8675309.00224dd149bbff.event."])
    (reply,) = gw.take()
    assert isinstance(reply, m.Error) and FENCED in reply.args[0]
