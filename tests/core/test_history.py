"""Event history in the core, with the in-memory store and in-memory peers."""

from autobahn.wamp import message as m

from relayrouter.core.history import History, HistoryRule
from relayrouter.core.router import welcome_roles
from relayrouter.store.memory import MemoryStore
from relayrouter.testing import FakeClock, join, make_router

PUBLISH, SUBSCRIBE, CALL = 16, 32, 48


def setup(*rules, hold=False):
    clock = FakeClock(1_700_000_000.0)
    router = make_router("realm1", clock=clock)
    realm = router.realms["realm1"]
    store = MemoryStore(hold=hold)
    realm.broker.history = History(realm, rules or (HistoryRule("t.kept", limit=100),), store)
    realm.welcome_roles = welcome_roles(broker_extra=("event_history",))
    return router, realm, store, clock


def call(peer, procedure, args=(), kwargs=None, request=[1000]):
    request[0] += 1
    peer.receive([CALL, request[0], {}, procedure, list(args), kwargs or {}])
    return peer.take()


def result_of(sent):
    assert len(sent) == 1 and isinstance(sent[0], m.Result), sent
    return sent[0]


def publish(peer, topic, *args, request=[0], **options):
    request[0] += 1
    peer.receive([PUBLISH, request[0], {"acknowledge": True, **options}, topic, list(args), {}])
    published = peer.take()
    return published[-1].publication


def test_kept_topics_are_read_back_oldest_first_with_paging():
    router, realm, store, clock = setup()
    publisher, reader = join(router), join(router)
    ids = []
    for i in range(7):
        clock.advance(1)
        ids.append(publish(publisher, "t.kept", i))
    publish(publisher, "t.other", "never kept")
    seen, after = [], None
    while True:
        kwargs = {"limit": 3} if after is None else {"limit": 3, "after": after}
        page = result_of(call(reader, "relayrouter.history.read", ["t.kept"], kwargs)).args[0]
        seen += page["events"]
        if not page["more"]:
            break
        after = page["events"][-1]["publication"]
    assert [e["publication"] for e in seen] == ids
    assert [e["args"] for e in seen] == [[i] for i in range(7)]
    assert seen[0]["topic"] == "t.kept" and seen[0]["timestamp"] == 1_700_000_001.0
    assert len(store.events) == 7


def test_since_and_max_age():
    router, realm, store, clock = setup(HistoryRule("t.kept", max_age=10))
    publisher, reader = join(router), join(router)
    first = publish(publisher, "t.kept", "old")
    clock.advance(5)
    second = publish(publisher, "t.kept", "new")
    page = result_of(call(reader, "relayrouter.history.read", ["t.kept"], {"since": clock.now})).args[0]
    assert [e["publication"] for e in page["events"]] == [second]
    clock.advance(6)  # the first is 11 s old now: past max_age, even before a sweep
    page = result_of(call(reader, "relayrouter.history.read", ["t.kept"])).args[0]
    assert [e["publication"] for e in page["events"]] == [second] and first != second
    realm.broker.history.expire()
    assert [e.publication for e in store.events] == [second]


def test_the_answer_waits_for_the_store():
    router, realm, store, clock = setup(hold=True)
    publisher, reader = join(router), join(router)
    publish(publisher, "t.kept", 1)
    assert call(reader, "relayrouter.history.read", ["t.kept"]) == []
    store.flush()
    assert result_of(reader.take()).args[0]["events"][0]["args"] == [1]


