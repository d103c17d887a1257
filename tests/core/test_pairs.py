"""Pairs in the core: one gateway and one manager, presence, and pair-private URIs."""

import pytest
from autobahn.wamp import message as m

from relayrouter.core.auth import Accept
from relayrouter.core.pairs import (CLOSE_REPLACED, OCCUPIED, PEER_ABSENT, PairPolicy, presence_topic,
                                    rest_procedure)
from relayrouter.core.procedures import AdminPolicy
from relayrouter.core.realm import RealmPolicy
from relayrouter.testing import ALL_ROLES, FakeClock, connect
from relayrouter.core.router import Router


class ClaimedAuthid:
    """Accepts the authid the HELLO names: the TLS or JWT authenticator's part, in memory."""

    authmethod = "x"

    def hello(self, request):
        return Accept(request.authid, "peer", "x")


def make(on_conflict="refuse"):
    router = Router(FakeClock(5_000.0))
    realm = router.add_realm("realm1", policy=RealmPolicy(pairing=PairPolicy(on_conflict=on_conflict)))
    realm.authenticators = {"x": ClaimedAuthid()}
    realm.pairs.add_procedures(realm.procedures, AdminPolicy(frozenset({"admin"})))
    return router, realm


def hello(router, authid):
    peer = connect(router)
    peer.receive([1, "realm1", {"roles": ALL_ROLES, "authmethods": ["x"], "authid": authid}])
    return peer, peer.take()[-1]


def peer(router, authid):
    p, reply = hello(router, authid)
    assert isinstance(reply, m.Welcome), reply
    return p


def call(p, request, procedure, *args, **kwargs):
    p.receive([48, request, {}, procedure, list(args), kwargs])
    return p.take()


GW = "gateway:8675309:00224dd149bb"
MGR = "manager:8675309:00224dd149bb"
REST_GW = rest_procedure("8675309", "00224dd149bb", "gateway")
PRESENCE = presence_topic("8675309", "00224dd149bb")


def test_a_pair_holds_one_gateway_and_one_manager():
    router, realm = make()
    peer(router, GW)
    peer(router, MGR)
    _, reply = hello(router, GW)
    assert isinstance(reply, m.Abort) and reply.reason == OCCUPIED
    assert "pair 8675309/00224dd149bb already has its gateway" in reply.message
    assert realm.pairs.listing() == [{
        "subscriber": "8675309", "box": "00224dd149bb",
        "gateway": {"session": realm.pairs.peers_by_pair[("8675309", "00224dd149bb")]["gateway"].session.session_id,
                    "authid": GW, "since": 5_000.0},
        "manager": {"session": realm.pairs.peers_by_pair[("8675309", "00224dd149bb")]["manager"].session.session_id,
                    "authid": MGR, "since": 5_000.0}}]
    # Another pair's gateway is not affected.
    peer(router, "gateway:8675309:ffffffffffff")


def test_replace_closes_the_stale_peer_and_admits_the_new_one():
    router, realm = make("replace")
    old = peer(router, GW)
    new = peer(router, GW)
    goodbye = old.take()[-1]
    assert isinstance(goodbye, m.Goodbye) and goodbye.reason == CLOSE_REPLACED
    present = realm.pairs.peers_by_pair[("8675309", "00224dd149bb")]["gateway"]
    assert present.session is new.session


def test_presence_tells_each_peer_of_the_other():
    router, realm = make()
    gw = peer(router, GW)
    gw.receive([32, 1, {}, PRESENCE])
    assert isinstance(gw.take()[-1], m.Subscribed)
    answer = call(gw, 2, "relayrouter.pairs.peer")[-1]
    assert answer.args[0]["present"] is False and answer.args[0]["peer_class"] == "manager"
    mgr = peer(router, MGR)
    (event,) = gw.take()
    assert event.args[0] == {"event": "join", "peer_class": "manager", "peer_id": MGR,
                             "session": mgr.session.session_id}
    answer = call(gw, 3, "relayrouter.pairs.peer")[-1]
    assert answer.args[0]["present"] is True and answer.args[0]["authid"] == MGR
    mgr.receive([6, {}, "wamp.close.normal"])
    left = [e for e in gw.take() if isinstance(e, m.Event)]
    assert left[0].args[0]["event"] == "leave" and left[0].args[0]["peer_class"] == "manager"


def test_calling_an_absent_peer_fails_at_once_with_a_clear_error():
    router, _ = make()
    mgr = peer(router, MGR)
    (error,) = call(mgr, 1, REST_GW, {"method": "GET", "path": "/"})
    assert isinstance(error, m.Error) and error.error == PEER_ABSENT
    assert "gateway of pair 8675309/00224dd149bb is not connected" in error.args[0]


def test_only_the_pair_may_use_its_uris():
    router, _ = make()
    gw = peer(router, GW)
    intruder = peer(router, "manager:8675309:ffffffffffff")
    outsider = peer(router, "service-a")
    for p in (intruder, outsider):
        p.receive([32, 1, {}, PRESENCE])
        (reply,) = p.take()
        assert isinstance(reply, m.Error) and reply.error == "wamp.error.not_authorized"
        assert "belongs to a pair this session is not a peer of" in reply.args[0]
        (reply,) = call(p, 2, REST_GW)
        assert reply.error == "wamp.error.not_authorized"
    # Patterns that could reach into another pair are refused too.
    for uri, match in (("relayrouter.pair", "prefix"), ("relayrouter.pair.8675309.", "prefix"),
                       ("relayrouter.pair.8675309..event.x", "wildcard"), ("", "prefix")):
        gw.receive([32, 3, {"match": match}, uri])
        (reply,) = gw.take()
        assert isinstance(reply, m.Error), (uri, match)
        assert "only a pair's own two peers" in reply.args[0]
    # Its own pair, by prefix, is the gateway's to watch.
    gw.receive([32, 4, {"match": "prefix"}, "relayrouter.pair.8675309.00224dd149bb.event."])
    assert isinstance(gw.take()[-1], m.Subscribed)


def test_a_peer_registers_only_its_own_rest_procedure_and_never_publishes_presence():
    router, _ = make()
    gw = peer(router, GW)
    gw.receive([64, 1, {}, rest_procedure("8675309", "00224dd149bb", "manager")])
    (reply,) = gw.take()
    assert reply.error == "wamp.error.not_authorized" and "a gateway registers" in reply.args[0]
    gw.receive([64, 2, {}, REST_GW])
    assert isinstance(gw.take()[-1], m.Registered)
    gw.receive([16, 3, {"acknowledge": True}, PRESENCE, [{"event": "join"}]])
    (reply,) = gw.take()
    assert reply.error == "wamp.error.not_authorized" and "published by the router" in reply.args[0]


def test_peer_leaving_mid_call_answers_the_caller_at_once():
    router, _ = make()
    gw = peer(router, GW)
    mgr = peer(router, MGR)
    gw.receive([64, 1, {}, REST_GW])
    gw.take()
    mgr.receive([48, 7, {}, REST_GW, [{"method": "GET", "path": "/slow"}]])
    assert isinstance(gw.take()[-1], m.Invocation)
    gw.session.transport_lost()
    error = mgr.take()[-1]
    assert isinstance(error, m.Error) and error.request == 7 and error.error == "wamp.error.canceled"


def test_policy_errors_name_the_problem():
    with pytest.raises(ValueError, match="must name the groups class, subscriber and box"):
        PairPolicy(peer=r"(?P<class>\w+):(?P<subscriber>\w+)")
    with pytest.raises(ValueError, match="on_conflict: 'evict' is not one of refuse, replace"):
        PairPolicy(on_conflict="evict")
