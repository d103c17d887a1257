"""Call cancelling (skip, kill, killnowait) and router-enforced call timeouts."""

from autobahn.wamp import message as m

from relayrouter.testing import FakeClock, join, make_router

CANCELING = {"features": {"call_canceling": True}}
ROLES = {"caller": CANCELING, "callee": CANCELING, "subscriber": {}, "publisher": {}}


def setup(callee_cancels=True):
    clock = FakeClock()
    router = make_router(clock=clock)
    callee = join(router, roles=ROLES) if callee_cancels else join(router)
    caller = join(router, roles=ROLES)
    callee.receive([64, 1, {}, "com.slow"])
    callee.take()
    return clock, callee, caller


def call(caller, callee, request=7, **options):
    caller.receive([48, request, options, "com.slow", [1]])
    [invocation] = callee.take()
    return invocation


def test_skip_answers_the_caller_at_once_without_interrupt():
    clock, callee, caller = setup()
    inv = call(caller, callee)
    caller.receive([49, 7, {"mode": "skip"}])
    [error] = caller.take()
    assert error.marshal()[:5] == [8, 48, 7, {}, "wamp.error.canceled"]
    assert callee.take() == []
    callee.receive([70, inv.request, {}, ["late"]])  # "the result is discarded when received"
    assert caller.take() == []


def test_killnowait_interrupts_and_answers_at_once():
    clock, callee, caller = setup()
    inv = call(caller, callee)
    caller.receive([49, 7, {"mode": "killnowait"}])
    [interrupt] = callee.take()
    assert interrupt.marshal() == [69, inv.request, {"mode": "killnowait"}]
    [error] = caller.take()
    assert error.error == "wamp.error.canceled"
    callee.receive([8, 68, inv.request, {}, "wamp.error.canceled"])
    assert caller.take() == []


def test_kill_waits_for_the_callee_and_passes_its_answer():
    clock, callee, caller = setup()
    inv = call(caller, callee)
    caller.receive([49, 7, {"mode": "kill"}])
    caller.receive([49, 7, {"mode": "kill"}])  # a second CANCEL sends no second INTERRUPT
    [interrupt] = callee.take()
    assert interrupt.marshal() == [69, inv.request, {"mode": "kill"}]
    assert caller.take() == []
    callee.receive([8, 68, inv.request, {}, "com.app.stopped", ["by request"]])
    [error] = caller.take()
    assert error.error == "com.app.stopped" and error.args == ["by request"]
    assert caller.session.calls == {} and callee.session.invocations == {}


def test_kill_may_still_end_in_a_result():
    clock, callee, caller = setup()
    inv = call(caller, callee)
    caller.receive([49, 7, {"mode": "kill"}])
    callee.take()
    callee.receive([70, inv.request, {}, ["done anyway"]])
    assert caller.take()[0].args == ["done anyway"]


def test_default_mode_is_killnowait():
    clock, callee, caller = setup()
    call(caller, callee)
    caller.receive([49, 7, {}])
    assert isinstance(callee.take()[0], m.Interrupt)
    assert caller.take()[0].error == "wamp.error.canceled"


def test_callee_without_call_canceling_gets_no_interrupt_whatever_the_mode():
    for mode in ("kill", "killnowait"):
        clock, callee, caller = setup(callee_cancels=False)
        call(caller, callee)
        caller.receive([49, 7, {"mode": mode}])
        assert callee.take() == []
        assert caller.take()[0].error == "wamp.error.canceled"


def test_cancel_after_the_result_is_ignored():
    clock, callee, caller = setup()
    inv = call(caller, callee)
    callee.receive([70, inv.request, {}, ["r"]])
    caller.take()
    caller.receive([49, 7, {"mode": "kill"}])
    assert caller.take() == [] and callee.take() == []


def test_timeout_in_milliseconds_interrupts_and_cancels():
    clock, callee, caller = setup()
    inv = call(caller, callee, timeout=1500)
    assert inv.timeout == 1500  # forwarded: the callee may run its own timer too
    clock.advance(1.4)
    assert caller.take() == []
    clock.advance(0.2)
    [interrupt] = callee.take()
    assert interrupt.marshal() == [69, inv.request, {"mode": "killnowait"}]
    [error] = caller.take()
    assert error.error == "wamp.error.canceled" and "timed out" in error.args[0]
    callee.receive([70, inv.request, {}, ["too late"]])
    assert caller.take() == []


def test_timeout_timer_is_cancelled_by_the_result():
    clock, callee, caller = setup()
    inv = call(caller, callee, timeout=1000)
    callee.receive([70, inv.request, {}, ["r"]])
    assert caller.take()[0].args == ["r"]
    assert clock.timers == []
    clock.advance(5)
    assert caller.take() == [] and callee.take() == []


def test_timeout_zero_means_none_and_no_interrupt_to_non_canceling_callee():
    clock, callee, caller = setup(callee_cancels=False)
    call(caller, callee, request=1, timeout=0)
    assert clock.timers == []
    call(caller, callee, request=2, timeout=10)
    clock.advance(0.01)
    assert callee.take() == []
    assert caller.take()[0].error == "wamp.error.canceled"


def test_timer_is_cancelled_when_either_side_leaves():
    clock, callee, caller = setup()
    call(caller, callee, timeout=1000)
    callee.session.transport_lost()
    assert caller.take()[0].error == "wamp.error.canceled"
    assert clock.timers == []
