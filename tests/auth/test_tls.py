import datetime
import ipaddress

import pytest
from autobahn.util import peer_certificate_details
from autobahn.wamp import message as m
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from relayrouter.auth.tls import CertRule, TlsAuthenticator
from relayrouter.core.auth import Accept, Deny
from relayrouter.core.peer import TransportInfo

from .wire import Wire, assert_abort, request

CA_KEY = ec.generate_private_key(ec.SECP256R1())


def cert(cn: str | None, sans=(), issuer_cn="dev CA", subject=()) -> dict:
    """A real CA-signed certificate, as autobahn describes it in TransportDetails.peer_cert;
    ``subject`` adds (NameOID, value) attributes, ``cn=None`` leaves the CN out."""
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.NameAttribute(oid, value) for oid, value in subject]
    if cn is not None:
        names.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name(names))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
               .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=1)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return peer_certificate_details(builder.sign(CA_KEY, hashes.SHA256()))


def tls(peer_cert) -> TransportInfo:
    return TransportInfo(kind="websocket", is_secure=True, peer_cert=peer_cert)


TENANT_RULE = CertRule(subject_cn=r"(?P<realm>[^:]+):(?P<authid>.+)", authrole="device")


def test_cn_rule_maps_realm_and_authid():
    decision = TlsAuthenticator([TENANT_RULE]).hello(request(transport=tls(cert("tenant:device-7"))))
    assert isinstance(decision, Accept)
    assert (decision.authid, decision.authrole, decision.realm) == ("device-7", "device", "tenant")
    assert decision.authmethod == "tls"


def test_first_matching_rule_wins():
    rules = [CertRule(subject_cn=r"admin-.*", authrole="admin"), CertRule(subject_cn=r".*", authrole="user")]
    decision = TlsAuthenticator(rules).hello(request(transport=tls(cert("admin-1"))))
    assert (decision.authid, decision.authrole, decision.realm) == ("admin-1", "admin", "realm1")


def test_san_rule_with_templates():
    rule = CertRule(san=r"DNS:(?P<host>[a-z0-9-]+)\.gw\.example", authid="gw-{host}", authrole="gateway")
    peer = cert("whatever", sans=[x509.DNSName("box-3.gw.example"), x509.IPAddress(ipaddress.ip_address("10.0.0.1"))])
    decision = TlsAuthenticator([rule]).hello(request(transport=tls(peer)))
    assert (decision.authid, decision.authrole) == ("gw-box-3", "gateway")


def test_fingerprint_rule_accepts_with_or_without_colons():
    peer = cert("pinned")
    bare = peer["sha256"].replace(":", "").lower()
    decision = TlsAuthenticator([CertRule(sha256=bare, authid="pinned-one", authrole="ops")]).hello(
        request(transport=tls(peer)))
    assert (decision.authid, decision.authrole) == ("pinned-one", "ops")
    other = TlsAuthenticator([CertRule(sha256=bare, authrole="ops")]).hello(request(transport=tls(cert("pinned"))))
    assert isinstance(other, Deny)


def test_issuer_and_cn_must_both_match():
    rule = CertRule(issuer_cn="partner CA", subject_cn=".*", authrole="partner")
    assert isinstance(TlsAuthenticator([rule]).hello(request(transport=tls(cert("x", issuer_cn="partner CA")))), Accept)
    assert isinstance(TlsAuthenticator([rule]).hello(request(transport=tls(cert("x")))), Deny)


def test_cert_matching_no_rule_is_denied_clearly():
    decision = TlsAuthenticator([TENANT_RULE]).hello(request(transport=tls(cert("no-colon"))))
    assert decision == Deny("no identity rule matches the client certificate (subject 'CN=no-colon')")


# A Micronets certificate carries only an organisation name, no CN.
MICRONETS_MANAGER = [(NameOID.ORGANIZATION_NAME, "Micronets Manager Cert")]


