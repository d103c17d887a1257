"""The pairs' administrative procedures in memory: only the admin policy may
use them, kick checks its arguments and says whether anyone was there, a
kicked peer hears why, and the listing admits by role or by scope through
either the admin policy or its readers'."""

import pytest
from autobahn.wamp import message as m

from relayrouter.core.auth import Accept
from relayrouter.core.pairs import CLOSE_KICKED

from tests.core.test_pairs import GW, MGR, call, make, peer

KICK_ARGUMENTS = "give subscriber and box as strings and peer_class as 'gateway' or 'manager'"


class _Roles:
    """Accepts the HELLO's authid; 'ops' is an admin, anyone else a peer."""

    authmethod = "x"

    def hello(self, request):
        return Accept(request.authid, "admin" if request.authid == "ops" else "peer", "x")


def _world():
    router, realm = make()
    realm.authenticators = {"x": _Roles()}
    return router, realm


def _result(replies):
    (reply,) = replies
    assert isinstance(reply, m.Result), reply
    return reply.args[0]


def _error(replies):
    (reply,) = replies
    assert isinstance(reply, m.Error), reply
    return reply.error, reply.args[0]


def test_an_admin_kicks_a_peer_with_a_reason_and_learns_whether_one_was_there():
    router, _ = _world()
    gw, ops = peer(router, GW), peer(router, "ops")
    assert _result(call(ops, 1, "relayrouter.pairs.kick", "8675309", "00224dd149bb", "gateway",
                        reason="maintenance")) == {"kicked": True}
    goodbye = gw.take()[-1]
    assert isinstance(goodbye, m.Goodbye) and goodbye.reason == CLOSE_KICKED and goodbye.message == "maintenance"
    assert _result(call(ops, 2, "relayrouter.pairs.kick", subscriber="8675309", box="00224dd149bb",
                        peer_class="manager")) == {"kicked": False}


def test_a_kick_without_a_reason_says_who_removed_the_peer():
    router, _ = _world()
    mgr, ops = peer(router, MGR), peer(router, "ops")
    _result(call(ops, 1, "relayrouter.pairs.kick", "8675309", "00224dd149bb", "manager"))
    assert mgr.take()[-1].message == "removed from pair 8675309/00224dd149bb by an administrator"


@pytest.mark.parametrize("args, kwargs, message", [
    ([], {}, KICK_ARGUMENTS),
    (["8675309", "00224dd149bb", "router"], {}, KICK_ARGUMENTS),
    (["8675309", "", "gateway"], {}, KICK_ARGUMENTS),
    ([8675309, "00224dd149bb", "gateway"], {}, KICK_ARGUMENTS),
    (["8675309", "00224dd149bb", "gateway"], {"reason": 5}, "reason must be a string"),
])
def test_a_kick_with_wrong_arguments_is_refused_naming_them(args, kwargs, message):
    router, _ = _world()
    ops = peer(router, "ops")
    assert _error(call(ops, 1, "relayrouter.pairs.kick", *args, **kwargs)) == ("wamp.error.invalid_argument",
                                                                                message)


def test_peers_may_neither_kick_nor_list():
    router, _ = _world()
    gw = peer(router, GW)
    for request, procedure in ((1, "relayrouter.pairs.kick"), (2, "relayrouter.pairs.list")):
        error, message = _error(call(gw, request, procedure, "8675309", "00224dd149bb", "manager"))
        assert error == "wamp.error.not_authorized"
        assert message == f"session '{GW}' with role 'peer' may not administer pairs"


def test_an_admin_by_role_lists_the_pairs_through_the_wire():
    router, _ = _world()
    gw, ops = peer(router, GW), peer(router, "ops")
    assert _result(call(ops, 1, "relayrouter.pairs.list")) == [
        {"subscriber": "8675309", "box": "00224dd149bb", "manager": None,
         "gateway": {"session": gw.session.session_id, "authid": GW, "since": 5_000.0}}]


@pytest.mark.parametrize("authrole, scopes, lists", [
    ("admin", (), True),  # the admin policy, by role
    ("operator", ("pairs:admin",), True),  # the admin policy, by scope
    ("viewer", (), True),  # the readers, by role
    ("operator", ("pairs:read",), True),  # the readers, by scope
    ("operator", ("pairs:other",), False),
    ("peer", (), False),
])
def test_the_listing_admits_by_role_or_scope_through_either_policy(authrole, scopes, lists):
    from types import SimpleNamespace

    from relayrouter.core.pairs import LIST
    from relayrouter.core.procedures import AdminPolicy, ProcedureError, ProcedureRegistry

    router, realm = _world()
    registry = ProcedureRegistry()
    realm.pairs.add_procedures(registry, AdminPolicy(frozenset({"admin"}), "pairs:admin"),
                               readers=AdminPolicy(frozenset({"viewer"}), "pairs:read"))
    session = SimpleNamespace(authid="someone", authrole=authrole, permissions={"scopes": list(scopes)})
    listing = registry.get(LIST)
    if lists:
        assert listing(SimpleNamespace(session=session, args=(), kwargs={})) == []
    else:
        with pytest.raises(ProcedureError) as refused:
            listing(SimpleNamespace(session=session, args=(), kwargs={}))
        assert refused.value.uri == "wamp.error.not_authorized"
