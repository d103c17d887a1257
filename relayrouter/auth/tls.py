"""TLS client-certificate authentication with identity rules.

The TLS layer has already verified the certificate chain against the
configured CA; here we only map the verified certificate to an identity.  The
certificate arrives as Autobahn's ``peer_certificate_details`` dict
(``TransportInfo.peer_cert``): ``subject``/``issuer`` as ``{"cn": ..., "o": ...}``
(OpenSSL short names in lower case),
``sha256`` as ``"AB:CD:..."`` and ``extensions`` as ``[{"name", "value"}]``
with ``subjectAltName`` printed the OpenSSL way (``DNS:a, IP Address:1.2.3.4``).

Rules are tried in order; the first whose every given matcher matches wins.
A rule matches any subject or issuer attribute (``subject={"o": regex}``;
``subject_cn``/``issuer_cn`` are short for the CN), SAN entries and the
SHA-256 fingerprint.  An attribute the certificate does not carry never
matches.  Regex named groups, plus ``cn`` and ``sha256``, fill the rule's
templates::

    CertRule(subject_cn=r"^(?P<realm>[^:]+):(?P<authid>.+)$", authrole="device")
    # CN "tenant:device-7" -> realm "tenant", authid "device-7"
    CertRule(subject=(("o", "Micronets Manager Cert"),), authid="manager:8675309:00224dd149bb",
             authrole="manager")
    # a certificate with only O= (no CN) gets its authid from the rule

Without a template, authid is the ``authid`` group if the rule has one, else
the CN; realm is the ``realm`` group if any, else the realm of the HELLO.
"""

import re
import string
from dataclasses import dataclass, field

from ..core.auth import Accept, Deny, JoinRequest

_BUILTIN_FIELDS = frozenset({"cn", "sha256"})

# Subject and issuer attributes by the lower-case name Autobahn gives them
# (OpenSSL's short name); an attribute without one is named by its dotted OID.
ATTRIBUTES = frozenset({
    "cn", "c", "l", "st", "street", "o", "ou", "serialnumber", "surname", "givenname", "title",
    "generationqualifier", "x500uniqueidentifier", "dnqualifier", "pseudonym", "uid", "dc",
    "emailaddress", "jurisdictioncountryname", "jurisdictionlocalityname",
    "jurisdictionstateorprovincename", "businesscategory", "postaladdress", "postalcode",
    "unstructuredname", "inn", "ogrn", "snils"})
_DOTTED_OID = re.compile(r"[0-9]+(\.[0-9]+)+")


def attribute_name(name: str) -> str:
    """The key under which ``name`` (``O``, ``serialNumber``, ``2.5.4.97``) appears in a certificate's details."""
    key = name.strip().lower()
    if key not in ATTRIBUTES and not _DOTTED_OID.fullmatch(key):
        raise ValueError(f"'{name}' is not a certificate name attribute (e.g. CN, O, OU, serialNumber, "
                         "emailAddress, or a dotted OID)")
    return key


@dataclass(frozen=True, slots=True)
class CertRule:
    authrole: str  # template
    authid: str | None = None  # template
    realm: str | None = None  # template
    subject_cn: str | None = None  # regex, full match
    san: str | None = None  # regex matched against each SAN entry, e.g. "DNS:(?P<authid>.+)"
    sha256: str | None = None  # fingerprint, with or without colons
    issuer_cn: str | None = None  # regex, full match
    subject: tuple[tuple[str, str], ...] = ()  # (attribute, regex) pairs, e.g. (("o", "Acme"),)
    issuer: tuple[tuple[str, str], ...] = ()
    _patterns: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = tuple((name, _compile(name, getattr(self, name)))
                         for name in ("subject_cn", "san", "issuer_cn") if getattr(self, name))
        patterns += tuple(((side, attribute_name(attr)), _compile(f"{side}.{attr}", regex))
                          for side in ("subject", "issuer") for attr, regex in getattr(self, side))
        object.__setattr__(self, "_patterns", patterns)
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", _fingerprint(self.sha256))
        if not patterns and self.sha256 is None:
            raise ValueError(f"certificate rule for role '{self.authrole}' matches nothing: "
                             "give subject, issuer, subject_cn, san, sha256 or issuer_cn")
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


_SHORTHANDS = {"subject_cn": ("subject", "cn"), "issuer_cn": ("issuer", "cn")}


@dataclass(frozen=True, slots=True)
class _Cert:
    subject: dict
    issuer: dict
    sha256: str
    sans: tuple[str, ...]

    @classmethod
    def from_details(cls, details: dict) -> "_Cert":
        return cls(
            subject=_names(details.get("subject")),
            issuer=_names(details.get("issuer")),
            sha256=_fingerprint(details.get("sha256") or ""),
            sans=_sans(details.get("extensions") or ()),
        )

    @property
    def subject_cn(self) -> str:
        return self.subject.get("cn", "")

    def describe(self) -> str:
        """The subject as people read it, e.g. ``O=Micronets Manager Cert``."""
        return ", ".join(f"{k.upper() if len(k) <= 2 else k}={v}" for k, v in self.subject.items()) or "empty"

    def values_for(self, matcher) -> tuple[str, ...]:
        """What a matcher is tried against; an attribute the certificate lacks gives nothing."""
        if matcher == "san":
            return self.sans
        side, attr = _SHORTHANDS.get(matcher, matcher)
        value = getattr(self, side).get(attr)
        return () if value is None else (value,)


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
        return Deny(f"no identity rule matches the client certificate (subject '{cert.describe()}')")

    def authenticate(self, request, state, signature, extra) -> Deny:
        return Deny("TLS client-certificate authentication takes no challenge")

    def _accept(self, rule: CertRule, fields: dict, request: JoinRequest, cert: _Cert) -> Accept | Deny:
        authid, authrole, realm = rule.identity(fields, request.realm)
        empty = [name for name, value in (("authid", authid), ("authrole", authrole), ("realm", realm)) if not value]
        if empty:
            hint = ": a certificate without a CN needs a rule that sets authid" if not authid else ""
            return Deny(f"the identity rule gave an empty {' and '.join(empty)} for the client certificate "
                        f"(subject '{cert.describe()}'){hint}")
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


def _names(name) -> dict:
    return {str(k).lower(): str(v) for k, v in name.items()} if isinstance(name, dict) else {}


def _sans(extensions) -> tuple[str, ...]:
    for ext in extensions:
        if ext.get("name") == "subjectAltName":
            return tuple(v.strip() for v in str(ext.get("value", "")).split(",") if v.strip())
    return ()
