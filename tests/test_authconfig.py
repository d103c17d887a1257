"""Errors in the security configuration name the key, never a secret."""

import pytest

from relayrouter.config import ConfigError, parse


def realm(auth=None, **extra):
    return {"realms": [{"name": "r", **({"auth": auth} if auth is not None else {}), **extra}]}


def principal(**kw):
    return {"ticket": {"principals": [{"authid": "a", "role": "u", **kw}]}}


@pytest.mark.parametrize("data, message", [
    (realm(principal(secret_env="RELAYROUTER_TEST_UNSET")),
     "realms[0].auth.ticket.principals[0].secret_env: environment variable RELAYROUTER_TEST_UNSET is not set"),
    (realm(principal(secret="inline-value")), "inline secrets are not accepted"),
    (realm(principal()), "give secret_env or secret_file"),
    (realm({"jwt": {"algorithms": ["none"], "authrole": "x", "keys": [{"jwks_url": "https://x"}]}}),
     "realms[0].auth.jwt: JWT algorithm 'none' is not supported"),
    (realm({"jwt": {"algorithms": ["HS256"], "authrole": "x", "keys": [{"secret_env": "SHORT"}]}}),
     "needs at least 32"),
    (realm({"one_time_tickets": {}}), "needs [realms.auth.jwt]"),
    (realm({"jwt": {"algorithms": ["HS256"], "authrole": "x", "realm_claim": ["service"],
                    "keys": [{"secret_env": "LONG"}]}}), "realms[0].auth.jwt.realm_claim: must be"),
    (realm({"jwt": {"algorithms": ["HS256", "RS256"], "authrole": "x",
                    "keys": [{"jwks_url": "https://idp.example/jwks.json"}, {"secret_env": "LONG"}]}}),
     "realms[0].auth.jwt.keys[1]: give it a kid: beside a jwks_url"),
    (realm(roles=[{"name": "x", "rules": [{"uri": "a.b", "allow": ["read"]}]}]),
     "realms[0].roles[0].rules[0].allow: unknown action 'read'"),
    ({"listeners": [{"type": "websocket", "endpoint": "tcp:1",
                     "tls": {"certificate": "c", "key": "k", "client_certificates": "required"}}]},
     "listeners[0].tls.ca: required"),
    ({"http": {"allowed_origins": ["app.example.com"]}}, "http.allowed_origins"),
    ({"auth_limits": {"burts": 5}}, "auth_limits.burts: unknown key"),
    (realm({"tls": {"rules": [{"role": "m", "authid": "a", "subject": {"org": "x"}}]}}),
     "realms[0].auth.tls.rules[0].subject.org: 'org' is not a certificate name attribute"),
    (realm({"tls": {"rules": [{"role": "m", "authid": "a", "subject": {"o": 5}}]}}),
     "realms[0].auth.tls.rules[0].subject.o: must be a string (a regex), not int"),
    (realm({"tls": {"rules": [{"role": "m", "authid": "a", "issuer": {}}]}}),
     "realms[0].auth.tls.rules[0].issuer: give at least one attribute"),
    (realm({"tls": {"rules": [{"role": "m", "authid": "a", "subject": {"O": "(open"}}]}}),
     "realms[0].auth.tls.rules[0]: certificate rule subject.O '(open' is not a valid regex"),
    ({"auth_limits": {"burst": 0}}, "auth_limits.burst: must be positive"),
    ({"auth_limits": {"address_per_minute": -1}}, "auth_limits.address_per_minute: must be a positive number"),
    ({"auth_limits": {"per_minute": "10"}}, "auth_limits.per_minute: must be int or float, not str"),
    ({"auth_limits": {"burst": 50, "address_burst": 20}}, "auth_limits.address_burst: must be at least"),
    ({"auth_limits": {"remember_success": 0}}, "auth_limits.remember_success: must be a positive number"),
])
def test_errors_name_the_key(monkeypatch, data, message):
    monkeypatch.setenv("SHORT", "too-short")
    monkeypatch.setenv("LONG", "long-enough-secret-0123456789abcdef")
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert message in str(info.value)
    assert "inline-value" not in str(info.value) and "too-short" not in str(info.value)


def test_tls_rule_subject_and_issuer_tables():
    rules = parse(realm({"tls": {"rules": [{"role": "manager", "authid": "m", "subject": {"O": "Micronets Manager Cert"},
                                             "issuer": {"o": "Micronets-WS-Root"}}]}})).realms[0].auth.tls
    assert rules[0].subject == (("O", "Micronets Manager Cert"),) and rules[0].issuer == (("o", "Micronets-WS-Root"),)


def test_auth_section_turns_anonymous_off_unless_configured(monkeypatch):
    monkeypatch.setenv("T", "ticket-secret")
    assert parse(realm(principal(secret_env="T"))).realms[0].anonymous is False
    assert parse(realm({**principal(secret_env="T"), "anonymous": {"role": "guest"}})).realms[0].auth.anonymous_role == "guest"
    assert parse(realm()).realms[0].anonymous is True


def test_auth_limits_defaults_and_values():
    from relayrouter.auth.ratelimit import FailureLimits

    assert parse({}).security.auth_limits == FailureLimits(
        burst=10, per_minute=10.0, address_burst=100, address_per_minute=60.0, remember_success=86400.0,
        max_entries=100_000)
    given = {"burst": 5, "per_minute": 2, "address_burst": 500, "address_per_minute": 120,
             "remember_success": 3600, "max_entries": 1000}
    assert parse({"auth_limits": given}).security.auth_limits == FailureLimits(**given)
