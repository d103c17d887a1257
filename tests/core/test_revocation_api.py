"""The deny list's administrative API (router procedures and HTTP share it),
called directly: each argument check, the expiry it computes, what it
answers, and who may use it."""

from types import SimpleNamespace

import pytest

from relayrouter.core.procedures import ProcedureError
from relayrouter.core.revocation import DenyListApi

from tests.core.test_revocation import join, world  # noqa: F401 (the fixture)

NOW = 1_000.0
INVALID = "wamp.error.invalid_argument"


@pytest.fixture
def api(world):  # noqa: F811
    clock, router, guard, realm = world
    return DenyListApi(guard, SimpleNamespace(admits=lambda role, claims: role == "admin"), 3600)


def _refused(api, fields, message):
    with pytest.raises(ProcedureError) as refused:
        api.add(fields)
    assert (refused.value.uri, refused.value.message) == (INVALID, message)


def test_an_entry_lasts_the_ttl_given_else_the_default(api):
    answer = api.add({"claim": "bid", "value": "b-1", "ttl": 60, "reason": "lost badge"})
    assert answer == {"entry": {"claim": "bid", "value": "b-1", "expires_at": NOW + 60, "reason": "lost badge"},
                      "sessions_closed": 0}
    assert api.add({"claim": "bid", "value": "b-2"})["entry"]["expires_at"] == NOW + 3600
    assert api.add({"claim": "bid", "value": "b-3", "ttl": 1e12})["entry"]["expires_at"] == NOW + 1e12


def test_an_expiry_given_is_kept_as_given(api):
    entry = api.add({"claim": "jti", "value": "t-1", "expires_at": 5_000})["entry"]
    assert entry == {"claim": "jti", "value": "t-1", "expires_at": 5_000.0, "reason": ""}
    assert isinstance(entry["expires_at"], float)


@pytest.mark.parametrize("ttl", [0, -5, "60", True, None, 1e12 + 1, float("inf"), float("nan")])
def test_a_ttl_that_is_not_a_positive_number_of_seconds_is_refused(api, ttl):
    _refused(api, {"claim": "bid", "value": "b-1", "ttl": ttl}, "ttl must be a positive number of seconds")


@pytest.mark.parametrize("expires_at", ["tomorrow", False, 1e12 + 1, -1e12 - 1, [5_000]])
def test_an_expiry_that_is_not_seconds_since_the_epoch_is_refused(api, expires_at):
    _refused(api, {"claim": "bid", "value": "b-1", "expires_at": expires_at},
             "expires_at must be seconds since the epoch")


@pytest.mark.parametrize("expires_at", [NOW, -1e12])
def test_an_expiry_in_the_past_is_refused_by_the_list(api, expires_at):
    _refused(api, {"claim": "bid", "value": "b-1", "expires_at": expires_at},
             "the entry would expire before it starts: give a future expires_at or a positive ttl")


def test_a_reason_must_be_text(api):
    _refused(api, {"claim": "bid", "value": "b-1", "reason": 7}, "reason must be a string")


@pytest.mark.parametrize("fields", [{"value": "b-1"}, {"claim": "bid"}, {"claim": "", "value": "b-1"},
                                    {"claim": "bid", "value": ""}, {"claim": 1, "value": "b-1"},
                                    {"claim": "bid", "value": ["b-1"]}])
def test_claim_and_value_must_be_non_empty_text(api, fields):
    _refused(api, fields, "give 'claim' and 'value' as non-empty strings")
    with pytest.raises(ProcedureError, match="non-empty strings"):
        api.remove(fields)


def test_sessions_carrying_the_claim_are_counted_as_closed(world, api):  # noqa: F811
    clock, router, guard, realm = world
    join(realm, router, bid="b-9").take()
    join(realm, router, authid="dev-2", bid="b-9").take()
    assert api.add({"claim": "bid", "value": "b-9"})["sessions_closed"] == 2


def test_others_than_admins_only_as_the_console_policy_says_read_or_write(world):  # noqa: F811
    clock, router, guard, realm = world
    api = DenyListApi(guard, SimpleNamespace(admits=lambda role, claims: role == "admin"), 3600)
    admin, viewer = SimpleNamespace(authrole="admin", permissions={}), SimpleNamespace(authrole="viewer",
                                                                                         permissions={})
    assert api._admits(admin, write=True)
    assert not api._admits(viewer, write=False)
    asked = []
    api.also = SimpleNamespace(admits_deny_list=lambda session, write: asked.append((session, write)) or not write)
    assert api._admits(viewer, write=False) and not api._admits(viewer, write=True)
    assert asked == [(viewer, False), (viewer, True)]
