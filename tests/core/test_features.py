"""What WELCOME announces is what works: every feature the router announces
has a probe here that drives the core and checks the feature's behaviour, and
the announcement must name exactly the features probed.

A feature announced without a probe, a probed feature not announced, and an
announced feature whose behaviour is broken each fail a test."""

import pytest
from autobahn.wamp import message as m

from relayrouter.testing import FakeClock, connect, join, make_router

PPT = {"ppt_scheme": "wamp.eth", "ppt_serializer": "cbor"}


def _feature_roles(*features):
    return {role: {"features": dict.fromkeys(features, True)}
            for role in ("caller", "callee", "publisher", "subscriber")}


def _pair(**details):
    router = make_router(clock=FakeClock())
    return router, join(router, **details), join(router, **details)


def _subscribed(peer, topic, request=1, **options):
    peer.receive([32, request, options, topic])
    [subscribed] = peer.take()
    assert isinstance(subscribed, m.Subscribed), subscribed.marshal()
    return subscribed.subscription


def _registered(peer, procedure, request=1, **options):
    peer.receive([64, request, options, procedure])
    [registered] = peer.take()
    assert isinstance(registered, m.Registered), registered.marshal()
    return registered.registration


def _result(peer, procedure, *args, request=100):
    peer.receive([48, request, {}, procedure, list(args)])
    [reply] = peer.take()
    assert isinstance(reply, m.Result), reply.marshal()
    return reply.args[0] if reply.args else None


# ------------------------------------------------------------------ broker


def pattern_based_subscription():
    _, sub, pub = _pair()
    _subscribed(sub, "com.a.", match="prefix")
    _subscribed(sub, "com..c", match="wildcard", request=2)
    pub.receive([16, 1, {}, "com.a.c", [1]])
    assert sorted(e.topic for e in sub.take()) == ["com.a.c", "com.a.c"]


def publisher_exclusion():
    _, pub, _ = _pair()
    _subscribed(pub, "com.t")
    pub.receive([16, 1, {}, "com.t", [1]])
    assert pub.take() == []
    pub.receive([16, 2, {"exclude_me": False}, "com.t", [2]])
    assert [e.args for e in pub.take()] == [[2]]


def publisher_identification():
    _, sub, pub = _pair()
    _subscribed(sub, "com.t")
    pub.receive([16, 1, {"disclose_me": True}, "com.t"])
    [event] = sub.take()
    assert event.publisher == pub.session.session_id


def subscriber_blackwhite_listing():
    router, a, b = _pair()
    pub = join(router)
    for peer in (a, b):
        _subscribed(peer, "com.t")
    pub.receive([16, 1, {"eligible": [a.session.session_id]}, "com.t", [1]])
    pub.receive([16, 2, {"exclude": [a.session.session_id]}, "com.t", [2]])
    assert ([e.args for e in a.take()], [e.args for e in b.take()]) == ([[1]], [[2]])


def broker_session_meta_api():
    router, watcher, _ = _pair()
    _subscribed(watcher, "wamp.session.on_join")
    newcomer = join(router)
    [event] = watcher.take()
    assert event.args[0]["session"] == newcomer.session.session_id


def subscription_meta_api():
    _, sub, other = _pair()
    subscription = _subscribed(sub, "com.t")
    assert _result(other, "wamp.subscription.lookup", "com.t") == subscription
    assert _result(other, "wamp.subscription.list_subscribers", subscription) == [sub.session.session_id]


def event_retention():
    _, pub, sub = _pair()
    pub.receive([16, 1, {"retain": True}, "com.t", [21]])
    sub.receive([32, 1, {"get_retained": True}, "com.t"])
    subscribed, event = sub.take()
    assert event.args == [21] and event.retained is True


def broker_payload_passthru_mode():
    _, sub, pub = _pair(roles=_feature_roles("payload_passthru_mode"))
    _subscribed(sub, "com.t")
    pub.receive([16, 1, dict(PPT), "com.t", [b"\x00sealed"]])
    [event] = sub.take()
    assert event.marshal()[3] == PPT and event.args == [b"\x00sealed"]


# ------------------------------------------------------------------ dealer


def pattern_based_registration():
    _, callee, caller = _pair()
    _registered(callee, "com.api.", match="prefix")
    caller.receive([48, 1, {}, "com.api.get", []])
    [invocation] = callee.take()
    assert invocation.procedure == "com.api.get"


