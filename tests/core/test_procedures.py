"""Router procedures: one registry, one handler signature, answers now or later."""

import pytest
from autobahn.wamp import message as m
from autobahn.wamp.serializer import JsonObjectSerializer

from relayrouter.core.procedures import PENDING, ProcedureError, ProcedureRegistry
from relayrouter.core.router import RouterObserver
from relayrouter.testing import ALL_ROLES, FakeClock, connect, join, make_router

CANCELING = {"features": {"call_canceling": True, "progressive_call_results": True}}
ROLES = {**ALL_ROLES, "caller": CANCELING}


class Refusing:
    def __init__(self, refused_uri):
        self.refused_uri = refused_uri

    def authorize(self, session, action, uri, match="exact"):
        return f"no {action} on '{uri}'" if uri == self.refused_uri else None

    def discloses(self, session, kind, uri):
        return None

    def forget(self, session):
        pass


class Recorder(RouterObserver):
    def __init__(self):
        self.internal = []

    def internal_error(self, session, error):
        self.internal.append(error)


@pytest.fixture
def world():
    clock = FakeClock()
    router = make_router(clock=clock)
    router.observer = Recorder()
    realm = router.realms["realm1"]
    peer = join(router, serializer=JsonObjectSerializer(), roles=ROLES)
    return clock, router, realm, peer


def call(peer, uri, request=1, args=(), kwargs=None, **options):
    peer.receive([48, request, options, uri, list(args), kwargs or {}])
    return peer.take()


def test_a_returned_value_is_the_result(world):
    clock, router, realm, peer = world
    realm.procedures.add("com.example.echo", lambda c: {"args": c.args, "kwargs": c.kwargs,
                                                         "caller": c.session.session_id})
    realm.procedures.add("com.example.nothing", lambda c: None)
    [result] = call(peer, "com.example.echo", args=[1, "x"], kwargs={"k": True})
    assert result.marshal() == [50, 1, {}, [{"args": [1, "x"], "kwargs": {"k": True},
                                             "caller": peer.session.session_id}]]
    [result] = call(peer, "com.example.nothing", request=2)
    assert result.marshal() == [50, 2, {}]


def test_procedure_error_is_an_error_with_message_args_and_kwargs(world):
    clock, router, realm, peer = world

    def refuse(c):
        raise ProcedureError("com.example.error.full", "the box is full", 10, limit=10)

    realm.procedures.add("com.example.put", refuse)
    [error] = call(peer, "com.example.put")
    assert error.marshal() == [8, 48, 1, {}, "com.example.error.full", ["the box is full", 10], {"limit": 10}]
    assert peer.session.session_id in realm.sessions


def test_authorized_like_any_call_before_the_handler_runs(world):
    clock, router, realm, peer = world
    ran = []
    realm.procedures.add("com.example.secret", lambda c: ran.append(c) or 1)
    realm.authorizer = Refusing("com.example.secret")
    [error] = call(peer, "com.example.secret")
    assert error.error == "wamp.error.not_authorized" and "com.example.secret" in error.args[0]
    assert ran == []


def test_clients_cannot_register_a_router_procedure(world):
    clock, router, realm, peer = world
    realm.procedures.add("com.example.mine", lambda c: "router")
    peer.receive([64, 5, {}, "com.example.mine"])
    [error] = peer.take()
    assert error.error == "wamp.error.procedure_already_exists"
    peer.receive([64, 6, {"match": "prefix"}, "com.example."])
    assert isinstance(peer.take()[0], m.Registered)
    [result] = call(peer, "com.example.mine")
    assert result.args == ["router"]  # the pattern registration does not shadow it


def test_registry_refuses_duplicates_and_bad_uris():
    registry = ProcedureRegistry()
    registry.add("com.example.a", lambda c: None)
    with pytest.raises(ValueError, match="already added"):
        registry.add("com.example.a", lambda c: None)
    with pytest.raises(ValueError, match="not a valid URI"):
        registry.add("com..a", lambda c: None)
    assert "com.example.a" in registry and registry.uris() == ["com.example.a"]


def test_a_failing_handler_answers_internal_error_and_keeps_the_session(world):
    clock, router, realm, peer = world
    realm.procedures.add("com.example.buggy", lambda c: 1 / 0)
    [error] = call(peer, "com.example.buggy")
    assert error.error == "relayrouter.error.internal" and "com.example.buggy" in error.args[0]
    assert [type(e) for e in router.observer.internal] == [ZeroDivisionError]
    assert peer.session.session_id in realm.sessions and not peer.closed


# ------------------------------------------------------------ answering later


