"""The pairs' fence where a broken line would go unnoticed: identities no URI
can hold, the pair's bare prefix, the peer's own procedure named in a refusal,
the peer lookup open to peers only, and refusals counted."""

from autobahn.wamp import message as m

from relayrouter.core.pairs import NOT_MINE, OCCUPIED, PEER, PairPolicy
from relayrouter.core.procedures import AdminPolicy
from relayrouter.core.realm import RealmPolicy
from relayrouter.core.router import Router
from relayrouter.testing import FakeClock

from tests.core.test_pairs import GW, MGR, REST_GW, ClaimedAuthid, hello, make, peer

NOT_A_PEER = "belongs to a pair this session is not a peer of"


def _loose_realm():
    """A realm whose peer regex lets a dot or a third class through (the check after it must not)."""
    router = Router(FakeClock(5_000.0))
    policy = PairPolicy(peer=r"(?P<class>[a-z]+):(?P<subscriber>[^:]+):(?P<box>.+)")
    realm = router.add_realm("realm1", policy=RealmPolicy(pairing=policy))
    realm.authenticators = {"x": ClaimedAuthid()}
    realm.pairs.add_procedures(realm.procedures, AdminPolicy(frozenset({"admin"})))
    return router


def test_an_identity_no_uri_can_hold_is_refused_even_when_the_regex_matches_it():
    router = _loose_realm()
    _, reply = hello(router, "gateway:8675309:box.1")
    assert isinstance(reply, m.Abort) and reply.reason == OCCUPIED
    assert "box id 'box.1' cannot be part of a URI" in reply.message
    _, reply = hello(router, "router:8675309:box1")
    assert isinstance(reply, m.Abort) and "peer class 'router' is neither gateway nor manager" in reply.message


def test_the_pairs_bare_prefix_as_an_exact_uri_is_refused_not_an_error():
    router, _ = make()
    gw = peer(router, GW)
    gw.receive([32, 1, {}, "relayrouter.pair.8675309.00224dd149bb"])
    (reply,) = gw.take()
    assert reply.error == "wamp.error.not_authorized" and NOT_A_PEER in reply.args[0]


def test_a_wrong_registration_names_the_peers_own_procedure():
    router, _ = make()
    mgr = peer(router, MGR)
    mgr.receive([64, 1, {}, REST_GW])
    (reply,) = mgr.take()
    own = REST_GW.replace(".gateway", ".manager")
    assert reply.error == "wamp.error.not_authorized" and f"registers '{own}'" in reply.args[0]


def test_the_peer_lookup_is_the_pairs_to_allow_for_peers_only():
    router, realm = make()
    gw, outsider = peer(router, GW), peer(router, "service-a")
    assert realm.pairs.authorize(gw.session, "call", PEER) is None
    assert realm.pairs.authorize(outsider.session, "call", PEER) is NOT_MINE


def test_every_refused_second_peer_is_counted():
    router, realm = make()
    peer(router, GW)
    for _ in range(2):
        _, reply = hello(router, GW)
        assert isinstance(reply, m.Abort) and reply.reason == OCCUPIED
    assert realm.counters["pair.refused_occupied"] == 2


def test_a_box_id_ending_in_a_letter_is_whole_in_its_fence():
    """The pair's prefix loses only its final dot: a box 'BOX' stays 'BOX', not 'BO'."""
    router, _ = make()
    gw = peer(router, "gateway:8675309:BOX")
    gw.receive([32, 1, {"match": "wildcard"}, "relayrouter.pair.8675309.BOX.event."])
    assert isinstance(gw.take()[-1], m.Subscribed)
