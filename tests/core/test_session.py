"""The session state machine, driven directly with in-memory peers."""

import pytest
from autobahn.wamp import message as m

from relayrouter.core.auth import Accept, Challenge, Deny
from relayrouter.testing import ALL_ROLES, connect, join, make_router
from tests.refusals import assert_refused
from tests.core.outside import session_ids, subscriptions


def hello(realm="realm1", **details):
    return [1, realm, {"roles": ALL_ROLES, **details}]


def test_welcome_carries_session_roles_and_auth():
    router = make_router()
    peer = connect(router)
    peer.receive(hello())
    [welcome] = peer.take()
    assert isinstance(welcome, m.Welcome)
    assert session_ids(router) == [welcome.session]
    assert 1 <= welcome.session <= 2**53
    assert welcome.authmethod == "anonymous" and welcome.authrole == "anonymous"
    raw = welcome.marshal()
    assert set(raw[2]["roles"]) == {"broker", "dealer"}
    assert raw[2]["roles"]["broker"]["features"]["pattern_based_subscription"] is True


def test_anonymous_authid_is_never_the_clients():
    router = make_router()
    peer = connect(router)
    peer.receive(hello(authid="admin"))
    assert peer.take()[0].authid != "admin"


@pytest.mark.parametrize("raw, fragment", [
    ([32, 1, {}, "t"], "before HELLO"),
    ([70, 1, {}], "before HELLO"),
    ([2, 1, {}], "never to them"),
    ([1000], "unknown WAMP message type"),
])
def test_violations_before_hello(raw, fragment):
    peer = connect(make_router())
    peer.receive(raw)
    [abort] = peer.take()
    assert isinstance(abort, m.Abort) and abort.reason == "wamp.error.protocol_violation"
    assert fragment in abort.message
    assert peer.closed
    peer.receive([1, "realm1", {"roles": ALL_ROLES}])  # a closed session answers nothing more
    assert peer.take() == []


def test_second_hello_is_a_violation_and_cleans_up():
    router = make_router()
    peer = join(router)
    peer.receive([32, 1, {}, "com.t"])
    peer.receive(hello())
    assert isinstance(peer.last(), m.Abort)
    assert "already open" in peer.last().message
    assert session_ids(router) == [] and subscriptions(router) == []


def test_nothing_is_handled_after_abort():
    router = make_router()
    peer = join(router)
    peer.receive([99])
    peer.take()
    peer.receive([32, 1, {}, "com.t"])
    assert peer.take() == []


def test_no_such_realm_and_no_auth_method():
    router = make_router()
    peer = connect(router)
    peer.receive(hello("elsewhere"))
    assert_refused(peer.last(), "wamp.error.no_such_realm", "no realm named 'elsewhere' on this router")
    router.realms["realm1"].authenticators = {}
    peer = connect(router)
    peer.receive(hello(authmethods=["anonymous", "ticket"]))
    assert peer.last().reason == "wamp.error.authentication_failed"
    assert "anonymous, ticket" in peer.last().message


def test_goodbye_then_a_new_session_on_the_same_transport():
    router = make_router()
    peer = join(router)
    first = peer.session.session_id
    peer.receive([6, {}, "wamp.close.normal"])
    [goodbye] = peer.take()
    assert goodbye.reason == "wamp.close.goodbye_and_out"
    assert session_ids(router) == []
    peer.receive(hello())
    [welcome] = peer.take()
    assert isinstance(welcome, m.Welcome) and welcome.session != first


def test_router_initiated_goodbye_waits_for_reply_and_ignores_late_traffic():
    router = make_router()
    peer = join(router)
    peer.session.goodbye("wamp.close.system_shutdown", "bye")
    assert peer.take()[0].reason == "wamp.close.system_shutdown"
    peer.receive([16, 1, {}, "com.t"])  # late: ignored
    assert peer.take() == [] and not peer.closed
    peer.receive([6, {}, "wamp.close.goodbye_and_out"])
    assert peer.closed


class ScriptedAuthenticator:
    authmethod = "ticket"

    def __init__(self, secret):
        self.secret = secret

    def hello(self, request):
        return Challenge("ticket", {}, state=request.authid)

    def authenticate(self, request, state, signature, extra):
        if signature == self.secret:
            return Accept(authid=state, authrole="user", authmethod="ticket")
        return Deny("invalid ticket")