def shared_registration():
    router, a, b = _pair()
    caller = join(router)
    for peer in (a, b):
        _registered(peer, "com.shared", invoke="roundrobin")
    got = []
    for request in (1, 2):
        caller.receive([48, request, {}, "com.shared", []])
        got.append(bool(a.take()))
        b.take()
    assert got == [True, False]


def caller_identification():
    _, callee, caller = _pair()
    _registered(callee, "com.who")
    caller.receive([48, 1, {"disclose_me": True}, "com.who", []])
    [invocation] = callee.take()
    assert invocation.caller == caller.session.session_id


def progressive_call_results():
    _, callee, caller = _pair()
    _registered(callee, "com.count")
    caller.receive([48, 1, {"receive_progress": True}, "com.count", []])
    [invocation] = callee.take()
    callee.receive([70, invocation.request, {"progress": True}, [1]])
    callee.receive([70, invocation.request, {}, [2]])
    assert [(bool(r.progress), r.args) for r in caller.take()] == [(True, [1]), (False, [2])]


def call_canceling():
    _, callee, caller = _pair(roles=_feature_roles("call_canceling"))
    _registered(callee, "com.slow")
    caller.receive([48, 1, {}, "com.slow", []])
    [invocation] = callee.take()
    caller.receive([49, 1, {"mode": "killnowait"}])
    [interrupt] = callee.take()
    [error] = caller.take()
    assert interrupt.request == invocation.request and error.error == "wamp.error.canceled"


def call_timeout():
    router, callee, caller = _pair()
    _registered(callee, "com.slow")
    caller.receive([48, 1, {"timeout": 500}, "com.slow", []])
    callee.take()
    router.clock.advance(0.4)
    assert caller.take() == []
    router.clock.advance(0.2)
    [error] = caller.take()
    assert error.error == "wamp.error.canceled"


def dealer_session_meta_api():
    router, a, _ = _pair()
    assert _result(a, "wamp.session.count") == 2
    assert sorted(_result(a, "wamp.session.list")) == sorted(s.session_id for s in router.sessions())


def registration_meta_api():
    _, callee, other = _pair()
    registration = _registered(callee, "com.p")
    assert _result(other, "wamp.registration.lookup", "com.p") == registration
    assert _result(other, "wamp.registration.list_callees", registration) == [callee.session.session_id]


def testament_meta_api():
    router, dying, watcher = _pair()
    _subscribed(watcher, "com.gone")
    _result(dying, "wamp.session.add_testament", "com.gone", ["bye"], {})
    dying.session.transport_lost()
    assert [e.args for e in watcher.take()] == [["bye"]]


def dealer_payload_passthru_mode():
    _, callee, caller = _pair(roles=_feature_roles("payload_passthru_mode"))
    _registered(callee, "com.rpc")
    caller.receive([48, 1, dict(PPT), "com.rpc", [b"\x00sealed"]])
    [invocation] = callee.take()
    assert invocation.marshal()[3] == PPT and invocation.args == [b"\x00sealed"]


PROBES = {
    "broker": {
        "pattern_based_subscription": pattern_based_subscription,
        "publisher_exclusion": publisher_exclusion,
        "publisher_identification": publisher_identification,
        "subscriber_blackwhite_listing": subscriber_blackwhite_listing,
        "session_meta_api": broker_session_meta_api,
        "subscription_meta_api": subscription_meta_api,
        "event_retention": event_retention,
        "payload_passthru_mode": broker_payload_passthru_mode,
    },
    "dealer": {
        "pattern_based_registration": pattern_based_registration,
        "shared_registration": shared_registration,
        "caller_identification": caller_identification,
        "progressive_call_results": progressive_call_results,
        "call_canceling": call_canceling,
        "call_timeout": call_timeout,
        "session_meta_api": dealer_session_meta_api,
        "registration_meta_api": registration_meta_api,
        "testament_meta_api": testament_meta_api,
        "payload_passthru_mode": dealer_payload_passthru_mode,
    },
}


def announced() -> dict:
    router = make_router()
    peer = connect(router)
    peer.receive([1, "realm1", {"roles": {"caller": {}}}])
    [welcome] = peer.take()
    return welcome.marshal()[2]["roles"]


@pytest.mark.parametrize("role", sorted(PROBES))
def test_welcome_announces_exactly_the_probed_features(role):
    assert announced()[role] == {"features": dict.fromkeys(PROBES[role], True)}


@pytest.mark.parametrize("role, feature", [(r, f) for r in sorted(PROBES) for f in PROBES[r]])
def test_each_announced_feature_works(role, feature):
    PROBES[role][feature]()