@pytest.fixture
def pending(world):
    clock, router, realm, peer = world
    calls = []
    reasons = []

    def handler(c):
        calls.append(c)
        c.on_cancel(reasons.append)
        return c.PENDING

    realm.procedures.add("com.example.later", handler)
    return clock, realm, peer, calls, reasons


def test_pending_call_answers_later_with_progress_first(pending):
    clock, realm, peer, calls, reasons = pending
    assert call(peer, "com.example.later", receive_progress=True) == []
    [c] = calls
    assert c.receive_progress and not c.done
    assert c.progress({"n": 1}) and c.progress({"n": 2}, more=True)
    assert c.result("end")
    assert [msg.marshal() for msg in peer.take()] == [
        [50, 1, {"progress": True}, [{"n": 1}]],
        [50, 1, {"progress": True}, [{"n": 2}], {"more": True}],
        [50, 1, {}, ["end"]],
    ]
    assert c.done and not c.result("again") and not c.error("x.y", "late") and peer.take() == []
    assert reasons == []


def test_progress_is_not_sent_to_a_caller_that_did_not_ask(pending):
    clock, realm, peer, calls, reasons = pending
    call(peer, "com.example.later")
    [c] = calls
    assert not c.progress(1)
    c.error("com.example.error.gone", "it went away")
    [error] = peer.take()
    assert error.marshal() == [8, 48, 1, {}, "com.example.error.gone", ["it went away"]]


def test_a_pending_call_holds_its_request_id(pending):
    clock, realm, peer, calls, reasons = pending
    assert call(peer, "com.example.later", request=9) == []
    [abort] = call(peer, "com.example.later", request=9)
    assert isinstance(abort, m.Abort) and "already in use" in abort.message


def test_cancel_tells_the_handler_and_answers_canceled(pending):
    clock, realm, peer, calls, reasons = pending
    call(peer, "com.example.later", request=3)
    peer.receive([49, 3, {"mode": "kill"}])
    [error] = peer.take()
    assert error.marshal()[:5] == [8, 48, 3, {}, "wamp.error.canceled"]
    assert reasons == ["canceled"]
    assert not calls[0].result("too late") and peer.take() == []


def test_handler_may_answer_its_own_cancel(world):
    clock, router, realm, peer = world

    def handler(c):
        c.on_cancel(lambda reason: c.result({"stopped": reason}))
        return PENDING

    realm.procedures.add("com.example.take", handler)
    call(peer, "com.example.take", request=4)
    peer.receive([49, 4, {}])
    [result] = peer.take()
    assert result.marshal() == [50, 4, {}, [{"stopped": "canceled"}]]


def test_timeout_ends_a_pending_call(pending):
    clock, realm, peer, calls, reasons = pending
    call(peer, "com.example.later", request=5, timeout=1500)
    clock.advance(1.4)
    assert peer.take() == [] and reasons == []
    clock.advance(0.2)
    [error] = peer.take()
    assert error.error == "wamp.error.canceled" and "timed out" in error.args[0]
    assert reasons == ["timeout"]


def test_an_answer_stops_the_timeout(pending):
    clock, realm, peer, calls, reasons = pending
    call(peer, "com.example.later", request=5, timeout=1000)
    calls[0].result(1)
    peer.take()
    clock.advance(5)
    assert peer.take() == [] and reasons == [] and clock.timers == []


def test_caller_leaving_ends_the_call_and_a_late_answer_reaches_nobody(pending):
    clock, realm, peer, calls, reasons = pending
    call(peer, "com.example.later", request=6)
    peer.receive([6, {}, "wamp.close.normal"])  # GOODBYE
    peer.take()
    assert reasons == ["caller_left"] and calls[0].done
    peer.receive([1, "realm1", {"roles": ROLES}])  # a new session on the same connection
    peer.take()
    assert not calls[0].result("stale") and peer.take() == []


def test_transport_lost_ends_pending_calls(pending):
    clock, realm, peer, calls, reasons = pending
    call(peer, "com.example.later", request=1)
    call(peer, "com.example.later", request=2)
    peer.session.transport_lost()
    assert reasons == ["caller_left", "caller_left"]


def test_pending_router_calls_count_against_max_pending_calls():
    from relayrouter.core.limits import SessionLimits
    from relayrouter.core.realm import RealmPolicy

    router = make_router()
    realm = router.realms["realm1"]
    realm.policy = RealmPolicy(limits=SessionLimits(max_pending_calls=2))
    realm.procedures.add("com.example.later", lambda c: PENDING)
    peer = connect(router)
    peer.receive([1, "realm1", {"roles": ALL_ROLES}])
    peer.take()
    call(peer, "com.example.later", request=1)
    call(peer, "com.example.later", request=2)
    [error] = call(peer, "com.example.later", request=3)
    assert error.error == "relayrouter.error.limit_exceeded" and "max_pending_calls" in error.args[0]
