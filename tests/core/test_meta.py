"""The meta API: meta procedures, meta events and testaments (WELCOME's features: test_features)."""

from autobahn.wamp import message as m

from relayrouter.testing import join, make_router
from tests.refusals import assert_refused
from tests.core.outside import retained


def setup(n=3):
    router = make_router()
    return router, [join(router) for _ in range(n)]


def call(peer, procedure, args=None, kwargs=None, request=100):
    peer.receive([48, request, {}, procedure, args or [], kwargs or {}])
    reply = peer.take()[-1]
    assert reply.request == request
    return reply


def result(peer, procedure, *args, **kwargs):
    reply = call(peer, procedure, list(args), kwargs)
    assert isinstance(reply, m.Result), reply.marshal()
    return reply.args[0] if reply.args else None


def subscribe(peer, topic, request=1, **options):
    peer.receive([32, request, options, topic])
    return peer.take()[-1].subscription


# ------------------------------------------------------------------ sessions


def test_session_count_list_and_get():
    router, (a, b, c) = setup()
    c.session.authrole = "admin"
    assert result(a, "wamp.session.count") == 3
    assert result(a, "wamp.session.count", ["admin"]) == 1
    assert sorted(result(a, "wamp.session.list")) == sorted(p.session.session_id for p in (a, b, c))
    assert result(a, "wamp.session.list", ["admin"]) == [c.session.session_id]
    details = result(a, "wamp.session.get", b.session.session_id)
    assert details["session"] == b.session.session_id
    assert details["authrole"] == "anonymous" and details["authmethod"] == "anonymous"
    assert details["transport"]["type"] == "memory"
    assert_refused(call(a, "wamp.session.get", [12345]), "wamp.error.no_such_session",
                   "no session 12345 in realm 'realm1'")
    assert_refused(call(a, "wamp.session.get", ["x"]), "wamp.error.invalid_argument",
                   "argument 1 (session) has the wrong type")


def test_session_kill_sends_goodbye_with_reason_and_message():
    router, (a, b, c) = setup()
    assert result(a, "wamp.session.kill", b.session.session_id,
                  reason="wamp.close.killed", message="bye") is None
    goodbye = b.last()
    assert goodbye.marshal() == [6, {"message": "bye"}, "wamp.close.killed"]
    assert b.session.session_id not in result(a, "wamp.session.list")
    result(a, "wamp.session.kill", c.session.session_id)
    assert c.last().marshal() == [6, {}, "wamp.close.normal"]  # the spec's default reason


def test_session_kill_refuses_self_and_bad_reasons():
    router, (a, b, _) = setup()
    assert_refused(call(a, "wamp.session.kill", [a.session.session_id]), "wamp.error.no_such_session",
                   "a session cannot kill itself; send GOODBYE instead")
    reply = call(a, "wamp.session.kill", [b.session.session_id], {"reason": "not a uri"})
    assert_refused(reply, "wamp.error.invalid_uri", "'not a uri' is not a valid close reason URI")


def test_kill_by_authid_and_authrole_spare_the_caller():
    router, peers = setup(4)
    a, b, c, d = peers
    for p in peers:
        p.session.authid = "same"
    c.session.authrole = d.session.authrole = "device"
    a.session.authrole = "device"
    assert result(a, "wamp.session.kill_by_authrole", "device") == 2
    assert isinstance(c.last(), m.Goodbye) and isinstance(d.last(), m.Goodbye)
    assert result(a, "wamp.session.kill_by_authid", "same") == 1
    assert isinstance(b.last(), m.Goodbye)
    assert result(a, "wamp.session.list") == [a.session.session_id]


def test_session_meta_events():
    router, (watcher, _, _) = setup()
    subscribe(watcher, "wamp.session.on_join", 1)
    subscribe(watcher, "wamp.session.on_leave", 2)
    newcomer = join(router)
    [on_join] = watcher.take()
    assert on_join.args[0]["session"] == newcomer.session.session_id
    assert on_join.args[0]["authrole"] == "anonymous"
    sid = newcomer.session.session_id
    newcomer.session.transport_lost()
    [on_leave] = watcher.take()
    assert on_leave.args == [sid, newcomer.session.authid, "anonymous"]


