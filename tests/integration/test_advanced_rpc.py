"""Advanced Profile RPC end to end: shared registrations, progressive results,
call cancelling and timeouts, caller disclosure, payload passthru."""

import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails, CallOptions, RegisterOptions
from twisted.internet import defer

from ..refusals import assert_refused
from ..support import connect_raw, connect_rawsocket, connect_ws, eventually, meta_view, within
from .test_advanced_pubsub import PPT, PPT_ROLES


class Stuck:
    """A procedure that never answers, and records being interrupted.

    Autobahn-Python logs the CancelledError of an interrupted invocation as a
    user error: a test that interrupts one declares it (``expect_interrupt``)."""

    def __init__(self) -> None:
        self.invoked = defer.Deferred()
        self.interrupted = defer.Deferred()

    def __call__(self, *args):
        self.invoked.callback(args)
        return defer.Deferred(canceller=lambda d: self.interrupted.callback(None))


def expect_interrupt(logged_errors) -> None:
    logged_errors.expect(r'Client\.onUserError\(\): "CancelledError')


@pytest_twisted.inlineCallbacks
def test_shared_registration_roundrobin_and_takeover(running):
    callees = []
    for i, connect in enumerate((connect_ws, connect_rawsocket, connect_ws)):
        callee = yield connect(running)
        yield callee.register(lambda i=i: i, "com.shared", options=RegisterOptions(invoke="roundrobin"))
        callees.append(callee)
    caller = yield connect_ws(running, "cbor")
    answers = []
    for _ in range(6):
        answers.append((yield caller.call("com.shared")))
    assert answers == [0, 1, 2, 0, 1, 2]
    other = yield connect_ws(running)
    try:
        yield other.register(lambda: None, "com.shared", options=RegisterOptions(invoke="random"))
        raise AssertionError("a different invoke policy was accepted")
    except ApplicationError as e:
        assert_refused(e, "wamp.error.procedure_already_exists",
                       "'com.shared' is registered with invoke policy 'roundrobin', not 'random'")
    # one callee says GOODBYE, another's connection is simply closed: the last takes over
    callees[0].leave()
    yield within(callees[0].left)
    callees[1].disconnect()
    view = yield meta_view(running)
    yield view.until(lambda: view.callees("com.shared"), lambda ids: ids == [callees[2].details.session])
    answers = []
    for _ in range(3):
        answers.append((yield caller.call("com.shared")))
    assert answers == [2, 2, 2]


@pytest_twisted.inlineCallbacks
def test_shared_registration_first_and_last(running):
    first = yield connect_ws(running)
    last = yield connect_rawsocket(running, "msgpack")
    yield first.register(lambda: "first", "com.f", options=RegisterOptions(invoke="first"))
    yield last.register(lambda: "last", "com.f", options=RegisterOptions(invoke="first"))
    yield first.register(lambda: "first", "com.l", options=RegisterOptions(invoke="last"))
    yield last.register(lambda: "last", "com.l", options=RegisterOptions(invoke="last"))
    caller = yield connect_ws(running)
    assert (yield caller.call("com.f")) == "first"
    assert (yield caller.call("com.l")) == "last"


@pytest_twisted.inlineCallbacks
def test_pattern_registration_precedence_with_details(running):
    callee = yield connect_ws(running)
    yield callee.register(lambda **kw: ("prefix", kw["details"].procedure), "com.api.",
                          options=RegisterOptions(match="prefix", details_arg="details"))
    yield callee.register(lambda **kw: ("longer", kw["details"].procedure), "com.api.v2.",
                          options=RegisterOptions(match="prefix", details_arg="details"))
    yield callee.register(lambda **kw: ("wild", kw["details"].procedure), "com..v2.get",
                          options=RegisterOptions(match="wildcard", details_arg="details"))
    yield callee.register(lambda: ("exact", None), "com.api.v2.get")
    caller = yield connect_rawsocket(running, "cbor")
    assert (yield caller.call("com.api.v2.get")) == ["exact", None]
    assert (yield caller.call("com.api.v2.put")) == ["longer", "com.api.v2.put"]
    assert (yield caller.call("com.api.v1.get")) == ["prefix", "com.api.v1.get"]
    assert (yield caller.call("com.web.v2.get")) == ["wild", "com.web.v2.get"]


@pytest_twisted.inlineCallbacks
def test_progressive_results(running):
    callee = yield connect_ws(running, "msgpack")

    def counting(n, details: CallDetails):
        for i in range(n):
            details.progress(i)
        return "done"

    yield callee.register(counting, "com.count", options=RegisterOptions(details_arg="details"))
    caller = yield connect_rawsocket(running, "json")
    progress = []
    result = yield caller.call("com.count", 3, options=CallOptions(on_progress=progress.append))
    assert progress == [0, 1, 2] and result == "done"


