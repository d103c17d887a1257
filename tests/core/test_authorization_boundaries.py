"""The role authorizer where a broken line went unnoticed: a wildcard with no
wildcard in it, a wildcard rule covering its own pattern, scopes added to (not
replacing) what a rule allows, unknown actions refused when the rule is made,
and a refusal naming the pattern it refused."""

import pytest

from relayrouter.core.authorization import RoleAuthorizer, Rule

from tests.core.test_authorization_edges import _Session, _allowed, _authorizer


def test_a_wildcard_without_a_wildcard_component_is_not_under_a_prefix_it_names_with_a_dot():
    """'com.acme' as a wildcard matches the topic com.acme only, which the prefix 'com.acme.' does not cover."""
    authorizer = _authorizer(Rule("com.acme.", "prefix", {"subscribe"}))
    assert not _allowed(authorizer, "subscribe", "com.acme", "wildcard")
    assert _allowed(authorizer, "subscribe", "com.acme.x", "wildcard")


def test_a_wildcard_rule_covers_the_same_wildcard_request():
    authorizer = _authorizer(Rule("com..temperature", "wildcard", {"subscribe"}))
    assert _allowed(authorizer, "subscribe", "com..temperature", "wildcard")
    assert not _allowed(authorizer, "subscribe", "com..humidity", "wildcard")


def test_scopes_add_to_what_the_rule_allows_and_unknown_scopes_add_nothing():
    authorizer = _authorizer(Rule("com.lab.t", allow={"call"}, scopes={"read": {"subscribe"}}))
    session = _Session(permissions={"scopes": ["read", "admin"]})
    assert _allowed(authorizer, "call", "com.lab.t", session=session)
    assert _allowed(authorizer, "subscribe", "com.lab.t", session=session)
    assert not _allowed(authorizer, "publish", "com.lab.t", session=session)


def test_an_unknown_action_is_refused_when_the_rule_is_made_naming_it():
    with pytest.raises(ValueError) as refused:
        Rule("com.lab.t", allow={"publish", "subscibe"})
    assert str(refused.value) == "unknown action 'subscibe' (use call, register, publish, subscribe)"
    with pytest.raises(ValueError, match=r"unknown action 'delete'"):
        Rule("com.lab.t", scopes={"write": {"delete"}})


def test_an_empty_placeholder_is_refused_naming_the_uri():
    with pytest.raises(ValueError, match=r"rule URI 'com\.\{\}\.t' has an empty placeholder \{\}"):
        Rule("com.{}.t")


def test_a_pattern_refusal_names_its_match():
    authorizer = _authorizer(Rule("com.app.", "prefix", {"subscribe"}))
    refusal = authorizer.authorize(_Session(), "subscribe", "org.", "prefix")
    assert refusal == "session 'dev-1' with role 'device' is not authorized to subscribe 'org. (prefix match)'"


def test_forgetting_a_session_never_decided_for_is_harmless_and_decisions_are_kept_per_session():
    authorizer = RoleAuthorizer([])
    authorizer.forget(_Session())
    session = _Session()
    authorizer.authorize(session, "call", "com.x")
    assert list(authorizer.grants_by_session) == [session]
    authorizer.forget(session)
    assert authorizer.grants_by_session == {}


def test_a_wildcard_rule_does_not_cover_a_prefix_request_of_the_same_text():
    """'com.app.' as a wildcard is one level under com.app; as a prefix it is everything under it."""
    authorizer = _authorizer(Rule("com.app.", "wildcard", {"subscribe"}))
    assert _allowed(authorizer, "subscribe", "com.app.", "wildcard")
    assert not _allowed(authorizer, "subscribe", "com.app.", "prefix")


def test_a_rule_whose_placeholder_the_session_cannot_fill_leaves_the_rules_after_it_in_force():
    authorizer = _authorizer(Rule("org.{org}.", "prefix", {"subscribe"}), Rule("org.public.news", allow={"subscribe"}))
    assert _allowed(authorizer, "subscribe", "org.public.news")  # no 'org' claim: the first rule does not apply
    assert not _allowed(authorizer, "subscribe", "org.acme.x", "prefix")
    session = _Session(permissions={"org": "acme"})
    assert _allowed(authorizer, "subscribe", "org.acme.x", "prefix", session=session)
    assert _allowed(authorizer, "subscribe", "org.public.news", session=session)