def test_meta_procedures_go_through_authorization():
    router, (a, _, _) = setup()
    realm = router.realms["realm1"]
    seen = []
    realm.authorize = lambda session, action, uri: seen.append((action, uri)) or "admins only"
    reply = call(a, "wamp.session.count")
    assert_refused(reply, "wamp.error.not_authorized", "admins only")
    assert seen == [("call", "wamp.session.count")]


def test_meta_procedures_cannot_be_registered():
    router, (a, _, _) = setup()
    a.receive([64, 1, {}, "wamp.session.count"])
    assert_refused(a.last(), "wamp.error.procedure_already_exists",
                   "'wamp.session.count' is a procedure the router implements")


# ------------------------------------------------------------- subscriptions


def test_subscription_meta_procedures():
    router, (a, b, c) = setup()
    exact = subscribe(a, "com.t")
    subscribe(b, "com.t")
    prefix = subscribe(b, "com.", 2, match="prefix")
    wild = subscribe(c, "com..x", 3, match="wildcard")
    assert result(c, "wamp.subscription.list") == {"exact": [exact], "prefix": [prefix], "wildcard": [wild]}
    assert result(c, "wamp.subscription.lookup", "com.t") == exact
    assert result(c, "wamp.subscription.lookup", "com.", {"match": "prefix"}) == prefix
    assert result(c, "wamp.subscription.lookup", "com.nothing") is None
    assert sorted(result(c, "wamp.subscription.match", "com.t")) == sorted([exact, prefix])
    assert result(c, "wamp.subscription.match", "org.t") is None
    details = result(c, "wamp.subscription.get", wild)
    assert details["id"] == wild and details["uri"] == "com..x" and details["match"] == "wildcard"
    assert details["created"].endswith("Z") and "T" in details["created"]
    assert result(c, "wamp.subscription.list_subscribers", exact) == [a.session.session_id, b.session.session_id]
    assert result(c, "wamp.subscription.count_subscribers", exact) == 2
    assert_refused(call(c, "wamp.subscription.get", [999]), "wamp.error.no_such_subscription",
                   "no subscription 999")


def test_subscription_meta_events_in_spec_order():
    router, (watcher, a, b) = setup()
    subscribe(watcher, "wamp.subscription.", 1, match="prefix")
    sub = subscribe(a, "com.t")
    on_create, on_subscribe = watcher.take()
    assert on_create.topic == "wamp.subscription.on_create"
    assert on_create.args[0] == a.session.session_id and on_create.args[1]["id"] == sub
    assert on_create.args[1]["uri"] == "com.t" and on_create.args[1]["match"] == "exact"
    assert (on_subscribe.topic, on_subscribe.args) == ("wamp.subscription.on_subscribe", [a.session.session_id, sub])
    subscribe(b, "com.t")
    assert [e.topic for e in watcher.take()] == ["wamp.subscription.on_subscribe"]
    b.receive([34, 9, sub])
    assert [e.topic for e in watcher.take()] == ["wamp.subscription.on_unsubscribe"]
    a.session.transport_lost()
    events = watcher.take()
    assert [e.topic for e in events] == ["wamp.subscription.on_unsubscribe", "wamp.subscription.on_delete"]
    assert events[1].args[1] == sub


def test_no_meta_events_about_meta_subscriptions():
    router, (watcher, a, _) = setup()
    subscribe(watcher, "wamp.subscription.on_create", 1)
    subscribe(a, "wamp.session.on_join")
    assert watcher.take() == []


def test_meta_events_build_nothing_without_subscribers(monkeypatch):
    from relayrouter.core import meta

    built = []
    monkeypatch.setattr(meta, "session_details", lambda s: built.append(s) or {})
    monkeypatch.setattr(meta, "subscription_details", lambda s: built.append(s) or {})
    router, (a, b, _) = setup()
    subscribe(a, "com.t")
    join(router).session.transport_lost()
    assert built == []


# ------------------------------------------------------------- registrations