@pytest_twisted.inlineCallbacks
def test_autobahn_cancel_interrupts_the_callee(running, logged_errors):
    expect_interrupt(logged_errors)
    stuck = Stuck()
    callee = yield connect_ws(running)
    yield callee.register(stuck, "com.stuck")
    caller = yield connect_rawsocket(running, "msgpack")
    call = caller.call("com.stuck")
    call.addErrback(lambda f: None)
    yield within(stuck.invoked)
    call.cancel()  # Autobahn sends CANCEL without a mode: the router's default is killnowait
    yield within(stuck.interrupted)
    yield eventually(lambda: not any(s.calls for s in running.router.sessions()))


@pytest_twisted.inlineCallbacks
def test_cancel_modes_from_raw_caller(running, logged_errors):
    expect_interrupt(logged_errors)
    stuck = Stuck()
    callee = yield connect_ws(running)
    yield callee.register(stuck, "com.stuck")
    raw = yield connect_raw(running)
    yield raw.hello(details={"roles": {"caller": {"features": {"call_canceling": True}}}})

    # kill: INTERRUPT, and the caller gets the callee's own ERROR
    raw.send([48, 1, {}, "com.stuck", []])
    yield within(stuck.invoked)
    raw.send([49, 1, {"mode": "kill"}])
    yield within(stuck.interrupted)
    error = yield raw.next()
    # Autobahn-Python answers a cancelled invocation with its own runtime_error;
    # the router passes the callee's ERROR on rather than inventing one.
    assert error[:3] == [8, 48, 1] and error[4] == "wamp.error.runtime_error"

    # skip: the caller hears at once and the callee is not interrupted
    stuck2 = Stuck()
    yield callee.register(stuck2, "com.stuck2")
    raw.send([48, 2, {}, "com.stuck2", []])
    yield within(stuck2.invoked)
    raw.send([49, 2, {"mode": "skip"}])
    error = yield raw.next()
    assert error[:3] == [8, 48, 2] and error[4] == "wamp.error.canceled"
    assert not stuck2.interrupted.called


@pytest_twisted.inlineCallbacks
def test_call_timeout_in_milliseconds(running, logged_errors):
    expect_interrupt(logged_errors)
    stuck = Stuck()
    callee = yield connect_rawsocket(running, "cbor")
    yield callee.register(stuck, "com.stuck")
    caller = yield connect_ws(running)
    try:
        # CALL.Options.timeout is in milliseconds per the spec (Autobahn's docstring says seconds)
        yield within(caller.call("com.stuck", options=CallOptions(timeout=100)))
        raise AssertionError("the call did not time out")
    except ApplicationError as e:
        assert e.error == "wamp.error.canceled"
    yield within(stuck.interrupted)


@pytest_twisted.inlineCallbacks
def test_caller_disclosure_through_raw_client(running):
    callee = yield connect_ws(running)
    yield callee.register(lambda **kw: [kw["details"].caller, kw["details"].caller_authrole], "com.who",
                          options=RegisterOptions(details_arg="details"))
    raw = yield connect_raw(running)
    welcome = yield raw.hello()
    raw.send([48, 1, {"disclose_me": True}, "com.who", []])
    result = yield raw.next()
    assert result[0] == 50 and result[3] == [[welcome[1], "anonymous"]]


@pytest_twisted.inlineCallbacks
def test_payload_passthru_call_roundtrip(running):
    callee = yield connect_raw(running)
    yield callee.hello(details={"roles": PPT_ROLES})
    callee.send([64, 1, {}, "com.sealed.rpc"])
    yield callee.next()
    caller = yield connect_raw(running)
    yield caller.hello(details={"roles": PPT_ROLES})
    caller.send([48, 7, dict(PPT), "com.sealed.rpc", ["\u0000AAE="]])
    invocation = yield callee.next()
    assert invocation[0] == 68 and invocation[3] == PPT and invocation[4] == ["\u0000AAE="]
    callee.send([70, invocation[1], {**PPT, "ppt_keyid": "reply"}, ["\u0000AgM="]])
    result = yield caller.next()
    assert result == [50, 7, {**PPT, "ppt_keyid": "reply"}, ["\u0000AgM="]]
    # a callee that does not speak ppt: feature_not_supported
    plain = yield connect_ws(running)
    yield plain.register(lambda *a: None, "com.plain")
    caller.send([48, 8, dict(PPT), "com.plain", ["\u0000AAE="]])
    error = yield caller.next()
    assert error[:3] == [8, 48, 8]
    assert_refused(error, "wamp.error.feature_not_supported",
                   "the callee of 'com.plain' does not support payload passthru mode")
