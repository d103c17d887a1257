"""[[realm_templates]] and [tenants]: parsed, checked, errors naming the key."""

import pytest

from relayrouter import config as cfg


JWT = {"algorithms": ["HS256"], "authrole": "user", "keys": [{"secret_env": "TENANT_TEST_JWT_SECRET"}]}


def parse(**top):
    return cfg.parse({"realms": [{"name": "mgmt"}], **top})


def test_a_templates_jwt_names_the_claim_that_names_the_tenant(monkeypatch):
    monkeypatch.setenv("TENANT_TEST_JWT_SECRET", "x" * 40)
    c = parse(realm_templates=[{"name": "a", "auth": {"jwt": dict(JWT, realm_claim="service")}}])
    assert c.tenants.templates[0].auth.jwt.policy.realm_claim == "service"


def test_templates_and_defaults():
    c = parse(realm_templates=[{"name": "tenant", "anonymous": False}])
    assert c.tenants.default_template == "tenant"
    assert c.tenants.templates[0].name == "tenant" and c.tenants.templates[0].anonymous is False
    assert c.tenants.admin_roles is None and c.tenants.management_realms is None
    c = parse(realm_templates=[{"name": "a"}, {"name": "b"}],
              tenants={"default_template": "b", "admin_roles": ["ops"], "admin_scope": "tenants:admin",
                       "management_realms": ["mgmt"]})
    assert (c.tenants.default_template, c.tenants.admin_roles, c.tenants.admin_scope,
            c.tenants.management_realms) == ("b", ("ops",), "tenants:admin", ("mgmt",))
    assert parse().tenants is None


@pytest.mark.parametrize("top, words", [
    ({"tenants": {}}, "tenants: needs at least one [[realm_templates]]"),
    ({"realm_templates": [{"name": "a"}, {"name": "a"}]}, "realm_templates[1].name: template 'a' is configured twice"),
    ({"realm_templates": [{"name": "a", "colour": 1}]}, "realm_templates[0].colour: unknown key"),
    ({"realm_templates": [{"name": "a"}], "tenants": {"default_template": "b"}},
     "tenants.default_template: no [[realm_templates]] named 'b'"),
    ({"realm_templates": [{"name": "a"}], "tenants": {"management_realms": ["other"]}},
     "tenants.management_realms: 'other' is not a configured realm"),
    ({"realm_templates": [{"name": "a"}], "tenants": {"admin_roles": "admin"}},
     "tenants.admin_roles: must be a list of non-empty strings"),
    ({"realm_templates": [{"name": "a"}], "tenants": {"admin": 1}}, "tenants.admin: unknown key"),
    # A template's tenants share its JWT keys: a token must name its tenant.
    ({"realm_templates": [{"name": "a"}, {"name": "b", "auth": {"jwt": JWT}}]},
     "realm_templates[1].auth.jwt.realm_claim: required in a template"),
    ({"realm_templates": [{"name": "a", "auth": {"jwt": dict(JWT, realm_claim="")}}]},
     "realm_templates[0].auth.jwt.realm_claim: must name a claim"),
    ({"realms": [{"name": "mgmt", "auth": {"jwt": dict(JWT, realm_claim="")}}]},
     "realms[0].auth.jwt.realm_claim: must name a claim"),
])
def test_errors_name_the_key(top, words, monkeypatch):
    monkeypatch.setenv("TENANT_TEST_JWT_SECRET", "x" * 40)
    with pytest.raises(cfg.ConfigError) as caught:
        parse(**top)
    assert words in str(caught.value)