def test_get_events_as_the_spec_says():
    router, realm, store, clock = setup(HistoryRule("t.", match="prefix"))
    publisher, subscriber = join(router), join(router)
    subscriber.receive([SUBSCRIBE, 1, {"match": "prefix"}, "t."])
    subscription = subscriber.take()[0].subscription
    a = publish(publisher, "t.a", 1, disclose_me=True)
    clock.advance(1)
    b = publish(publisher, "t.b", 2)
    subscriber.take()  # the two EVENTs
    answer = result_of(call(subscriber, "wamp.subscription.get_events", [subscription]))
    assert [e["publication"] for e in answer.args] == [a, b] and answer.kwargs == {"more": False}
    first = answer.args[0]
    assert first["subscription"] == subscription and first["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert first["details"]["topic"] == "t.a" and first["details"]["publisher"] == publisher.session.session_id
    assert "publisher" not in answer.args[1]["details"]
    # limit second (as routers commonly take it) or in kwargs; reverse; topic; publication bounds
    assert [e["publication"] for e in result_of(call(subscriber, "wamp.subscription.get_events",
                                                     [subscription, 1])).args] == [a]
    assert [e["publication"] for e in result_of(call(subscriber, "wamp.subscription.get_events", [subscription],
                                                     {"reverse": True, "limit": 1})).args] == [b]
    assert [e["publication"] for e in result_of(call(subscriber, "wamp.subscription.get_events", [subscription],
                                                     {"topic": "t.b"})).args] == [b]
    assert [e["publication"] for e in result_of(call(subscriber, "wamp.subscription.get_events", [subscription],
                                                     {"after_publication": a})).args] == [b]
    assert [e["publication"] for e in result_of(call(subscriber, "wamp.subscription.get_events", [subscription],
                                                     {"until_publication": a})).args] == [a]
    assert [e["publication"] for e in result_of(call(subscriber, "wamp.subscription.get_events", [subscription],
                                                     {"from_time": "2023-11-14T22:13:21.000Z"})).args] == [b]
    assert [e["publication"] for e in result_of(call(subscriber, "wamp.subscription.get_events", [subscription],
                                                     {"before_time": "2023-11-14T22:13:21Z"})).args] == [a]


def test_session_lists_are_not_kept_authid_lists_filter_readers():
    router, realm, store, clock = setup()
    publisher, reader = join(router), join(router)
    publish(publisher, "t.kept", "to one session", eligible=[reader.session.session_id])
    only_others = publish(publisher, "t.kept", "not for the reader",
                          exclude_authid=[reader.session.authid])
    for_all = publish(publisher, "t.kept", "for all")
    assert realm.broker.history.skipped == 1
    page = result_of(call(reader, "relayrouter.history.read", ["t.kept"])).args[0]
    assert [e["publication"] for e in page["events"]] == [for_all]
    page = result_of(call(publisher, "relayrouter.history.read", ["t.kept"])).args[0]
    assert [e["publication"] for e in page["events"]] == [only_others, for_all]


def test_payload_passthru_events_are_kept_verbatim():
    router, realm, store, clock = setup()
    roles = {"publisher": {"features": {"payload_passthru_mode": True}}, "subscriber": {}, "caller": {}}
    publisher = join(router, roles=roles)
    reader = join(router)
    publisher.receive([PUBLISH, 1, {"acknowledge": True, "ppt_scheme": "x_e2e", "ppt_serializer": "cbor",
                                    "ppt_keyid": "k1"}, "t.kept", [b"\x00opaque\xff"]])
    publisher.take()
    event = result_of(call(reader, "relayrouter.history.read", ["t.kept"])).args[0]["events"][0]
    assert event["args"] == [b"\x00opaque\xff"]
    assert event["details"] == {"ppt_scheme": "x_e2e", "ppt_serializer": "cbor", "ppt_keyid": "k1"}


def test_errors_name_what_to_fix():
    router, realm, store, clock = setup()
    reader = join(router)
    error = call(reader, "relayrouter.history.read", ["t.nothing"])[0]
    assert error.error == "relayrouter.error.no_history" and "t.nothing" in error.args[0]
    error = call(reader, "relayrouter.history.read", ["t.kept"], {"after": 12345})[0]
    assert error.error == "relayrouter.error.unknown_publication" and "12345" in error.args[0]
    error = call(reader, "relayrouter.history.read", ["t.kept"], {"limit": 5000})[0]
    assert error.error == "wamp.error.invalid_argument" and "limit" in error.args[0]
    error = call(reader, "relayrouter.history.read", [], {"match": "fuzzy"})[0]
    assert error.error == "wamp.error.invalid_argument"
    error = call(reader, "wamp.subscription.get_events", [999])[0]
    assert error.error == "wamp.error.no_such_subscription"
    error = call(reader, "relayrouter.history.read", ["t..bad"])[0]
    assert error.error == "wamp.error.invalid_uri"


def test_event_history_is_announced_only_by_realms_that_keep_it():
    from relayrouter.testing import ALL_ROLES, connect

    router, realm, store, clock = setup()
    router.add_realm("plain")
    features = {}
    for name in ("realm1", "plain"):
        peer = connect(router)
        peer.receive([1, name, {"roles": ALL_ROLES}])
        welcome = peer.take()[-1]
        features[name] = welcome.marshal()[2]["roles"]["broker"]["features"]
    assert features["realm1"].get("event_history") is True
    assert "event_history" not in features["plain"]
    assert features["plain"]["event_retention"] is True
