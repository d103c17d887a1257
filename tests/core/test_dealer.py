from autobahn.wamp import message as m

from relayrouter.core.dealer import Registration
from relayrouter.testing import join, make_router
from tests.refusals import assert_refused
from tests.core.outside import registrations


def setup(n=3):
    router = make_router()
    return router, [join(router) for _ in range(n)]


def register(peer, uri, request=1, **options):
    peer.receive([64, request, options, uri])
    reply = peer.take()[-1]
    assert isinstance(reply, m.Registered), reply.marshal()
    return reply.registration


def test_call_invocation_yield_result_with_request_ids():
    router, (callee, caller, _) = setup()
    reg = register(callee, "com.p")
    caller.receive([48, 7, {}, "com.p", [1], {"k": 2}])
    [inv] = callee.take()
    assert inv.registration == reg and inv.args == [1] and inv.kwargs == {"k": 2}
    callee.receive([70, inv.request, {}, ["r"]])
    [result] = caller.take()
    assert result.request == 7 and result.args == ["r"]
    assert callee.session.invocations == {} and caller.session.calls == {}


def test_invocation_ids_are_per_callee_sequential():
    router, (c1, c2, caller) = setup()
    register(c1, "com.a")
    register(c2, "com.b")
    caller.receive([48, 1, {}, "com.a"])
    caller.receive([48, 2, {}, "com.b"])
    caller.receive([48, 3, {}, "com.a"])
    assert [i.request for i in c1.take()] == [1, 2]
    assert [i.request for i in c2.take()] == [1]


def test_error_from_callee_reaches_caller():
    router, (callee, caller, _) = setup()
    register(callee, "com.p")
    caller.receive([48, 3, {}, "com.p"])
    inv = callee.take()[0]
    callee.receive([8, 68, inv.request, {}, "com.app.failed", ["why"], {"code": 1}])
    [err] = caller.take()
    assert err.marshal() == [8, 48, 3, {}, "com.app.failed", ["why"], {"code": 1}]


def test_yield_from_another_session_is_ignored():
    router, (callee, caller, intruder) = setup()
    register(callee, "com.p")
    caller.receive([48, 3, {}, "com.p"])
    inv = callee.take()[0]
    intruder.receive([70, inv.request, {}, ["forged"]])
    assert caller.take() == []
    callee.receive([70, inv.request, {}, ["real"]])
    assert caller.take()[0].args == ["real"]


def test_progressive_results():
    router, (callee, caller, _) = setup()
    register(callee, "com.p")
    caller.receive([48, 3, {"receive_progress": True}, "com.p"])
    inv = callee.take()[0]
    assert inv.receive_progress is True
    callee.receive([70, inv.request, {"progress": True}, [1]])
    callee.receive([70, inv.request, {"progress": True}, [2]])
    callee.receive([70, inv.request, {}, [3]])
    results = caller.take()
    assert [(r.args, bool(r.progress)) for r in results] == [([1], True), ([2], True), ([3], False)]


def test_shared_registration_policies():
    router, peers = setup(5)
    c1, c2, c3, caller, late = peers
    for c in (c1, c2, c3):
        register(c, "com.shared", invoke="roundrobin")
    for i in range(6):
        caller.receive([48, i + 1, {}, "com.shared"])
    assert [len(c.take()) for c in (c1, c2, c3)] == [2, 2, 2]
    late.receive([64, 9, {"invoke": "first"}, "com.shared"])
    assert late.last().error == "wamp.error.procedure_already_exists"
    assert "roundrobin" in late.last().args[0]


def test_first_last_and_single():
    router, (c1, c2, caller) = setup()
    register(c1, "com.f", invoke="first")
    register(c2, "com.f", invoke="first")
    register(c1, "com.l", request=2, invoke="last")
    register(c2, "com.l", request=2, invoke="last")
    caller.receive([48, 1, {}, "com.f"])
    caller.receive([48, 2, {}, "com.l"])
    assert len(c1.take()) == 1 and len(c2.take()) == 1
    register(c1, "com.s", request=3)
    c2.receive([64, 4, {"invoke": "roundrobin"}, "com.s"])
    assert_refused(c2.last(), "wamp.error.procedure_already_exists",
                   "'com.s' is already registered by another callee")


def test_when_a_shared_callee_leaves_the_others_take_over():
    router, (c1, c2, caller) = setup()
    register(c1, "com.s", invoke="roundrobin")
    register(c2, "com.s", invoke="roundrobin")
    c1.session.transport_lost()
    for i in range(3):
        caller.receive([48, i + 1, {}, "com.s"])
    assert len(c2.take()) == 3


def test_pattern_registration_precedence_and_procedure_detail():
    router, (exact, prefix, caller) = setup()
    register(exact, "com.app.do")
    register(prefix, "com.app.", match="prefix")
    caller.receive([48, 1, {}, "com.app.do"])
    caller.receive([48, 2, {}, "com.app.other"])
    [inv_exact], [inv_prefix] = exact.take(), prefix.take()
    assert inv_exact.procedure is None
    assert inv_prefix.procedure == "com.app.other"


def test_caller_leaving_drops_its_pending_calls():
    router, (callee, caller, _) = setup()
    register(callee, "com.p")
    caller.receive([48, 1, {}, "com.p"])
    inv = callee.take()[0]
    caller.session.transport_lost()
    assert callee.session.invocations == {}
    callee.receive([70, inv.request, {}, []])  # late yield is dropped quietly
    assert callee.take() == []


def test_reusing_a_pending_call_request_id_is_a_violation():
    router, (callee, caller, _) = setup()
    register(callee, "com.p")
    caller.receive([48, 1, {}, "com.p"])
    caller.receive([48, 1, {}, "com.p"])
    assert_refused(caller.last(), "wamp.error.protocol_violation",
                   "CALL request ID 1 is already in use by a pending call")
    assert callee.session.invocations == {}


def test_disclose_caller():
    router, (callee, caller, _) = setup()
    register(callee, "com.p")
    caller.receive([48, 1, {"disclose_me": True}, "com.p"])
    inv = callee.take()[0]
    assert inv.caller == caller.session.session_id and inv.caller_authid == caller.session.authid


def test_unregister_by_non_owner_fails():
    router, (a, b, _) = setup()
    reg = register(a, "com.p")
    b.receive([66, 5, reg])
    assert_refused(b.last(), "wamp.error.no_such_registration", "this session has no registration 1")
    a.receive([66, 6, reg])
    assert isinstance(a.last(), m.Unregistered)
    assert registrations(router) == []


class _Callee:
    def __init__(self, on_other_node: bool) -> None:
        self.on_other_node = on_other_node


def test_roundrobin_asks_its_chooser_over_all_callees_only():
    """What a cluster hangs on (cluster/turns.py): ``choose`` picks a roundrobin callee from
    the whole list; a list narrowed to this node's by prefer_local rotates as alone."""
    here, there = _Callee(False), _Callee(True)
    registration = Registration(1, "com.rr", "exact", "roundrobin", 0.0)
    registration.callees[:] = [here, there]
    asked = []
    registration.choose = lambda callees: asked.append(list(callees)) or callees[-1]
    assert [registration.pick() for _ in range(2)] == [there, there]
    assert asked == [[here, there]] * 2
    assert [registration.pick(prefer_local=True) for _ in range(2)] == [here, here]
    assert len(asked) == 2
    registration.invoke = "random"
    registration.pick()
    assert len(asked) == 2  # only roundrobin
