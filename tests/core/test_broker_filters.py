"""Filtered subscriptions: SUBSCRIBE.Options._fields / _where."""

from autobahn.wamp import message as m

from relayrouter.testing import join, make_router

MSG = {"metadata": {"deviceid": "d1", "tenant": "t"}, "attrs": {"temperature": 21, "rain": 3}}


def setup(n=3):
    router = make_router()
    return router, [join(router) for _ in range(n)]


def subscribe(peer, request, topic="device-data", **options):
    peer.receive([32, request, options, topic])
    [answer] = peer.take()
    return answer


def test_filtered_and_plain_subscribers_get_their_own_events():
    router, (plain, filtered, publisher) = setup()
    plain_sub = subscribe(plain, 1).subscription
    filt_sub = subscribe(filtered, 1, _fields="attrs/temperature", _where="attrs.temperature=gt:20;").subscription
    assert plain_sub != filt_sub
    publisher.receive([16, 1, {}, "device-data", [MSG]])
    [plain_event], [filt_event] = plain.take(), filtered.take()
    assert plain_event.args == [MSG] and plain_event.subscription == plain_sub
    assert filt_event.args == [{"attrs": {"temperature": 21}}] and filt_event.subscription == filt_sub
    assert plain_event.publication == filt_event.publication
    cold = dict(MSG, attrs={"temperature": 5})
    publisher.receive([16, 2, {}, "device-data", [cold]])
    assert [e.args for e in plain.take()] == [[cold]]
    assert filtered.take() == []
    assert router.realms["realm1"].counters["filtered_out"] == 1


def test_plain_event_object_is_untouched_by_filtered_neighbours():
    router, (a, b, c) = setup()
    subscribe(a, 1)
    subscribe(b, 1, _fields="attrs")
    c.receive([16, 1, {}, "device-data", [MSG], {"k": 1}])
    [ea], [eb] = a.take(), b.take()
    assert ea.args == [MSG] and ea.kwargs == {"k": 1} and ea.args[0] is MSG
    assert eb.args == [{"attrs": MSG["attrs"]}] and eb.kwargs == {"k": 1}


def test_equal_filters_share_one_variant_and_one_event():
    router, (a, b, c) = setup()
    sa = subscribe(a, 1, _fields="attrs,metadata", _where="attrs.rain=lt:5;").subscription
    sb = subscribe(b, 1, _fields="metadata,attrs", _where="attrs.rain=lt:5;").subscription
    assert sa == sb
    c.receive([16, 1, {}, "device-data", [MSG]])
    [ea], [eb] = a.take(), b.take()
    assert ea is eb


def test_filter_on_kwargs_when_first_argument_is_not_an_object():
    router, (a, b, _) = setup()
    subscribe(a, 1, _where="attrs.rain=3;", _fields="attrs/rain")
    b.receive([16, 1, {}, "device-data", [], MSG])
    [event] = a.take()
    assert event.kwargs == {"attrs": {"rain": 3}}


def test_malformed_filters_get_precise_errors_and_nothing_is_created():
    router, (a, _, _) = setup()
    cases = [
        ({"_where": "x=foo:1;"}, "relayrouter.error.filter.invalid_operator", "unknown operator 'foo'"),
        ({"_where": "x=1"}, "relayrouter.error.filter.invalid_syntax", "missing ';'"),
        ({"_where": 'x=in:"\\q";'}, "relayrouter.error.filter.invalid_escape_value", "unsupported escape"),
        ({"_where": "x=gt:1,2;"}, "relayrouter.error.filter.invalid_operator_arity", "takes exactly 1 value"),
        ({"_where": "x=gt:z;"}, "relayrouter.error.filter.invalid_value", "needs a number"),
        ({"_fields": "a("}, "relayrouter.error.filter.invalid_syntax", "fields: empty field name"),
        ({"_fields": 3}, "relayrouter.error.filter.invalid_syntax", "_fields must be a string, not int"),
    ]
    for request, (options, uri, words) in enumerate(cases, 1):
        answer = subscribe(a, request, **options)
        assert isinstance(answer, m.Error) and answer.error == uri, (options, answer)
        assert words in answer.args[0] and answer.args[0].startswith("cannot subscribe: ")
    broker = router.realms["realm1"].broker
    assert not broker.subscriptions_by_id and not broker.subscriptions.match("device-data")


def test_unsubscribe_cleans_variants_and_base():
    router, (a, b, c) = setup()
    sa = subscribe(a, 1, _fields="attrs").subscription
    sb = subscribe(b, 1).subscription
    broker = router.realms["realm1"].broker
    assert set(broker.subscriptions_by_id) == {sa, sb}
    a.receive([34, 2, sa])
    assert isinstance(a.take()[0], m.Unsubscribed)
    assert set(broker.subscriptions_by_id) == {sb}
    subscribe(a, 3, _fields="attrs")
    b.receive([34, 4, sb])
    b.take()
    base = broker.subscriptions.get("device-data", "exact")
    assert base is not None and not base.subscribers and len(base.variants) == 1
    c.receive([16, 1, {}, "device-data", [MSG]])
    assert [e.args for e in a.take()] == [[{"attrs": MSG["attrs"]}]]
    a.receive([1 + 5, {}, "wamp.close.normal"])  # GOODBYE: the session's subscriptions go
    assert not broker.subscriptions_by_id
    assert broker.subscriptions.get("device-data", "exact") is None


def test_prefix_match_with_filter_carries_topic():
    router, (a, b, _) = setup()
    subscribe(a, 1, topic="tenant", match="prefix", _fields="attrs/rain")
    b.receive([16, 1, {}, "tenant.device-data", [MSG]])
    [event] = a.take()
    assert event.topic == "tenant.device-data" and event.args == [{"attrs": {"rain": 3}}]


def test_payload_passthru_events_never_reach_filtered_subscribers():
    router = make_router()
    a = join(router)
    pub = join(router, roles={"publisher": {"features": {"payload_passthru_mode": True}}})
    subscribe(a, 1, _fields="attrs")
    pub.receive([16, 1, {"ppt_scheme": "mqtt"}, "device-data", [b"opaque"]])
    assert a.take() == []
    assert router.realms["realm1"].counters["filtered_opaque"] == 1


def test_retained_event_is_filtered_for_a_filtered_subscriber():
    router, (a, b, c) = setup()
    c.receive([16, 1, {"retain": True}, "device-data", [MSG]])
    a.receive([32, 1, {"_fields": "metadata/deviceid", "get_retained": True}, "device-data"])
    subscribed, event = a.take()
    assert isinstance(subscribed, m.Subscribed)
    assert event.args == [{"metadata": {"deviceid": "d1"}}] and event.retained
    assert event.subscription == subscribed.subscription
    assert isinstance(subscribe(b, 1, _where="attrs.rain=gt:100;", get_retained=True), m.Subscribed)


def test_unknown_custom_options_are_ignored():
    router, (a, b, _) = setup()
    assert isinstance(subscribe(a, 1, _other_feature="x"), m.Subscribed)
