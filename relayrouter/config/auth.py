"""The security parts of the configuration file: authentication per realm,
roles, TLS on listeners, browser origins, revocation and failure limits.

Called from :mod:`relayrouter.config` (realms, listeners and the top level),
with the same checks (:mod:`relayrouter.config.check`); every value is checked here and errors name the key, like the rest of the
file.  Secrets are never inline: a ``secret_env`` names an environment
variable, a ``secret_file`` a file, and both are read now, at start, so a
missing one stops the router with an error naming the key (never the value).
Relative paths are relative to the working directory.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..auth.cryptosign import CryptosignPrincipal
from ..auth.jwt import JwtKey, JwtPolicy
from ..auth.onetime import DEFAULT_LIFETIME
from ..auth.ratelimit import FailureLimits
from ..auth.ticket import TicketPrincipal
from ..auth.tls import CertRule, attribute_name
from ..auth.wampcra import Salt, WampCraPrincipal
from .check import ConfigError
from .check import OPTIONAL, note_key  # what the reader asks, for the configuration reference
from .check import (  # the shared checks, under this module's private names
    array as _list, get as _get, key_name as _name,
    only as _only, positive as _positive, seconds as _seconds,
    table as _table,
)
from ..core.authorization import ACTIONS, Role, Rule
from ..core.matching import MATCH_POLICIES
from ..core.uri import pattern_problem

CLIENT_CERTIFICATES = ("none", "optional", "required")


# ------------------------------------------------------------------ values

@dataclass(frozen=True, slots=True)
class JwtConfig:
    policy: JwtPolicy
    keys: tuple[JwtKey, ...] = ()
    jwks_url: str | None = None
    as_ticket: bool = False
    refresh_interval: float = 60.0


@dataclass(frozen=True, slots=True)
class RealmAuth:
    """Which authmethods a realm takes, with their principals and keys."""

    anonymous_role: str | None = None  # None: anonymous is off
    ticket: Mapping[str, TicketPrincipal] | None = None
    wampcra: Mapping[str, WampCraPrincipal] | None = None
    cryptosign: Mapping[str, CryptosignPrincipal] | None = None
    cryptosign_channel_binding: bool = False
    tls: tuple[CertRule, ...] | None = None
    jwt: JwtConfig | None = None
    one_time_ticket_lifetime: float | None = None  # None: POST /ticket is off for the realm

    def __repr__(self) -> str:  # principals hide their secrets; say only what is on
        on = [m for m in ("ticket", "wampcra", "cryptosign", "tls", "jwt") if getattr(self, m) is not None]
        return f"RealmAuth(anonymous={self.anonymous_role!r}, methods={on})"


@dataclass(frozen=True, slots=True)
class TlsConfig:
    certificate: str
    key: str
    ca: str | None = None
    client_certificates: str = "none"


@dataclass(frozen=True, slots=True)
class HttpConfig:
    allowed_origins: tuple[str, ...] = ("*",)
    public_url: str | None = None  # the WebSocket URL handed out with tickets; None: from the request
    # Networks of reverse proxies whose X-Forwarded-For names the client (proxies.py).
    trusted_proxies: tuple = ()


@dataclass(frozen=True, slots=True)
class RevocationConfig:
    claims: tuple[str, ...] = ("bid", "jti", "sub")
    admin_roles: tuple[str, ...] = ()
    admin_scope: str | None = None
    admin_realm: str | None = None  # whose JWT settings check HTTP admin tokens
    default_ttl: float = 86400.0
    close_grace: float = 2.0


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """Top-level security settings."""

    http: HttpConfig = field(default_factory=HttpConfig)
    revocation: RevocationConfig = field(default_factory=RevocationConfig)
    auth_limits: FailureLimits = field(default_factory=FailureLimits)


TOP_LEVEL_KEYS = {"http", "revocation", "auth_limits"}


# --------------------------------------------------------------- top level

def security(data: dict) -> SecurityConfig:
    return SecurityConfig(
        http=_http(data.get("http", {}), "http"),
        revocation=_revocation(data.get("revocation", {}), "revocation"),
        auth_limits=_auth_limits(data.get("auth_limits", {}), "auth_limits"),
    )


def _http(item: Any, key: str) -> HttpConfig:
    _table(item, key)
    _only(item, key, {"allowed_origins", "public_url", "trusted_proxies"})
    note_key(key, "public_url", str, OPTIONAL)
    note_key(key, "trusted_proxies", list, [])
    origins = _strings(item, "allowed_origins", key, ["*"])
    for origin in origins:
        if origin not in ("*", "null") and "://" not in origin:
            raise ConfigError(f"{key}.allowed_origins: '{origin}' is not an origin like https://app.example.com "
                              "(or \"*\", or \"null\" for pages opened from a file)")
    public_url = item.get("public_url")
    if public_url is not None and not (isinstance(public_url, str) and public_url.startswith(("ws://", "wss://"))):
        raise ConfigError(f"{key}.public_url: must be a ws:// or wss:// URL")
    from ..proxies import parse as parse_proxies

    return HttpConfig(tuple(o.rstrip("/") for o in origins), public_url,
                      parse_proxies(item.get("trusted_proxies"), f"{key}.trusted_proxies"))


def _revocation(item: Any, key: str) -> RevocationConfig:
    _table(item, key)
    _only(item, key, {"claims", "admin_roles", "admin_scope", "admin_realm", "default_ttl", "close_grace"})
    default = RevocationConfig()
    return RevocationConfig(
        claims=tuple(_strings(item, "claims", key, list(default.claims))),
        admin_roles=tuple(_strings(item, "admin_roles", key, [])),
        admin_scope=_optional(item, "admin_scope", str, key),
        admin_realm=_optional(item, "admin_realm", str, key),
        default_ttl=_seconds(item, "default_ttl", default.default_ttl, key),
        close_grace=_seconds(item, "close_grace", default.close_grace, key),
    )


def _auth_limits(item: Any, key: str) -> FailureLimits:
    _table(item, key)
    _only(item, key, {"burst", "per_minute", "address_burst", "address_per_minute", "remember_success",
                      "max_entries"})
    default = FailureLimits()
    limits = FailureLimits(
        burst=_positive(item, "burst", default.burst, key),
        per_minute=_per_minute(item, "per_minute", default.per_minute, key),
        address_burst=_positive(item, "address_burst", default.address_burst, key),
        address_per_minute=_per_minute(item, "address_per_minute", default.address_per_minute, key),
        remember_success=_seconds(item, "remember_success", default.remember_success, key),
        max_entries=_positive(item, "max_entries", default.max_entries, key))
    if limits.address_burst < limits.burst:
        raise ConfigError(f"{key}.address_burst: must be at least {key}.burst ({limits.burst}): it is the "
                          "ceiling for all authids of an address together")
    return limits


def _per_minute(item: dict, name: str, default: float, key: str) -> float:
    value = _get(item, name, (int, float), default, key)
    if value <= 0:
        raise ConfigError(f"{_name(key, name)}: must be a positive number of failures per minute")
    return float(value)


# ---------------------------------------------------------------- listeners

def listener_tls(item: Any, key: str) -> TlsConfig | None:
    if item is None:
        return None
    _table(item, key)
    _only(item, key, {"certificate", "key", "ca", "client_certificates"})
    mode = _get(item, "client_certificates", str, "none", key)
    if mode not in CLIENT_CERTIFICATES:
        raise ConfigError(f"{key}.client_certificates: must be one of {', '.join(CLIENT_CERTIFICATES)}, not {mode!r}")
    ca = _optional(item, "ca", str, key)
    if mode != "none" and ca is None:
        raise ConfigError(f"{key}.ca: required when client_certificates is '{mode}' (the CA bundle to verify them)")
    tls = TlsConfig(_get(item, "certificate", str, None, key), _get(item, "key", str, None, key), ca, mode)
    for name in ("certificate", "key", "ca"):
        path = getattr(tls, name)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{key}.{name}: file '{path}' does not exist")
    return tls


# -------------------------------------------------------------------- realms

REALM_KEYS = {"auth", "roles"}
AUTH_METHODS = {"anonymous", "ticket", "wampcra", "cryptosign", "tls", "jwt", "one_time_tickets"}


def realm_auth(item: dict, key: str) -> RealmAuth | None:
    section = item.get("auth")
    if section is None:
        return None
    key = f"{key}.auth"
    _table(section, key)
    _only(section, key, AUTH_METHODS)
    jwt = _jwt(section["jwt"], f"{key}.jwt") if "jwt" in section else None
    auth = RealmAuth(
        anonymous_role=_anonymous(section.get("anonymous"), f"{key}.anonymous"),
        ticket=_principals(section, "ticket", key, _ticket_principal),
        wampcra=_principals(section, "wampcra", key, _wampcra_principal),
        cryptosign=_principals(section, "cryptosign", key, _cryptosign_principal,
                               extra={"require_channel_binding"}),
        cryptosign_channel_binding=_get(section.get("cryptosign", {}), "require_channel_binding", bool,
                                        False, f"{key}.cryptosign"),
        tls=_tls_rules(section.get("tls"), f"{key}.tls"),
        jwt=jwt,
        one_time_ticket_lifetime=_one_time(section.get("one_time_tickets"), f"{key}.one_time_tickets"),
    )
    if auth.one_time_ticket_lifetime is not None and jwt is None:
        raise ConfigError(f"{key}.one_time_tickets: needs [realms.auth.jwt] (tickets are minted for JWTs)")
    return auth


def _anonymous(item: Any, key: str) -> str | None:
    if item is None:
        return None
    _table(item, key)
    _only(item, key, {"role"})
    return _get(item, "role", str, "anonymous", key)


def _one_time(item: Any, key: str) -> float | None:
    if item is None:
        return None
    _table(item, key)
    _only(item, key, {"lifetime"})
    return _seconds(item, "lifetime", DEFAULT_LIFETIME, key)


def _principals(section: dict, method: str, key: str, build, extra=frozenset()) -> dict | None:
    if method not in section:
        return None
    item, key = section[method], f"{key}.{method}"
    _table(item, key)
    _only(item, key, {"principals"} | set(extra))
    principals = {}
    for i, p in enumerate(_list(item, "principals")):
        pkey = f"{key}.principals[{i}]"
        _table(p, pkey)
        authid = _get(p, "authid", str, None, pkey)
        if authid in principals:
            raise ConfigError(f"{pkey}.authid: '{authid}' is listed twice")
        try:
            principals[authid] = build(p, pkey)
        except ValueError as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{pkey}: {e}") from None
    if not principals and method != "ticket":
        raise ConfigError(f"{key}.principals: list at least one principal")
    return principals


def _ticket_principal(p: dict, key: str) -> TicketPrincipal:
    _only(p, key, {"authid", "role", "secret_env", "secret_file"} | {"secret"})
    return TicketPrincipal(_secret(p, key), _get(p, "role", str, None, key))


def _wampcra_principal(p: dict, key: str) -> WampCraPrincipal:
    _only(p, key, {"authid", "role", "secret_env", "secret_file", "secret", "salt", "iterations", "keylen"})
    salt = None
    if "salt" in p:
        salt = Salt(_get(p, "salt", str, None, key), _positive(p, "iterations", 1000, key),
                    _positive(p, "keylen", 32, key))
    return WampCraPrincipal(_secret(p, key), _get(p, "role", str, None, key), salt)


def _cryptosign_principal(p: dict, key: str) -> CryptosignPrincipal:
    _only(p, key, {"authid", "role", "pubkeys"})
    return CryptosignPrincipal(tuple(_strings(p, "pubkeys", key, None)), _get(p, "role", str, None, key))


def _tls_rules(item: Any, key: str) -> tuple[CertRule, ...] | None:
    if item is None:
        return None
    _table(item, key)
    _only(item, key, {"rules"})
    rules = []
    for i, r in enumerate(_list(item, "rules")):
        rkey = f"{key}.rules[{i}]"
        _table(r, rkey)
        _only(r, rkey, {"role", "authid", "realm", "subject_cn", "san", "sha256", "issuer_cn", "subject", "issuer"})
        fields = {n: _optional(r, n, str, rkey) for n in ("authid", "realm", "subject_cn", "san", "sha256", "issuer_cn")}
        try:
            rules.append(CertRule(authrole=_get(r, "role", str, None, rkey), **fields,
                                  subject=_name_matchers(r, "subject", rkey),
                                  issuer=_name_matchers(r, "issuer", rkey)))
        except ValueError as e:
            raise ConfigError(f"{rkey}: {e}") from None
    if not rules:
        raise ConfigError(f"{key}.rules: list at least one identity rule")
    return tuple(rules)


def _name_matchers(rule: dict, name: str, key: str) -> tuple[tuple[str, str], ...]:
    """``subject = { o = "regex", ou = "regex" }``: one regex per name attribute."""
    note_key(key, name, dict, OPTIONAL)
    table = rule.get(name)
    if table is None:
        return ()
    _table(table, f"{key}.{name}")
    matchers = []
    for attr, regex in table.items():
        if not isinstance(regex, str):
            raise ConfigError(f"{key}.{name}.{attr}: must be a string (a regex), not {type(regex).__name__}")
        try:
            attribute_name(attr)
        except ValueError as e:
            raise ConfigError(f"{key}.{name}.{attr}: {e}") from None
        matchers.append((attr, regex))
    if not matchers:
        raise ConfigError(f"{key}.{name}: give at least one attribute, e.g. {{ o = \"...\" }}")
    return tuple(matchers)


# ----------------------------------------------------------------------- JWT

_JWT_KEYS = {"algorithms", "audience", "issuer", "leeway", "authid_claim", "authrole_claim", "authrole",
             "as_ticket", "require_exp", "keys", "refresh_interval", "realm_claim"}
_KEY_SOURCES = ("secret_env", "secret_file", "public_key_file", "jwks_file", "jwks_url")


def _jwt(item: Any, key: str) -> JwtConfig:
    _table(item, key)
    _only(item, key, _JWT_KEYS)
    try:
        policy = JwtPolicy(
            algorithms=tuple(_strings(item, "algorithms", key, None)),
            audience=_optional(item, "audience", str, key),
            issuer=_optional(item, "issuer", str, key),
            leeway=float(_get(item, "leeway", (int, float), 0, key)),
            authid_claim=_get(item, "authid_claim", str, "sub", key),
            authrole_claim=_optional(item, "authrole_claim", str, key),
            authrole=_optional(item, "authrole", str, key),
            require_exp=_get(item, "require_exp", bool, True, key),
            realm_claim=_optional(item, "realm_claim", str, key),
        )
    except ValueError as e:
        raise ConfigError(f"{key}: {e}") from None
    if policy.realm_claim == "":
        raise ConfigError(f"{key}.realm_claim: must name a claim (e.g. \"service\")")
    keys, urls, kidless = [], [], []
    for i, k in enumerate(_list(item, "keys")):
        source, value = _jwt_key(k, f"{key}.keys[{i}]")
        if source == "jwks_url":
            urls.append(value)
        else:
            keys.extend(value)
            if source != "jwks_file" and value[0].kid is None:
                kidless.append(i)
    if len(urls) > 1:
        raise ConfigError(f"{key}.keys: at most one jwks_url per realm")
    if urls and kidless:
        # A key without a kid matches any token whose kid it does not know: the
        # identity provider's tokens would be checked against it, never the JWKS.
        raise ConfigError(f"{key}.keys[{kidless[0]}]: give it a kid: beside a jwks_url, a key without one "
                          "would be tried for every token whose kid is not its own")
    if not keys and not urls:
        raise ConfigError(f"{key}.keys: give at least one key (secret_env, secret_file, public_key_file, "
                          "jwks_file or jwks_url)")
    return JwtConfig(policy, tuple(keys), urls[0] if urls else None,
                     _get(item, "as_ticket", bool, False, key),
                     _seconds(item, "refresh_interval", 60.0, key))


def _jwt_key(k: Any, key: str) -> tuple[str, Any]:
    _table(k, key)
    _only(k, key, {"kid", "algorithms", "secret", *_KEY_SOURCES})
    for noted in _KEY_SOURCES:
        note_key(key, noted, str, OPTIONAL)
    given = [s for s in _KEY_SOURCES if s in k]
    if "secret" in k:
        _secret(k, key)  # raises the "never inline" error
    if len(given) != 1:
        raise ConfigError(f"{key}: give exactly one of {', '.join(_KEY_SOURCES)}")
    kid = _optional(k, "kid", str, key)
    algorithms = tuple(_strings(k, "algorithms", key, []))
    source = given[0]
    try:
        if source in ("secret_env", "secret_file"):
            return source, [JwtKey.hmac(_secret(k, key), kid, algorithms)]
        if source == "public_key_file":
            return source, [JwtKey.from_pem(_read(k, source, key), kid, algorithms)]
        if source == "jwks_file":
            from ..auth.jwks import read_jwks_file
            return source, list(read_jwks_file(_get(k, source, str, None, key)))
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{key}: {e}") from None
    url = _get(k, "jwks_url", str, None, key)
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"{key}.jwks_url: must be an http:// or https:// URL")
    return source, url


# --------------------------------------------------------------------- roles

def realm_roles(item: dict, key: str) -> tuple[Role, ...] | None:
    if "roles" not in item:
        return None
    roles, names = [], set()
    for i, r in enumerate(_list(item, "roles")):
        rkey = f"{key}.roles[{i}]"
        _table(r, rkey)
        _only(r, rkey, {"name", "rules", "scopes_claim"})
        name = _get(r, "name", str, None, rkey)
        if name in names:
            raise ConfigError(f"{rkey}.name: role '{name}' is configured twice")
        names.add(name)
        rules = tuple(_rule(rule, f"{rkey}.rules[{j}]") for j, rule in enumerate(_list(r, "rules")))
        roles.append(Role(name, rules, _get(r, "scopes_claim", str, "scopes", rkey)))
    return tuple(roles)


def _rule(item: Any, key: str) -> Rule:
    _table(item, key)
    _only(item, key, {"uri", "match", "allow", "scopes", "disclose"})
    uri = _get(item, "uri", str, None, key)
    match = _get(item, "match", str, "exact", key)
    if match not in MATCH_POLICIES:
        raise ConfigError(f"{key}.match: must be one of {', '.join(MATCH_POLICIES)}, not {match!r}")
    problem = pattern_problem(uri.replace("{", "").replace("}", ""), match)
    if problem is not None:
        raise ConfigError(f"{key}.uri: {problem}")
    scopes = item.get("scopes", {})
    _table(scopes, f"{key}.scopes")
    disclose = item.get("disclose", {})
    _table(disclose, f"{key}.disclose")
    _only(disclose, f"{key}.disclose", {"caller", "publisher"})
    try:
        return Rule(
            uri=uri, match=match,
            allow=frozenset(_actions(item, "allow", key)),
            scopes={s: frozenset(_actions(scopes, s, f"{key}.scopes")) for s in scopes},
            disclose_caller=_get(disclose, "caller", bool, False, f"{key}.disclose"),
            disclose_publisher=_get(disclose, "publisher", bool, False, f"{key}.disclose"),
        )
    except ValueError as e:
        raise ConfigError(f"{key}: {e}") from None


def _actions(item: dict, name: str, key: str) -> list[str]:
    actions = _strings(item, name, key, [])
    for action in actions:
        if action not in ACTIONS:
            raise ConfigError(f"{_name(key, name)}: unknown action '{action}' (use {', '.join(ACTIONS)})")
    return actions


# ------------------------------------------------------------------- helpers

def _secret(item: dict, key: str) -> str:
    for noted in ("secret_env", "secret_file", "secret"):
        note_key(key, noted, str, OPTIONAL)
    if "secret" in item:
        raise ConfigError(f"{key}.secret: inline secrets are not accepted; use secret_env or secret_file")
    if "secret_env" in item:
        var = _get(item, "secret_env", str, None, key)
        value = os.environ.get(var)
        if not value:
            raise ConfigError(f"{key}.secret_env: environment variable {var} is not set or empty")
        return value
    if "secret_file" in item:
        value = _read(item, "secret_file", key).decode("utf8").rstrip("\r\n")
        if not value:
            raise ConfigError(f"{key}.secret_file: the file is empty")
        return value
    raise ConfigError(f"{key}: give secret_env or secret_file")


def _read(item: dict, name: str, key: str) -> bytes:
    path = _get(item, name, str, None, key)
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{_name(key, name)}: cannot read '{path}': {e.strerror}") from None


def _strings(item: dict, name: str, key: str, default) -> list[str]:
    note_key(key, name, list, default)
    value = item.get(name, default)
    if value is None:
        raise ConfigError(f"{_name(key, name)}: required")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{_name(key, name)}: must be a list of strings")
    return value


def _optional(item: dict, name: str, kind, key: str):
    note_key(key, name, kind, OPTIONAL)
    if name not in item:
        return None
    return _get(item, name, kind, None, key)