def test_registration_meta_procedures_and_events():
    router, (watcher, a, b) = setup()
    subscribe(watcher, "wamp.registration.", 1, match="prefix")
    a.receive([64, 1, {"invoke": "roundrobin"}, "com.p"])
    reg = a.take()[-1].registration
    on_create, on_register = watcher.take()
    assert on_create.args[1] == {**on_create.args[1], "id": reg, "uri": "com.p", "match": "exact",
                                 "invoke": "roundrobin"}
    assert on_register.args == [a.session.session_id, reg]
    b.receive([64, 1, {"invoke": "roundrobin"}, "com.p"])
    b.receive([64, 2, {"match": "prefix"}, "com."])
    pfx = b.take()[-1].registration
    watcher.take()
    assert result(watcher, "wamp.registration.list") == {"exact": [reg], "prefix": [pfx], "wildcard": []}
    assert result(watcher, "wamp.registration.lookup", "com.", {"match": "prefix"}) == pfx
    assert result(watcher, "wamp.registration.match", "com.p") == reg
    assert result(watcher, "wamp.registration.match", "com.q") == pfx
    assert result(watcher, "wamp.registration.match", "org.q") is None
    assert result(watcher, "wamp.registration.get", reg)["invoke"] == "roundrobin"
    assert result(watcher, "wamp.registration.list_callees", reg) == [a.session.session_id, b.session.session_id]
    assert result(watcher, "wamp.registration.count_callees", reg) == 2
    assert_refused(call(watcher, "wamp.registration.count_callees", [0]), "wamp.error.no_such_registration",
                   "no registration 0")
    a.session.transport_lost()
    b.session.transport_lost()
    topics = [e.topic for e in watcher.take()]
    assert topics.count("wamp.registration.on_delete") == 2
    assert topics[-2:] == ["wamp.registration.on_unregister", "wamp.registration.on_delete"]


# ---------------------------------------------------------------- testaments


def test_testaments_are_published_when_the_session_is_lost_detached_first():
    router, (watcher, dying, _) = setup()
    subscribe(watcher, "com.gone")
    assert result(dying, "wamp.session.add_testament", "com.gone", ["destroyed"], {"k": 1}) is None
    result(dying, "wamp.session.add_testament", "com.gone", ["detached"], {}, scope="detached")
    dying.session.transport_lost()
    events = watcher.take()
    assert [(e.args, e.kwargs) for e in events] == [(["detached"], None), (["destroyed"], {"k": 1})]
    assert events[0].publisher is None


def test_testaments_fire_on_goodbye_and_kill_too():
    router, (watcher, a, b) = setup()
    subscribe(watcher, "com.gone")
    result(a, "wamp.session.add_testament", "com.gone", ["a"], {})
    result(b, "wamp.session.add_testament", "com.gone", ["b"], {})
    a.receive([6, {}, "wamp.close.normal"])
    assert [e.args for e in watcher.take()] == [["a"]]
    watcher.receive([48, 5, {}, "wamp.session.kill", [b.session.session_id]])
    event, reply = watcher.take()
    assert event.args == ["b"] and isinstance(reply, m.Result)


def test_flush_testaments_by_scope():
    router, (watcher, a, _) = setup()
    subscribe(watcher, "com.gone")
    result(a, "wamp.session.add_testament", "com.gone", ["x"], {})
    result(a, "wamp.session.add_testament", "com.gone", ["y"], {}, scope="detached")
    assert result(a, "wamp.session.flush_testaments") is None
    a.session.transport_lost()
    assert [e.args for e in watcher.take()] == [["y"]]


def test_testament_options_and_validation():
    router, (watcher, a, other) = setup()
    subscribe(watcher, "com.gone")
    subscribe(other, "com.gone")
    result(a, "wamp.session.add_testament", "com.gone", ["only you"], {},
           publish_options={"eligible": [watcher.session.session_id], "acknowledge": True, "retain": True})
    assert_refused(call(a, "wamp.session.add_testament", ["bad uri!", [], {}]), "wamp.error.invalid_uri",
                   "'bad uri!' is not a valid topic URI")
    reply = call(a, "wamp.session.add_testament", ["com.gone", [], {}], {"scope": "forever"})
    assert_refused(reply, "wamp.error.invalid_argument",
                   "scope must be 'detached' or 'destroyed', not 'forever'")
    a.session.transport_lost()
    assert [e.args for e in watcher.take()] == [["only you"]]
    assert other.take() == []
    assert retained(router, peer=watcher) == {"com.gone": ["only you"]}  # retained, for it alone
    assert retained(router, peer=other) == {}


def test_testament_topic_must_be_publishable():
    router, (a, _, _) = setup()
    realm = router.realms["realm1"]
    realm.authorize = lambda session, action, uri: "no publishing" if action == "publish" else None
    reply = call(a, "wamp.session.add_testament", ["com.gone", [], {}])
    assert_refused(reply, "wamp.error.not_authorized", "no publishing")
