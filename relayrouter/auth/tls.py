"""TLS client-certificate authentication with identity rules.

The TLS layer has already verified the certificate chain against the
configured CA; here we only map the verified certificate to an identity.  The
certificate arrives as Autobahn's ``peer_certificate_details`` dict
(``TransportInfo.peer_cert``): ``subject``/``issuer`` as ``{"cn": ...}``,
``sha256`` as ``"AB:CD:..."`` and ``extensions`` as ``[{"name", "value"}]``
with ``subjectAltName`` printed the OpenSSL way (``DNS:a, IP Address:1.2.3.4``).

Rules are tried in order; the first whose every given matcher matches wins.
Regex named groups, plus ``cn`` and ``sha256``, fill the rule's templates::

    CertRule(subject_cn=r"^(?P<realm>[^:]+):(?P<authid>.+)$", authrole="device")
    # CN "tenant:device-7" -> realm "tenant", authid "device-7"

Without a template, authid is the ``authid`` group if the rule has one, else
the CN; realm is the ``realm`` group if any, else the realm of the HELLO.
"""

import re
import string
from dataclasses import dataclass, field

from ..core.auth import Accept, Deny, JoinRequest

_BUILTIN_FIELDS = frozenset({"cn", "sha256"})


@dataclass(frozen=True, slots=True)
class CertRule:
    authrole: str  # template
    authid: str | None = None  # template
    realm: str | None = None  # template
    subject_cn: str | None = None  # regex, full match
    san: str | None = None  # regex matched against each SAN entry, e.g. "DNS:(?P<authid>.+)"
    sha256: str | None = None  # fingerprint, with or without colons
    issuer_cn: str | None = None  # regex, full match
    _patterns: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = tuple((name, _compile(name, getattr(self, name)))
                         for name in ("subject_cn", "san", "issuer_cn") if getattr(self, name))
        object.__setattr__(self, "_patterns", patterns)
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", _fingerprint(self.sha256))
        if not patterns and self.sha256 is None:
            raise ValueError(f"certificate rule for role '{self.authrole}' matches nothing: "
                             "give subject_cn, san, sha256 or issuer_cn")
        groups = {g for _, p in patterns for g in p.groupindex} | _BUILTIN_FIELDS
        for template in (self.authrole, self.authid, self.realm):
            _check_template(template, groups)

    def match(self, cert: "_Cert") -> dict | None:
        """The fields this rule extracts from ``cert``, or None if it does not match."""
        if self.sha256 is not None and self.sha256 != cert.sha256:
            return None
        fields = {"cn": cert.subject_cn, "sha256": cert.sha256}
        for name, pattern in self._patterns:
            groups = _match_any(pattern, cert.values_for(name))
            if groups is None:
                return None
            fields.update(groups)
        return fields

    def identity(self, fields: dict, hello_realm: str) -> tuple[str, str, str]:
        authid = _fill(self.authid, fields) if self.authid else (fields.get("authid") or fields["cn"])
        realm = _fill(self.realm, fields) if self.realm else (fields.get("realm") or hello_realm)
        return authid, _fill(self.authrole, fields), realm


@dataclass(frozen=True, slots=True)
class _Cert:
    subject_cn: str
    issuer_cn: str
    sha256: str
    sans: tuple[str, ...]

    @classmethod
    def from_details(cls, details: dict) -> "_Cert":
        return cls(
            subject_cn=(details.get("subject") or {}).get("cn", ""),
            issuer_cn=(details.get("issuer") or {}).get("cn", ""),
            sha256=_fingerprint(details.get("sha256") or ""),
            sans=_sans(details.get("extensions") or ()),
        )

    def values_for(self, matcher: str) -> tuple[str, ...]:
        if matcher == "san":
            return self.sans
        return (getattr(self, matcher),)


class TlsAuthenticator:
    authmethod = "tls"

    def __init__(self, rules: list[CertRule] | tuple[CertRule, ...], *,
                 authprovider: str = "tls") -> None:
        self.rules = tuple(rules)
        self.authprovider = authprovider

    def hello(self, request: JoinRequest) -> Accept | Deny:
        transport = request.transport
        if not transport.is_secure:
            return Deny("TLS client-certificate authentication needs a TLS connection")
        if not transport.peer_cert:
            return Deny("no TLS client certificate was presented")
        if transport.peer_cert.get("expired"):
            return Deny("the TLS client certificate has expired")
        cert = _Cert.from_details(transport.peer_cert)
        for rule in self.rules:
            fields = rule.match(cert)
            if fields is not None:
                return self._accept(rule, fields, request, cert)
        return Deny(f"no identity rule matches the client certificate (CN '{cert.subject_cn}')")

    def authenticate(self, request, state, signature, extra) -> Deny:
        return Deny("TLS client-certificate authentication takes no challenge")

    def _accept(self, rule: CertRule, fields: dict, request: JoinRequest, cert: _Cert) -> Accept | Deny:
        authid, authrole, realm = rule.identity(fields, request.realm)
        if not authid or not authrole or not realm:
            return Deny(f"the identity rule gave an empty authid, authrole or realm for CN '{cert.subject_cn}'")
        return Accept(authid, authrole, "tls", authprovider=self.authprovider,
                      authextra={"sha256": cert.sha256}, realm=realm)


def _compile(name: str, pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"certificate rule {name} '{pattern}' is not a valid regex: {e}") from None


def _check_template(template: str | None, groups: set[str]) -> None:
    if template is None:
        return
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name not in groups:
            raise ValueError(f"template '{template}' uses '{{{name}}}', which no matcher of the "
                             f"rule provides (have: {', '.join(sorted(groups))})")


def _fill(template: str, fields: dict) -> str:
    return template.format_map({k: v or "" for k, v in fields.items()})


def _match_any(pattern: re.Pattern, values: tuple[str, ...]) -> dict | None:
    for value in values:
        found = pattern.fullmatch(value)
        if found is not None:
            return found.groupdict()
    return None


def _fingerprint(text: str) -> str:
    return text.replace(":", "").strip().upper()


def _sans(extensions) -> tuple[str, ...]:
    for ext in extensions:
        if ext.get("name") == "subjectAltName":
            return tuple(v.strip() for v in str(ext.get("value", "")).split(",") if v.strip())
    return ()
