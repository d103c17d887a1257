"""The deny list and the session guard: refusal at join, revocation of live
sessions, and the end of sessions whose credential expires."""

from types import MappingProxyType

import pytest
from autobahn.wamp import message as m

from relayrouter.core.auth import Accept
from relayrouter.core.procedures import AdminPolicy
from relayrouter.core.revocation import DenyList, DenyListApi, DenyListError, SessionGuard
from relayrouter.store.denylist import MemoryDenyListStore
from relayrouter.testing import ALL_ROLES, FakeClock, connect, make_router
from tests.refusals import assert_refused


class _Fixed:
    authmethod = "x"

    def __init__(self):
        self.accepts = []

    def hello(self, request):
        return self.accepts.pop(0)


@pytest.fixture
def world():
    clock = FakeClock(1_000.0)
    router = make_router(clock=clock)
    guard = SessionGuard(router, DenyList(MemoryDenyListStore(), ("bid", "jti", "sub"), clock))
    realm = router.realms["realm1"]
    realm.guard = guard
    realm.authenticators = {"x": _Fixed()}
    api = DenyListApi(guard, AdminPolicy(frozenset({"admin"}), "relay:admin"), 3600)
    api.add_procedures(realm.procedures)
    return clock, router, guard, realm


def join(realm, router, authid="dev-1", authrole="device", expires_at=None, **claims):
    realm.authenticators["x"].accepts.append(
        Accept(authid, authrole, "x", permissions=MappingProxyType(claims), expires_at=expires_at))
    peer = connect(router)
    peer.receive([1, "realm1", {"roles": ALL_ROLES, "authmethods": ["x"]}])
    return peer


def test_denied_claim_refuses_a_join(world):
    clock, router, guard, realm = world
    guard.revoke("bid", "booking-1", clock.now + 60)
    peer = join(realm, router, bid="booking-1")
    [abort] = peer.take()
    assert isinstance(abort, m.Abort) and abort.reason == "wamp.error.not_authorized"
    assert "revoked" in abort.message


def test_revocation_closes_live_sessions_carrying_the_claim(world):
    clock, router, guard, realm = world
    victim = join(realm, router, bid="booking-1")
    bystander = join(realm, router, authid="dev-2", bid="booking-2")
    victim.take(), bystander.take()
    entry, ended = guard.revoke("bid", "booking-1", clock.now + 60)
    assert ended == 1
    [goodbye] = victim.take()
    assert isinstance(goodbye, m.Goodbye) and goodbye.reason == "wamp.close.revoked"
    assert bystander.take() == [] and len(realm.sessions) == 1
    clock.advance(guard.close_grace + 0.1)
    assert victim.closed


def test_authid_entries_apply_to_any_method(world):
    clock, router, guard, realm = world
    peer = join(realm, router, authid="dev-9")
    peer.take()
    guard.revoke("authid", "dev-9", clock.now + 60)
    assert isinstance(peer.take()[0], m.Goodbye)


def test_entries_expire(world):
    clock, router, guard, realm = world
    guard.revoke("jti", "t1", clock.now + 10)
    clock.advance(11)
    peer = join(realm, router, jti="t1")
    assert isinstance(peer.take()[-1], m.Welcome)
    assert guard.denylist.entries() == []


def test_unknown_claims_and_past_expiry_are_refused(world):
    clock, router, guard, realm = world
    with pytest.raises(DenyListError, match="not deniable"):
        guard.revoke("colour", "red", clock.now + 10)
    with pytest.raises(DenyListError, match="expire"):
        guard.revoke("bid", "b", clock.now - 1)


def test_session_ends_when_its_credential_expires(world):
    clock, router, guard, realm = world
    peer = join(realm, router, expires_at=clock.now + 30)
    peer.take()
    clock.advance(29)
    assert peer.take() == []
    clock.advance(1)
    [goodbye] = peer.take()
    assert goodbye.reason == "wamp.close.token_expired"
    assert realm.sessions == {} and guard.expiry_timers == {}


def test_leaving_cancels_the_expiry_timer(world):
    clock, router, guard, realm = world
    peer = join(realm, router, expires_at=clock.now + 30)
    peer.take()
    peer.receive([6, {}, "wamp.close.normal"])
    assert guard.expiry_timers == {}


def test_admin_procedures(world):
    clock, router, guard, realm = world
    admin = join(realm, router, authid="ops", authrole="admin")
    user = join(realm, router, authid="dev-1", bid="b-7")
    admin.take(), user.take()
    user.receive([48, 1, {}, "relayrouter.denylist.list", [], {}])
    [error] = user.take()
    assert_refused(error, "wamp.error.not_authorized",
                   "session 'dev-1' with role 'device' may not administer the deny list")
    admin.receive([48, 2, {}, "relayrouter.denylist.add", [], {"claim": "bid", "value": "b-7", "ttl": 60}])
    [result] = admin.take()
    assert result.args[0]["sessions_closed"] == 1
    assert isinstance(user.take()[0], m.Goodbye)
    admin.receive([48, 3, {}, "relayrouter.denylist.list", [], {}])
    assert [e["value"] for e in admin.take()[0].args[0]["entries"]] == ["b-7"]
    admin.receive([48, 4, {}, "relayrouter.denylist.remove", ["bid", "b-7"], {}])
    assert admin.take()[0].args[0] == {"removed": True}
    admin.receive([48, 5, {}, "relayrouter.denylist.add", [], {"claim": "bid"}])
    assert_refused(admin.take()[0], "wamp.error.invalid_argument",
                   "give 'claim' and 'value' as non-empty strings")


def test_admin_by_scope(world):
    clock, router, guard, realm = world
    peer = join(realm, router, authid="ops", scopes=["relay:admin"])
    peer.take()
    peer.receive([48, 1, {}, "relayrouter.denylist.list", [], {}])
    assert isinstance(peer.take()[0], m.Result)


def test_router_procedures_cannot_be_registered_over(world):
    clock, router, guard, realm = world
    admin = join(realm, router, authid="ops", authrole="admin")
    admin.take()
    admin.receive([64, 1, {}, "relayrouter.denylist.list"])
    [refused] = admin.take()
    assert_refused(refused, "wamp.error.procedure_already_exists",
                   "'relayrouter.denylist.list' is a procedure the router implements")
    admin.receive([64, 3, {"match": "prefix"}, "relayrouter.denylist."])
    assert isinstance(admin.take()[0], m.Registered)  # a pattern may be registered, but never shadows
    admin.receive([48, 2, {}, "relayrouter.denylist.list", [], {}])
    assert isinstance(admin.take()[0], m.Result)