def test_challenge_accept_and_deny():
    router = make_router()
    router.realms["realm1"].authenticators = {"ticket": ScriptedAuthenticator("s3cret")}
    ok = connect(router)
    ok.receive(hello(authmethods=["ticket"], authid="alice"))
    assert isinstance(ok.take()[0], m.Challenge)
    ok.receive([5, "s3cret", {}])
    welcome = ok.take()[0]
    assert welcome.authid == "alice" and welcome.authrole == "user"
    bad = connect(router)
    bad.receive(hello(authmethods=["ticket"], authid="alice"))
    bad.take()
    bad.receive([5, "wrong", {}])
    abort = bad.take()[0]
    assert abort.reason == "wamp.error.authentication_failed" and "wrong" not in abort.message


def test_authenticate_without_challenge_is_a_violation():
    peer = connect(make_router())
    peer.receive([5, "sig", {}])
    assert_refused(peer.last(), "wamp.error.protocol_violation",
                   "AUTHENTICATE before HELLO: a session must start with HELLO")


class LaterDecision:
    """A Deferred-like, as an authenticator waiting for a key fetch returns."""

    def __init__(self):
        self.callbacks = []

    def addBoth(self, fn):
        self.callbacks.append(fn)
        return self

    def fire(self, value):
        for fn in self.callbacks:
            fn(value)


def test_asynchronous_decision_and_messages_while_pending():
    router = make_router()
    later = LaterDecision()

    class Slow:
        authmethod = "ticket"

        def hello(self, request):
            return later

    router.realms["realm1"].authenticators = {"ticket": Slow()}
    peer = connect(router)
    peer.receive(hello(authmethods=["ticket"]))
    assert peer.take() == [] and not peer.closed  # waiting for the decision
    later.fire(Accept(authid="bob", authrole="r", authmethod="ticket"))
    assert isinstance(peer.take()[0], m.Welcome)


def test_peer_leaving_while_decision_pending():
    router = make_router()
    later = LaterDecision()

    class Slow:
        authmethod = "ticket"

        def hello(self, request):
            return later

    router.realms["realm1"].authenticators = {"ticket": Slow()}
    peer = connect(router)
    peer.receive(hello(authmethods=["ticket"]))
    peer.session.transport_lost()
    later.fire(Accept(authid="bob", authrole="r", authmethod="ticket"))
    assert peer.take() == []
    assert router.realms["realm1"].sessions == {}  # (no anonymous peer could ask: ticket only)


def test_internal_error_aborts_only_that_session_and_is_reported():
    router = make_router()
    errors = []
    router.observer.internal_error = lambda session, error: errors.append(error)
    a, b = join(router), join(router)
    router.realms["realm1"].broker.publish = lambda *args: 1 / 0
    a.receive([16, 1, {}, "com.t"])
    assert_refused(a.last(), "relayrouter.error.internal",
                   "the router failed to handle a message; see its log")
    assert isinstance(errors[0], ZeroDivisionError)
    b.receive([32, 1, {}, "com.t"])
    assert isinstance(b.last(), m.Subscribed)


# ------------------------------------------------------- the table itself


def test_the_table_alone_sets_the_state():
    """Every transition is an entry (handler, next state): the state is assigned
    only where the session is built and where a table entry is applied."""
    import ast
    import inspect

    from relayrouter.core import session as module

    assignments = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            names = target.elts if isinstance(target, ast.Tuple) else [target]
            if any(isinstance(t, ast.Attribute) and t.attr == "state" for t in names):
                assignments.append(ast.unparse(node))
    assert sorted(assignments) == sorted([
        "self.state = State.HELLO_WAIT",  # __init__
        "handler, self.state = entry",  # a message from the peer
        "handler, self.state = entry",  # an event from our side
    ])
    for (state, event), (handler, next_state) in module._TABLE.items():
        assert isinstance(state, module.State) and isinstance(next_state, module.State)
        assert callable(handler), (state, event)


def test_router_events_follow_the_table():
    router = make_router()
    joining = connect(router)
    joining.receive(hello())
    joined = joining.session
    joined.goodbye("wamp.close.system_shutdown", "bye")
    assert joined.state.name == "CLOSING"
    assert joining.take()[-1].marshal() == [6, {"message": "bye"}, "wamp.close.system_shutdown"]
    joined.goodbye()  # already closing: nothing more
    joined.abort("wamp.error.protocol_violation", "late")
    assert joined.state.name == "CLOSED" and isinstance(joining.take()[-1], m.Abort)
    joined.abort("wamp.error.protocol_violation", "again")  # closed: nothing more
    assert joining.take() == []
    fresh = connect(router)
    fresh.session.goodbye("wamp.close.system_shutdown")  # not joined: ABORT instead
    [abort] = fresh.take()
    assert abort.reason == "wamp.close.system_shutdown" and fresh.closed
