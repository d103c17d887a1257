from autobahn.wamp import message as m

from relayrouter.testing import join, make_router
from tests.refusals import assert_refused
from tests.core.outside import subscriptions


def setup(n=3):
    router = make_router()
    return router, [join(router) for _ in range(n)]


def test_subscribe_twice_returns_the_same_subscription():
    router, (a, b, _) = setup()
    a.receive([32, 1, {}, "com.t"])
    a.receive([32, 2, {}, "com.t"])
    b.receive([32, 3, {}, "com.t"])
    ids = {x.subscription for x in a.take() + b.take()}
    assert len(ids) == 1
    assert subscriptions(router) == [("exact", "com.t")]


def test_one_event_object_per_subscription_for_all_receivers():
    router, (a, b, c) = setup()
    a.receive([32, 1, {}, "com.t"])
    b.receive([32, 1, {}, "com.t"])
    a.take(), b.take()
    c.receive([16, 1, {}, "com.t", [1]])
    [ea], [eb] = a.take(), b.take()
    assert ea is eb  # bytes are made once per serializer


def test_exclude_me_false_and_acknowledge():
    router, (a, b, _) = setup()
    a.receive([32, 1, {}, "com.t"])
    a.take()
    a.receive([16, 2, {"exclude_me": False, "acknowledge": True}, "com.t", ["hi"]])
    event, published = a.take()
    assert isinstance(event, m.Event) and event.args == ["hi"]
    assert isinstance(published, m.Published) and published.publication == event.publication


def test_black_and_whitelisting():
    router, peers = setup(4)
    for p in peers:
        p.receive([32, 1, {}, "com.t"])
        p.take()
    pub, a, b, c = peers
    ids = [p.session.session_id for p in peers]
    pub.receive([16, 2, {"eligible": [ids[1], ids[2]], "exclude": [ids[2]]}, "com.t"])
    assert [len(p.take()) for p in (a, b, c)] == [1, 0, 0]
    pub.receive([16, 3, {"exclude_authid": [a.session.authid]}, "com.t"])
    assert [len(p.take()) for p in (a, b, c)] == [0, 1, 1]
    b.session.authrole = "special"
    pub.receive([16, 4, {"eligible_authrole": ["special"]}, "com.t"])
    assert [len(p.take()) for p in (a, b, c)] == [0, 1, 0]


def test_pattern_subscriptions_carry_the_topic():
    router, (a, b, pub) = setup()
    a.receive([32, 1, {"match": "prefix"}, "com.dev."])
    b.receive([32, 1, {"match": "wildcard"}, "com..temp"])
    a.take(), b.take()
    pub.receive([16, 2, {}, "com.dev.temp", [20]])
    [ea], [eb] = a.take(), b.take()
    assert ea.topic == "com.dev.temp" and eb.topic == "com.dev.temp"
    pub.receive([16, 3, {}, "com.other.temp"])
    assert a.take() == [] and len(b.take()) == 1


def test_match_null_is_exact_and_bad_patterns_are_invalid_uri():
    router, (a, _, _) = setup()
    a.receive([32, 1, {"match": None}, "com.t"])
    assert isinstance(a.last(), m.Subscribed)
    a.receive([32, 2, {}, "com..t"])
    assert_refused(a.last(), "wamp.error.invalid_uri",
                   "cannot subscribe: 'com..t' is not a valid URI for exact matching")
    a.receive([32, 3, {"match": "regex"}, "com.t"])
    assert a.last().reason == "wamp.error.protocol_violation"
    assert "regex" in a.last().message


def test_disclose_me_is_honoured_per_realm_policy():
    router, (a, pub, _) = setup()
    a.receive([32, 1, {}, "com.t"])
    a.take()
    pub.receive([16, 2, {"disclose_me": True}, "com.t"])
    event = a.take()[0]
    assert event.publisher == pub.session.session_id
    assert event.publisher_authid == pub.session.authid
    from dataclasses import replace
    realm = router.realms["realm1"]
    realm.policy = replace(realm.policy, disclose_publisher=False)
    # "a Broker may deny a Publisher's request to disclose its identity": refused, not delivered
    pub.receive([16, 3, {"disclose_me": True, "acknowledge": True}, "com.t"])
    assert a.take() == []
    [error] = pub.take()
    assert_refused(error, "wamp.error.option_disallowed.disclose_me",
                   "this realm does not let publishers disclose their identity")


def test_leaving_removes_subscriptions():
    router, (a, b, _) = setup()
    a.receive([32, 1, {}, "com.t"])
    a.receive([32, 2, {"match": "prefix"}, "com."])
    a.session.transport_lost()
    assert subscriptions(router) == []


def test_ids_by_name_give_subscriptions_their_ids_and_a_collision_a_random_one():
    from relayrouter.cluster.view import subscription_id

    router, (a, b, _) = setup()
    broker = router.realms["realm1"].broker
    named = []
    broker.ids_by_name = lambda topic, match, key: named.append((topic, match, key)) or 77
    a.receive([32, 1, {}, "com.one"])
    a.receive([32, 2, {"match": "prefix"}, "com.two"])
    b.receive([32, 3, {"_where": "t=gt:1;"}, "com.one"])  # a filtered variant: named with its filter key
    first, second = (x.subscription for x in a.take())
    [variant] = [x.subscription for x in b.take()]
    assert first == 77 and second not in (77, 0) and variant not in (77, second)
    assert [n[:2] for n in named] == [("com.one", "exact"), ("com.two", "prefix"), ("com.one", "exact")]
    assert named[0][2] is None and named[2][2] is not None
    # The cluster's names: stable, in [1, 2^53], different for match policy and filter.
    one = subscription_id("realm1", "com.one", "exact", None)
    assert one == subscription_id("realm1", "com.one", "exact", None) and 1 <= one <= 2**53
    assert len({one, subscription_id("realm1", "com.one", "prefix", None),
                subscription_id("realm2", "com.one", "exact", None),
                subscription_id("realm1", "com.one", "exact", (None, ()))}) == 4
