"""Event retention: retain on PUBLISH, get_retained on SUBSCRIBE."""

from dataclasses import replace

from relayrouter.testing import join, make_router
from tests.core.outside import retained


def setup(n=3):
    router = make_router()
    return router, [join(router) for _ in range(n)]


def test_retained_event_is_delivered_on_subscribe_with_retained_flag():
    router, (pub, sub, _) = setup()
    pub.receive([16, 1, {"retain": True}, "com.temp", [20]])
    pub.receive([16, 2, {"retain": True}, "com.temp", [21]])
    pub.receive([16, 3, {}, "com.temp", [99]])  # not retained: the last retained one stays
    sub.receive([32, 1, {"get_retained": True}, "com.temp"])
    subscribed, event = sub.take()
    assert event.subscription == subscribed.subscription
    assert event.args == [21] and event.retained is True
    assert event.marshal()[3] == {"retained": True}


def test_without_get_retained_nothing_is_delivered():
    router, (pub, sub, _) = setup()
    pub.receive([16, 1, {"retain": True}, "com.temp", [20]])
    sub.receive([32, 1, {}, "com.temp"])
    assert len(sub.take()) == 1


def test_pattern_subscription_gets_every_matching_retained_topic():
    router, (pub, sub, other) = setup()
    for topic, value in (("com.room.a.temp", 1), ("com.room.b.temp", 2), ("com.hall.temp", 3)):
        pub.receive([16, 1, {"retain": True}, topic, [value]])
    sub.receive([32, 1, {"get_retained": True, "match": "wildcard"}, "com.room..temp"])
    events = sub.take()[1:]
    assert sorted((e.args[0], e.topic) for e in events) == [(1, "com.room.a.temp"), (2, "com.room.b.temp")]
    other.receive([32, 1, {"get_retained": True, "match": "prefix"}, "com.hall"])
    assert [e.args for e in other.take()[1:]] == [[3]]


def test_retained_event_respects_eligibility_and_publisher_exclusion():
    router, (pub, sub, outsider) = setup()
    pub.receive([16, 1, {"retain": True, "eligible": [sub.session.session_id]}, "com.t", ["x"]])
    outsider.receive([32, 1, {"get_retained": True}, "com.t"])
    assert len(outsider.take()) == 1  # SUBSCRIBED only
    sub.receive([32, 1, {"get_retained": True}, "com.t"])
    assert sub.take()[1].args == ["x"]
    pub.receive([32, 1, {"get_retained": True}, "com.t"])  # exclude_me defaults to true
    assert len(pub.take()) == 1


def test_retained_events_are_bounded_per_realm():
    router, (pub, sub, _) = setup()
    realm = router.realms["realm1"]
    realm.policy = replace(realm.policy, max_retained_events=2)
    for i in range(3):
        pub.receive([16, 1, {"retain": True}, f"com.t{i}", [i]])
    assert retained(router) == {"com.t1": [1], "com.t2": [2]}
    assert realm.counters["retained_events_evicted"] == 1


def test_republishing_a_topic_refreshes_its_place():
    router, (pub, sub, _) = setup()
    realm = router.realms["realm1"]
    realm.policy = replace(realm.policy, max_retained_events=2)
    pub.receive([16, 1, {"retain": True}, "com.a", [1]])
    pub.receive([16, 1, {"retain": True}, "com.b", [1]])
    pub.receive([16, 1, {"retain": True}, "com.a", [2]])
    pub.receive([16, 1, {"retain": True}, "com.c", [1]])
    assert retained(router) == {"com.a": [2], "com.c": [1]}


def test_unauthorized_publication_is_not_retained():
    router, (pub, sub, _) = setup()
    realm = router.realms["realm1"]
    realm.authorize = lambda session, action, uri, *match: "no" if action == "publish" else None
    pub.receive([16, 1, {"retain": True}, "com.t", [1]])
    assert retained(router) == {}
