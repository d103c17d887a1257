"""Configuration of tenants (realms made at run time): ``[[realm_templates]]``
and ``[tenants]``.  See docs/reference/tenants.md."""

from dataclasses import dataclass
from typing import Any, Callable

from .check import ConfigError
from .check import OPTIONAL, note_key  # what the reader asks, for the configuration reference
from .check import (  # the shared checks, under this module's private names
    array as _list, get as _get, only as _only, table as _table,
)

TOP_LEVEL_KEYS = {"realm_templates", "tenants"}


@dataclass(frozen=True, slots=True)
class TenantsConfig:
    templates: tuple = ()  # config.RealmConfig, named after the template
    default_template: str | None = None
    admin_roles: tuple[str, ...] | None = None  # None: [revocation] admin_roles
    admin_scope: str | None = None  # None: [revocation] admin_scope
    management_realms: tuple[str, ...] | None = None  # None: every configured realm


def tenants(data: dict, realm_names: set[str], parse_realm: Callable[[Any, str], Any]) -> TenantsConfig | None:
    """The tenants section; ``parse_realm(item, key)`` reads a template as router.py reads a realm."""
    items = _list(data, "realm_templates")
    section = data.get("tenants")
    if not items and section is None:
        return None
    templates = tuple(parse_realm(item, f"realm_templates[{i}]") for i, item in enumerate(items))
    for i, template in enumerate(templates):
        jwt = getattr(template.auth, "jwt", None)
        if jwt is not None and not jwt.policy.realm_claim:
            raise ConfigError(
                f"realm_templates[{i}].auth.jwt.realm_claim: required in a template: its keys verify tokens for"
                " every tenant made from it, so a token must name its tenant in a claim (dojot's: \"service\");"
                " a service that serves every tenant joins with a credential of its own (a ticket or cryptosign"
                " principal)")
    names = [t.name for t in templates]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"realm_templates[{i}].name: template '{name}' is configured twice")
    section = {} if section is None else section
    _table(section, "tenants")
    _only(section, "tenants", {"default_template", "admin_roles", "admin_scope", "management_realms"})
    default = _optional(section, "default_template", str)
    if default is None and len(templates) == 1:
        default = templates[0].name
    if default is not None and default not in names:
        raise ConfigError(f"tenants.default_template: no [[realm_templates]] named '{default}'")
    management = _strings(section, "management_realms")
    for name in management or ():
        if name not in realm_names:
            raise ConfigError(f"tenants.management_realms: '{name}' is not a configured realm")
    if not templates:
        raise ConfigError("tenants: needs at least one [[realm_templates]] to make realms from")
    return TenantsConfig(templates=templates, default_template=default,
                         admin_roles=_strings(section, "admin_roles"),
                         admin_scope=_optional(section, "admin_scope", str),
                         management_realms=management)


def _optional(item: dict, name: str, kind) -> Any:
    return _get(item, name, kind, None, "tenants") if name in item else None


def _strings(item: dict, name: str) -> tuple[str, ...] | None:
    note_key("tenants", name, list, OPTIONAL)
    if name not in item:
        return None
    value = item[name]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"tenants.{name}: must be a list of non-empty strings")
    return tuple(value)