def test_a_subject_attribute_other_than_cn_matches():
    rule = CertRule(subject=(("O", "Micronets Manager Cert"),), authid="manager:8675309:00224dd149bb",
                    authrole="manager")
    decision = TlsAuthenticator([rule]).hello(request(transport=tls(cert(None, subject=MICRONETS_MANAGER))))
    assert (decision.authid, decision.authrole) == ("manager:8675309:00224dd149bb", "manager")


def test_subject_attributes_fill_templates_and_must_all_match():
    rule = CertRule(subject=(("ou", "(?P<cls>gateway|manager)"), ("serialNumber", "(?P<sub>[0-9]+)/(?P<box>[0-9a-f]+)")),
                    authid="{cls}:{sub}:{box}", authrole="{cls}")
    peer = cert(None, subject=[(NameOID.ORGANIZATIONAL_UNIT_NAME, "gateway"), (NameOID.SERIAL_NUMBER, "8675309/00224dd149bb")])
    decision = TlsAuthenticator([rule]).hello(request(transport=tls(peer)))
    assert (decision.authid, decision.authrole) == ("gateway:8675309:00224dd149bb", "gateway")
    only_ou = cert(None, subject=[(NameOID.ORGANIZATIONAL_UNIT_NAME, "gateway")])
    assert isinstance(TlsAuthenticator([rule]).hello(request(transport=tls(only_ou))), Deny)


def test_an_attribute_the_certificate_lacks_never_matches():
    rule = CertRule(subject=(("o", ".*"),), authid="anyone", authrole="x")
    decision = TlsAuthenticator([rule]).hello(request(transport=tls(cert("only-a-cn"))))
    assert decision == Deny("no identity rule matches the client certificate (subject 'CN=only-a-cn')")


def test_issuer_attribute_matches():
    rule = CertRule(issuer=(("cn", "partner CA"),), subject=(("o", "Acme"),), authid="acme", authrole="partner")
    peer = cert(None, issuer_cn="partner CA", subject=[(NameOID.ORGANIZATION_NAME, "Acme")])
    assert TlsAuthenticator([rule]).hello(request(transport=tls(peer))).authid == "acme"


def test_a_certificate_without_cn_and_a_rule_without_authid_is_denied_saying_why():
    rule = CertRule(subject=(("o", "Micronets Manager Cert"),), authrole="manager")
    decision = TlsAuthenticator([rule]).hello(request(transport=tls(cert(None, subject=MICRONETS_MANAGER))))
    assert decision == Deny("the identity rule gave an empty authid for the client certificate (subject "
                            "'O=Micronets Manager Cert'): a certificate without a CN needs a rule that sets authid")


def test_an_unknown_attribute_name_is_a_config_error():
    with pytest.raises(ValueError, match="'org' is not a certificate name attribute"):
        CertRule(subject=(("org", "x"),), authrole="x")
    CertRule(subject=(("2.5.4.97", "x"),), authrole="x")  # a dotted OID is fine


def test_no_cert_on_insecure_transport_is_denied():
    decision = TlsAuthenticator([TENANT_RULE]).hello(request(transport=TransportInfo()))
    assert decision == Deny("TLS client-certificate authentication needs a TLS connection")


def test_tls_without_client_cert_is_denied():
    decision = TlsAuthenticator([TENANT_RULE]).hello(request(transport=tls(None)))
    assert decision == Deny("no TLS client certificate was presented")


def test_template_naming_a_missing_group_is_a_config_error():
    with pytest.raises(ValueError, match="tenant"):
        CertRule(subject_cn=r"(?P<authid>.+)", realm="{tenant}", authrole="x")


def test_rule_without_matcher_is_a_config_error():
    with pytest.raises(ValueError, match="matches nothing"):
        CertRule(authrole="x")


def test_bad_regex_names_the_pattern():
    with pytest.raises(ValueError, match=r"\(unclosed"):
        CertRule(subject_cn="(unclosed", authrole="x")


def test_through_the_session_binds_the_realm():
    wire = Wire({"tls": TlsAuthenticator([TENANT_RULE])}, tls(cert("tenant:device-7")), realms=("realm1", "tenant"))
    welcome = wire.hello(["tls"])
    assert isinstance(welcome, m.Welcome)
    assert (welcome.realm, welcome.authid, welcome.authrole) == ("tenant", "device-7", "device")


