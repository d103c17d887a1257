"""The pairs' table where a broken line went unnoticed: a peer's leaving keeps
its pair's other peer, a replaced peer is told why and counted, what the peer
lookup answers (and refuses), identities with white space inside, the event
topic, a listing of a pair with one peer, and the presence topic a pattern
subscriber is told."""

from autobahn.wamp import message as m

from relayrouter.core.pairs import CLOSE_REPLACED, PairPolicy, PeerIdentity, event_topic

from tests.core.test_pairs import GW, MGR, call, hello, make, peer


def test_a_peer_leaving_keeps_the_other_peer_of_its_pair():
    router, realm = make()
    gw, mgr = peer(router, GW), peer(router, MGR)
    mgr.receive([6, {}, "wamp.close.normal"])
    assert realm.pairs.listing() == [{"subscriber": "8675309", "box": "00224dd149bb", "manager": None,
                                      "gateway": {"session": gw.session.session_id, "authid": GW,
                                                  "since": 5_000.0}}]
    answer = call(gw, 1, "relayrouter.pairs.peer")[-1]
    assert answer.args[0] == {"subscriber": "8675309", "box": "00224dd149bb", "peer_class": "manager",
                              "present": False}


def test_a_replaced_peer_is_told_why_and_each_replacement_counted():
    router, realm = make("replace")
    first = peer(router, GW)
    second = peer(router, GW)
    goodbye = first.take()[-1]
    assert isinstance(goodbye, m.Goodbye) and goodbye.reason == CLOSE_REPLACED
    assert goodbye.message == "another gateway of pair 8675309/00224dd149bb joined with the same identity"
    peer(router, GW)
    assert realm.counters["pair.replaced"] == 2
    assert realm.pairs.identity_of(first.session) is None and realm.pairs.identity_of(second.session) is None


def test_the_peer_lookup_refuses_a_session_that_is_no_peer_naming_it():
    router, _ = make()
    outsider = peer(router, "service-a")
    (error,) = call(outsider, 1, "relayrouter.pairs.peer")
    assert isinstance(error, m.Error) and error.error == "wamp.error.not_authorized"
    assert error.args[0] == "this session is not a peer of any pair (authid 'service-a')"


def test_an_identity_with_white_space_inside_is_refused_naming_the_part():
    assert PeerIdentity("86 75", "box1", "gateway").problem() == "subscriber id '86 75' cannot be part of a URI"
    assert PeerIdentity("8675309", "b x", "gateway").problem() == "box id 'b x' cannot be part of a URI"
    policy = PairPolicy(peer=r"(?P<class>[a-z]+):(?P<subscriber>[^:]+):(?P<box>.+)")
    assert policy.identify("gateway:86 75:box1") is not None  # the regex lets it through; problem() does not


def test_a_pairs_event_topic():
    assert event_topic("8675309", "00224dd149bb", "door") == "relayrouter.pair.8675309.00224dd149bb.event.door"


def test_a_refused_join_leaves_no_trace():
    router, realm = make()
    peer(router, GW)
    _, reply = hello(router, GW)
    assert isinstance(reply, m.Abort)
    assert realm.counters.get("pair.replaced", 0) == 0


def test_the_listing_is_for_admins_by_scope_and_for_its_readers_but_kicking_for_admins_only():
    from types import SimpleNamespace

    from relayrouter.core.pairs import KICK, LIST
    from relayrouter.core.procedures import AdminPolicy, ProcedureError, ProcedureRegistry

    router, realm = make()
    gw = peer(router, GW)
    registry = ProcedureRegistry()
    realm.pairs.add_procedures(registry, AdminPolicy(frozenset({"admin"}), "pairs:admin"),
                               readers=AdminPolicy(frozenset({"viewer"})))

    def run(uri, authrole, scopes=(), **kwargs):
        session = SimpleNamespace(authid="someone", authrole=authrole, permissions={"scopes": list(scopes)})
        return registry.get(uri)(SimpleNamespace(session=session, args=(), kwargs=kwargs))

    listing = [{"subscriber": "8675309", "box": "00224dd149bb", "manager": None,
                "gateway": {"session": gw.session.session_id, "authid": GW, "since": 5_000.0}}]
    assert run(LIST, "operator", scopes=["pairs:admin"]) == listing
    assert run(LIST, "viewer") == listing
    for uri, authrole in ((LIST, "operator"), (KICK, "viewer")):
        try:
            run(uri, authrole, subscriber="8675309", box="00224dd149bb", peer_class="gateway")
        except ProcedureError as e:
            assert e.uri == "wamp.error.not_authorized", uri
        else:
            raise AssertionError(f"{authrole} was let {uri}")


def test_a_pattern_subscriber_is_told_the_presence_events_topic():
    """WAMP: an event to a pattern-based subscription carries the topic it was published on."""
    from tests.core.test_pairs import PRESENCE

    router, _ = make()
    gw = peer(router, GW)
    gw.receive([32, 1, {"match": "prefix"}, "relayrouter.pair.8675309.00224dd149bb."])
    gw.receive([32, 2, {"match": "wildcard"}, "relayrouter.pair.8675309.00224dd149bb."])
    gw.receive([32, 3, {}, PRESENCE])
    assert [type(r) for r in gw.take()] == [m.Subscribed] * 3
    mgr = peer(router, MGR)
    events = gw.take()
    assert len(events) == 3 and all(e.args[0]["session"] == mgr.session.session_id for e in events)
    assert sorted(str(e.topic) for e in events) == ["None", PRESENCE, PRESENCE]  # the exact one names none
