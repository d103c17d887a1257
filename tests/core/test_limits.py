"""Per-session and per-realm limits: refused with a message naming the limit, counted."""

from autobahn.wamp import message as m

from relayrouter.core.limits import LIMIT_EXCEEDED, SessionLimits
from relayrouter.core.peer import TransportInfo
from relayrouter.core.realm import RealmPolicy
from relayrouter.core.router import Router
from relayrouter.testing import ALL_ROLES, FakeClock, MemoryPeer, join


def router_with(**limits):
    router = Router(FakeClock())
    router.add_realm("realm1", policy=RealmPolicy(limits=SessionLimits(**limits)))
    return router


def refused(peer, name):
    reply = peer.take()[-1]
    assert isinstance(reply, m.Error), reply
    assert reply.error == LIMIT_EXCEEDED
    assert reply.args[0].startswith(f"{name}:"), reply.args
    return reply


def test_max_subscriptions_per_session():
    router = router_with(max_subscriptions=2)
    peer = join(router)
    realm = router.realms["realm1"]
    peer.receive([32, 1, {}, "com.a"])
    peer.receive([32, 2, {}, "com.b"])
    peer.receive([32, 3, {}, "com.a"])  # already subscribed: still SUBSCRIBED
    assert [type(x) for x in peer.take()] == [m.Subscribed] * 3
    peer.receive([32, 4, {}, "com.c"])
    refused(peer, "max_subscriptions")
    assert realm.counters["limit.max_subscriptions"] == 1
    peer.receive([34, 5, 1])  # room again after UNSUBSCRIBE
    peer.receive([32, 6, {}, "com.c"])
    assert isinstance(peer.take()[-1], m.Subscribed)


def test_max_registrations_per_session():
    router = router_with(max_registrations=1)
    peer = join(router)
    peer.receive([64, 1, {}, "com.a"])
    peer.receive([64, 2, {}, "com.b"])
    refused(peer, "max_registrations")
    assert router.realms["realm1"].counters["limit.max_registrations"] == 1


def test_max_pending_calls_per_caller():
    router = router_with(max_pending_calls=2)
    callee, caller = join(router), join(router)
    callee.receive([64, 1, {}, "com.slow"])
    callee.take()
    for request in (1, 2, 3):
        caller.receive([48, request, {}, "com.slow"])
    error = refused(caller, "max_pending_calls")
    assert error.request == 3
    assert len(callee.take()) == 2
    callee.receive([70, 1, {}, ["done"]])
    caller.take()
    caller.receive([48, 4, {}, "com.slow"])
    assert caller.take() == [] and len(callee.take()) == 1


def test_rate_limit_refuses_requests_and_drops_unacknowledged_publishes():
    router = router_with(rate=10, burst=5)
    realm = router.realms["realm1"]
    peer, other = join(router), join(router)
    for request in range(1, 6):
        peer.receive([16, request, {"acknowledge": True}, "com.t"])
    assert [type(x) for x in peer.take()] == [m.Published] * 5
    peer.receive([16, 6, {"acknowledge": True}, "com.t"])
    refused(peer, "rate")
    peer.receive([16, 7, {}, "com.t"])  # no acknowledge: dropped, counted
    assert peer.take() == []
    assert realm.counters["limit.rate"] == 2
    other.receive([16, 1, {"acknowledge": True}, "com.t"])  # other sessions unaffected
    assert isinstance(other.take()[-1], m.Published)
    router.clock.advance(0.5)  # five tokens back
    peer.receive([32, 8, {}, "com.t"])
    assert isinstance(peer.take()[-1], m.Subscribed)


def test_rate_limit_never_refuses_answers_or_releases():
    router = router_with(rate=1, burst=2)
    callee, caller = join(router), join(router)
    callee.receive([64, 1, {}, "com.p"])
    callee.receive([32, 2, {}, "com.t"])
    callee.take()
    caller.receive([48, 1, {}, "com.p"])
    [invocation] = callee.take()
    callee.receive([70, invocation.request, {}, ["ok"]])  # YIELD over the rate: delivered
    assert caller.take()[-1].args == ["ok"]
    callee.receive([34, 3, 1])  # UNSUBSCRIBE too
    assert isinstance(callee.take()[-1], m.Unsubscribed)
    callee.receive([6, {}, "wamp.close.normal"])
    assert isinstance(callee.take()[-1], m.Goodbye)


def test_max_sessions_per_realm_aborts_the_join():
    router = router_with(max_sessions=2)
    join(router), join(router)
    peer = MemoryPeer()
    peer.session = router.session(peer, TransportInfo())
    peer.receive([1, "realm1", {"roles": ALL_ROLES}])
    [abort] = peer.take()
    assert isinstance(abort, m.Abort) and abort.reason == LIMIT_EXCEEDED
    assert abort.message.startswith("max_sessions:")
    assert router.realms["realm1"].counters["limit.max_sessions"] == 1


def test_max_sessions_per_address():
    router = router_with(max_sessions_per_address=2)

    def attempt(address):
        peer = MemoryPeer()
        peer.session = router.session(peer, TransportInfo(kind="rawsocket", peer=f"tcp4:{address}"))
        peer.receive([1, "realm1", {"roles": ALL_ROLES}])
        return peer, peer.take()[-1]

    first, _ = attempt("10.0.0.1:1000")
    second, _ = attempt("10.0.0.1:1001")
    _, abort = attempt("10.0.0.1:1002")
    assert isinstance(abort, m.Abort) and "max_sessions_per_address" in abort.message
    assert "tcp4:10.0.0.1" in abort.message
    _, welcome = attempt("10.0.0.2:1000")  # another host
    assert isinstance(welcome, m.Welcome)
    first.session.transport_lost()  # a place frees up
    last, welcome = attempt("10.0.0.1:1003")
    assert isinstance(welcome, m.Welcome)
    _, abort = attempt("10.0.0.1:1004")  # two again: full
    assert isinstance(abort, m.Abort) and "max_sessions_per_address" in abort.message
    for peer in (second, last):
        peer.session.transport_lost()
    # every place of the address is free again: two more, and no third
    assert [type(attempt(f"10.0.0.1:{port}")[1]) for port in (2000, 2001, 2002)] == \
        [m.Welcome, m.Welcome, m.Abort]


def test_zero_means_no_limit():
    router = router_with(max_subscriptions=0, rate=0)
    peer = join(router)
    for request in range(1, 300):
        peer.receive([32, request, {}, f"com.t{request}"])
    assert all(isinstance(x, m.Subscribed) for x in peer.take())