def test_through_the_session_without_cert_aborts():
    wire = Wire({"tls": TlsAuthenticator([TENANT_RULE])}, TransportInfo())
    assert_abort(wire.hello(["tls"]), "needs a TLS connection")


def test_an_expired_certificate_is_denied_saying_so():
    expired = {**cert("device-7"), "expired": True}
    assert TlsAuthenticator([TENANT_RULE, CertRule(subject_cn=r".*", authrole="user")]).hello(
        request(transport=tls(expired))) == Deny("the TLS client certificate has expired")


def test_tls_takes_no_challenge():
    assert TlsAuthenticator([TENANT_RULE]).authenticate(request(), None, "x", {}) == \
        Deny("TLS client-certificate authentication takes no challenge")


@pytest.mark.parametrize("options, provider", [({}, "tls"), ({"authprovider": "pki"}, "pki")])
def test_an_accepted_session_carries_its_provider_and_its_certificates_fingerprint(options, provider):
    details = cert("tenant:device-7")
    decision = TlsAuthenticator([TENANT_RULE], **options).hello(request(transport=tls(details)))
    fingerprint = details["sha256"].replace(":", "").strip().upper()
    assert decision == Accept("device-7", "device", "tls", authprovider=provider,
                              authextra={"sha256": fingerprint}, realm="tenant")


def test_a_realm_template_fills_the_realm_from_the_certificate():
    rule = CertRule(subject_cn=r"(?P<site>[a-z]+)-(?P<authid>.+)", authrole="device", realm="site-{site}")
    decision = TlsAuthenticator([rule]).hello(request(transport=tls(cert("lyon-device-7"))))
    assert (decision.authid, decision.realm) == ("device-7", "site-lyon")


def test_the_certificates_fingerprint_fills_a_template():
    details = cert("device-7")
    fingerprint = details["sha256"].replace(":", "").upper()
    rule = CertRule(subject_cn=r"device-.*", authid="cert-{sha256}", authrole="device")
    decision = TlsAuthenticator([rule]).hello(request(transport=tls(details)))
    assert isinstance(decision, Accept) and decision.authid == f"cert-{fingerprint}"
    pinned = CertRule(sha256=fingerprint, authid="{cn}", authrole="pinned", realm="r-{sha256}")
    decision = TlsAuthenticator([pinned]).hello(request(transport=tls(details)))
    assert (decision.authid, decision.authrole, decision.realm) == ("device-7", "pinned", f"r-{fingerprint}")


def test_an_optional_group_that_did_not_match_fills_a_template_with_nothing():
    rule = CertRule(subject_cn=r"(?P<name>[a-z]+)(?:-(?P<tag>[0-9]+))?", authid="{name}{tag}",
                    authrole="device")
    tagged = TlsAuthenticator([rule]).hello(request(transport=tls(cert("probe-12"))))
    assert tagged.authid == "probe12"
    untagged = TlsAuthenticator([rule]).hello(request(transport=tls(cert("probe"))))
    assert isinstance(untagged, Accept) and untagged.authid == "probe"  # not "probeNone"


def test_a_rule_giving_a_role_but_an_empty_realm_is_denied_saying_why():
    rule = CertRule(subject_cn=r"(?:(?P<site>[a-z]+):)?(?P<authid>.+)", authrole="device", realm="{site}")
    assert TlsAuthenticator([rule]).hello(request(transport=tls(cert("lyon:device-7")))).realm == "lyon"
    decision = TlsAuthenticator([rule]).hello(request(transport=tls(cert("device-7"))))
    assert decision == Deny("the identity rule gave an empty realm for the client certificate (subject 'CN=device-7')")
    both = CertRule(subject_cn=r"(?:(?P<role>[a-z]+)/)?(?P<authid>.+)", authrole="{role}", realm="{role}")
    assert TlsAuthenticator([both]).hello(request(transport=tls(cert("device-7")))) == Deny(
        "the identity rule gave an empty authrole and realm for the client certificate (subject 'CN=device-7')")
