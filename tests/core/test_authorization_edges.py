"""The role authorizer's edges, decided directly: each case pins one line whose
breakage would widen or narrow what a role grants.

Pattern requests (prefix or wildcard SUBSCRIBE / REGISTER) are the subtle part:
they must be covered by a rule of the same pattern, or by a prefix rule their
fixed part lies under, and a rule of the same pattern takes back what a broader
prefix gave.
"""

from dataclasses import dataclass, field
from types import MappingProxyType

import pytest

from relayrouter.core.authorization import Grant, Role, RoleAuthorizer, Rule


@dataclass(frozen=True, eq=False)
class _Session:
    authid: str = "dev-1"
    authrole: str = "device"
    permissions: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))


def _authorizer(*rules: Rule) -> RoleAuthorizer:
    return RoleAuthorizer([Role("device", rules)])


def _allowed(authorizer, action, uri, match="exact", session=None) -> bool:
    return authorizer.authorize(session or _Session(), action, uri, match) is None


# ------------------------------------------------------- pattern requests

@pytest.mark.parametrize("uri, match", [
    ("org.", "prefix"), ("org.app.", "prefix"), ("", "prefix"), ("co", "prefix"),
    ("org..news", "wildcard"), ("..news", "wildcard"), ("com", "prefix"),
])
def test_a_prefix_grant_covers_no_pattern_outside_it(uri, match):
    authorizer = _authorizer(Rule("com.app.", "prefix", {"subscribe"}))
    assert not _allowed(authorizer, "subscribe", uri, match)


@pytest.mark.parametrize("uri, match", [
    ("com.app.", "prefix"), ("com.app.news.", "prefix"), ("com.app.news", "prefix"),
    ("com.app..status", "wildcard"), ("com.app.x..y", "wildcard"),
])
def test_a_prefix_grant_covers_the_patterns_under_it(uri, match):
    authorizer = _authorizer(Rule("com.app.", "prefix", {"subscribe"}))
    assert _allowed(authorizer, "subscribe", uri, match)


def test_the_longest_covering_prefix_decides_a_pattern_request():
    authorizer = _authorizer(Rule("com.", "prefix", {"subscribe"}),
                             Rule("com.app.", "prefix", set()))
    assert not _allowed(authorizer, "subscribe", "com.app.x.", "prefix")
    assert not _allowed(authorizer, "subscribe", "com.app..x", "wildcard")
    assert _allowed(authorizer, "subscribe", "com.other.", "prefix")


def test_a_narrower_wildcard_rule_takes_back_a_prefix_grant():
    authorizer = _authorizer(Rule("com.app.", "prefix", {"subscribe"}),
                             Rule("com.app..secret", "wildcard", set()))
    assert not _allowed(authorizer, "subscribe", "com.app..secret", "wildcard")
    assert _allowed(authorizer, "subscribe", "com.app..public", "wildcard")


def test_a_same_pattern_rule_decides_before_a_broader_prefix():
    authorizer = _authorizer(Rule("com.", "prefix", set()),
                             Rule("com..status", "wildcard", {"subscribe"}))
    assert _allowed(authorizer, "subscribe", "com..status", "wildcard")
    assert not _allowed(authorizer, "subscribe", "com..other", "wildcard")


# ------------------------------------------------ rules on the same URI

def test_exact_and_prefix_rules_on_one_uri_stay_apart():
    authorizer = _authorizer(Rule("com.x", "exact", {"call"}),
                             Rule("com.x", "prefix", {"subscribe"}))
    assert _allowed(authorizer, "call", "com.x")
    assert not _allowed(authorizer, "subscribe", "com.x")
    assert _allowed(authorizer, "subscribe", "com.x", "prefix")
    assert _allowed(authorizer, "subscribe", "com.x.y")
    assert not _allowed(authorizer, "call", "com.x.y")


def test_two_rules_on_one_uri_and_match_add_up():
    authorizer = _authorizer(Rule("com.x", allow={"call"}),
                             Rule("com.x", allow={"publish"}, disclose_caller=True))
    assert _allowed(authorizer, "call", "com.x")
    assert _allowed(authorizer, "publish", "com.x")
    assert not _allowed(authorizer, "subscribe", "com.x")
    assert authorizer.discloses(_Session(), "caller", "com.x")


def test_grant_merged_joins_actions_and_disclosure_both_ways():
    a = Grant("u", "exact", frozenset({"call"}), True, False)
    b = Grant("u", "exact", frozenset({"publish"}), False, True)
    for merged in (a.merged(b), b.merged(a)):
        assert merged.actions == {"call", "publish"}
        assert merged.disclose_caller and merged.disclose_publisher
        assert (merged.uri, merged.match) == ("u", "exact")
    plain = Grant("u", "exact", frozenset(), False, False)
    assert not plain.merged(plain).disclose_caller and not plain.merged(plain).disclose_publisher


# ------------------------------------------------------------ disclosure

def test_disclosure_comes_from_the_deciding_rule_and_kind():
    authorizer = _authorizer(Rule("com.", "prefix", {"call"}, disclose_caller=True),
                             Rule("com.quiet", "exact", {"call"}),
                             Rule("news.", "prefix", {"publish"}, disclose_publisher=True))
    session = _Session()
    assert authorizer.discloses(session, "caller", "com.loud")
    assert not authorizer.discloses(session, "publisher", "com.loud")
    assert not authorizer.discloses(session, "caller", "com.quiet")
    assert authorizer.discloses(session, "publisher", "news.today")
    assert not authorizer.discloses(session, "caller", "news.today")
    assert not authorizer.discloses(session, "caller", "other.uri")


# ---------------------------------------------------------- placeholders

def test_authid_placeholder_grants_only_the_sessions_own_uri():
    authorizer = _authorizer(Rule("mailbox.{authid}", allow={"publish"}))
    alice, bob = _Session(authid="alice"), _Session(authid="bob")
    assert _allowed(authorizer, "publish", "mailbox.alice", session=alice)
    assert not _allowed(authorizer, "publish", "mailbox.bob", session=alice)
    assert _allowed(authorizer, "publish", "mailbox.bob", session=bob)


@pytest.mark.parametrize("authid", ["a.b", "", "a b", "a#b"])
def test_an_authid_that_is_not_one_component_drops_the_rule(authid):
    authorizer = _authorizer(Rule("mailbox.{authid}", allow={"publish"}),
                             Rule("mailbox.", "prefix", set()))
    session = _Session(authid=authid)
    assert not _allowed(authorizer, "publish", f"mailbox.{authid}", session=session)
    assert not _allowed(authorizer, "publish", "mailbox.a.b", session=session)


def test_a_claim_placeholder_is_not_filled_from_the_authid():
    authorizer = _authorizer(Rule("relay.{topic}", allow={"subscribe"}))
    assert not _allowed(authorizer, "subscribe", "relay.dev-1", session=_Session())
    claims = MappingProxyType({"topic": "lab1"})
    assert _allowed(authorizer, "subscribe", "relay.lab1", session=_Session(permissions=claims))


def test_a_session_of_an_unknown_role_is_refused_everything():
    authorizer = _authorizer(Rule("com.", "prefix", set(("call", "publish", "subscribe", "register"))))
    stranger = _Session(authrole="nobody")
    for action in ("call", "publish", "subscribe", "register"):
        refusal = authorizer.authorize(stranger, action, "com.x")
        assert refusal is not None and "nobody" in refusal and action in refusal
