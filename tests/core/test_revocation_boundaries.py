"""The deny list and the guard where a broken line went unnoticed: a removal
reaches the store (a restart does not bring the entry back), values and
claims refused naming why, entries listed in order and gone the second they
expire, list-valued claims, a credential expiring within the second, the
revoked session's GOODBYE text, the counters, what listeners are told, and
which of its procedures a read-only console user may call."""

from types import SimpleNamespace

import pytest
from autobahn.wamp import message as m

from relayrouter.core.procedures import AdminPolicy, ProcedureError, ProcedureRegistry
from relayrouter.core.revocation import DenyList, DenyListApi, DenyListError, claim_values
from relayrouter.store.denylist import MemoryDenyListStore
from relayrouter.testing import FakeClock
from tests.core.test_revocation import join, world  # noqa: F401 (the fixture)


@pytest.fixture
def denylist():
    return DenyList(MemoryDenyListStore(), ("bid", "jti", "sub"), FakeClock(1_000.0))


def test_a_removed_entry_stays_removed_when_the_list_is_loaded_again(denylist):
    denylist.add("bid", "b1", 2_000)
    denylist.add("bid", "b2", 2_000)
    assert denylist.remove("bid", "b1") is True
    assert denylist.remove("bid", "b1") is False  # not there any more: nothing removed, no error
    reloaded = DenyList(denylist.store, ("bid",), denylist.clock)
    reloaded.load()
    assert [(e.claim, e.value) for e in reloaded.entries()] == [("bid", "b2")]


@pytest.mark.parametrize("value", ["", 7, None])
def test_a_value_that_is_not_a_non_empty_string_is_refused(denylist, value):
    with pytest.raises(DenyListError) as refused:
        denylist.add("bid", value, 2_000)
    assert str(refused.value) == "the value to deny must be a non-empty string"
    assert denylist.entries() == []


def test_a_claim_not_configured_is_refused_naming_those_that_are(denylist):
    with pytest.raises(DenyListError) as refused:
        denylist.add("colour", "red", 2_000)
    assert str(refused.value) == "claim 'colour' is not deniable here (configured: bid, jti, sub, authid)"


def test_an_entry_given_no_reason_has_an_empty_one(denylist, world):  # noqa: F811
    assert denylist.add("bid", "b1", 2_000).reason == ""
    clock, router, guard, realm = world
    entry, _ = guard.revoke("bid", "b1", clock.now + 60)
    assert entry.as_dict()["reason"] == ""


def test_entries_are_listed_by_claim_then_value(denylist):
    for claim, value in (("sub", "a"), ("bid", "z"), ("jti", "m"), ("bid", "a")):
        denylist.add(claim, value, 2_000)
    assert [(e.claim, e.value) for e in denylist.entries()] == [("bid", "a"), ("bid", "z"), ("jti", "m"),
                                                                 ("sub", "a")]


def test_an_entry_no_longer_denies_from_the_second_it_expires(denylist):
    denylist.add("bid", "b1", 1_010)
    denylist.clock.advance(9.5)
    assert denylist.match(None, {"bid": "b1"}).value == "b1"
    denylist.clock.advance(0.5)  # now == expires_at
    assert denylist.match(None, {"bid": "b1"}) is None
    assert denylist.entries() == []


def test_a_claim_holding_a_list_is_denied_by_any_string_in_it(denylist):
    assert claim_values({"bid": ["b1", 5, "b2"]}, "bid") == ("b1", "b2")
    denylist.add("bid", "b2", 2_000)
    assert denylist.match(None, {"bid": ["b1", 5, "b2"]}).value == "b2"
    assert denylist.match(None, {"bid": ["b1", ["b2"]]}) is None


def test_a_credential_expiring_within_the_second_ends_the_session_then(world):  # noqa: F811
    clock, router, guard, realm = world
    peer = join(realm, router, expires_at=clock.now + 0.25)
    peer.take()
    clock.advance(0.25)
    [goodbye] = peer.take()
    assert goodbye.reason == "wamp.close.token_expired"
    assert goodbye.message == "the session's credential has expired"


def test_a_revoked_session_is_told_why_and_every_ended_session_is_counted(world):  # noqa: F811
    clock, router, guard, realm = world
    first, second = join(realm, router, bid="b1"), join(realm, router, authid="dev-2", bid="b2")
    first.take(), second.take()
    guard.revoke("bid", "b1", clock.now + 60)
    guard.revoke("bid", "b2", clock.now + 60)
    for peer in (first, second):
        [goodbye] = peer.take()
        assert isinstance(goodbye, m.Goodbye) and goodbye.message == "the session's credential has been revoked"
    assert guard.counters["revoked_sessions"] == 2


def test_listeners_are_told_the_entry_added_and_the_claim_and_value_removed(world):  # noqa: F811
    clock, router, guard, realm = world
    added, removed = [], []
    guard.revocation_listeners.append(added.append)
    guard.unrevocation_listeners.append(lambda claim, value: removed.append((claim, value)))
    entry, _ = guard.revoke("jti", "t1", clock.now + 60, "leaked")
    assert added == [entry] and (entry.claim, entry.value, entry.reason) == ("jti", "t1", "leaked")
    assert guard.unrevoke("jti", "t1") is True
    assert removed == [("jti", "t1")]


def test_a_read_only_console_user_may_list_the_deny_list_through_its_procedures_but_not_change_it(world):  # noqa: F811
    clock, router, guard, realm = world
    api = DenyListApi(guard, AdminPolicy(frozenset({"admin"})), 3600)
    api.also = SimpleNamespace(admits_deny_list=lambda session, write: not write)
    registry = ProcedureRegistry()
    api.add_procedures(registry)
    viewer = SimpleNamespace(authid="v", authrole="viewer", permissions={})
    call = lambda uri, **kwargs: registry.get(uri)(SimpleNamespace(session=viewer, args=(), kwargs=kwargs))  # noqa: E731
    assert call("relayrouter.denylist.list") == {"entries": []}
    for uri in ("relayrouter.denylist.add", "relayrouter.denylist.remove"):
        with pytest.raises(ProcedureError) as refused:
            call(uri, claim="bid", value="b1")
        assert refused.value.uri == "wamp.error.not_authorized", uri
    assert guard.denylist.entries() == []


def test_a_ttl_under_a_second_is_a_ttl(world):  # noqa: F811
    clock, router, guard, realm = world
    api = DenyListApi(guard, AdminPolicy(frozenset({"admin"})), 3600)
    assert api.add({"claim": "bid", "value": "b1", "ttl": 0.5})["entry"]["expires_at"] == clock.now + 0.5


def test_expired_sessions_are_counted_from_zero(world):  # noqa: F811
    clock, router, guard, realm = world
    assert guard.counters == {"revoked_sessions": 0, "expired_sessions": 0, "refused_denied": 0}
    for _ in range(2):
        join(realm, router, expires_at=clock.now + 5).take()
    clock.advance(5)
    assert guard.counters == {"revoked_sessions": 0, "expired_sessions": 2, "refused_denied": 0}
