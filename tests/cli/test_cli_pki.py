"""``relayrouter pki`` run as a real subprocess; the chain checked with cryptography and pyOpenSSL."""

import ipaddress
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted
from autobahn.util import peer_certificate_details
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store
from twisted.internet import ssl

from relayrouter.auth.tls import CertRule, TlsAuthenticator
from relayrouter.core.auth import Accept, JoinRequest
from relayrouter.core.peer import TransportInfo

from tests.security_support import start, stop
from tests.support import connect_ws, within

ROOT = Path(__file__).resolve().parents[2]


def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "relayrouter.cli", "pki", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


def ok(*args) -> None:
    result = cli(*args)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("pki")
    ok("ca", "--out", base / "ca")
    ok("server", "--ca", base / "ca", "--name", "localhost", "--san", "DNS:localhost", "--san", "IP:127.0.0.1",
       "--out", base / "server")
    ok("client", "--ca", base / "ca", "--cn", "tenant:device-7", "--out", base / "device")
    return base


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_keys_are_private_and_certs_readable(pki):
    for key in ["ca/ca.key", "server/server.key", "device/client.key"]:
        assert stat.S_IMODE((pki / key).stat().st_mode) == 0o600, key
    for cert in ["ca/ca.crt", "server/server.crt", "device/client.crt"]:
        assert load(pki / cert)


def test_server_cert_chains_to_the_ca_for_its_sans(pki):
    ca, server = load(pki / "ca/ca.crt"), load(pki / "server/server.crt")
    store = Store([ca])
    for name in [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]:
        chain = PolicyBuilder().store(store).build_server_verifier(name).verify(server, [])
        assert chain[-1] == ca
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value


def test_client_cert_has_the_cn_and_chains_to_the_ca(pki):
    ca, client = load(pki / "ca/ca.crt"), load(pki / "device/client.crt")
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "tenant:device-7"
    client.verify_directly_issued_by(ca)
    assert ExtendedKeyUsageOID.CLIENT_AUTH in client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    ca_constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert ca_constraints.ca and not client.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def _client_tls(pki: Path, hostname: str):
    pem = (pki / "device/client.key").read_bytes() + (pki / "device/client.crt").read_bytes()
    return ssl.optionsForClientTLS(hostname, trustRoot=ssl.Certificate.loadPEM((pki / "ca/ca.crt").read_bytes()),
                                   clientCertificate=ssl.PrivateCertificate.loadPEM(pem))


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
@pytest_twisted.inlineCallbacks
def test_the_issued_files_make_an_mtls_handshake_with_the_router(pki, tmp_path, hostname):
    # The router listens with the issued server pair and requires client
    # certificates from the issued CA; the client checks the server's name
    # (a DNS and an IP SAN) against the same CA and shows the issued client pair.
    tls = {"certificate": str(pki / "server/server.crt"), "key": str(pki / "server/server.key"),
           "ca": str(pki / "ca/ca.crt"), "client_certificates": "required"}
    running = yield start({
        "listeners": [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1", "tls": tls}],
        "realms": [{"name": "tenant", "auth": {"tls": {"rules": [
            {"subject_cn": "(?P<realm>[^:]+):(?P<authid>.+)", "role": "device"}]}}}],
    }, tmp_path / "state")
    try:
        client = yield connect_ws(running, realm="tenant", authmethods=["tls"], tls=_client_tls(pki, hostname))
        assert (client.details.realm, client.details.authid, client.details.authmethod) == \
            ("tenant", "device-7", "tls")
        yield client.leave()
        yield within(client.left)
    finally:
        yield stop(running)


def test_client_cert_maps_to_an_identity(pki):
    details = peer_certificate_details(load(pki / "device/client.crt"))
    transport = TransportInfo(kind="websocket", is_secure=True, peer_cert=details)
    request = JoinRequest("realm1", ("tls",), None, None, {}, transport)
    rule = CertRule(subject_cn=r"(?P<realm>[^:]+):(?P<authid>.+)", authrole="device")
    decision = TlsAuthenticator([rule]).hello(request)
    assert isinstance(decision, Accept) and (decision.realm, decision.authid) == ("tenant", "device-7")


def test_pkeycert_is_the_certificate_and_its_key_in_one_private_file(pki, tmp_path):
    import ssl as stdlib_ssl

    ok("client", "--ca", pki / "ca", "--pair", "8675309/00224dd149bb", "--class", "gateway", "--pkeycert",
       "--out", tmp_path / "gw")
    combined = tmp_path / "gw/client.pkeycert.pem"
    assert stat.S_IMODE(combined.stat().st_mode) == 0o600
    assert combined.read_bytes() == (tmp_path / "gw/client.crt").read_bytes() + (tmp_path / "gw/client.key").read_bytes()
    # What a Micronets peer does with it: Python's ssl loads the one file as cert and key.
    stdlib_ssl.SSLContext(stdlib_ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(str(combined))
    again = cli("client", "--ca", pki / "ca", "--cn", "x", "--pkeycert", "--out", tmp_path / "gw")
    assert again.returncode == 2 and "client.pkeycert.pem" in again.stderr


def test_existing_files_are_not_overwritten_without_force(pki):
    before = (pki / "ca/ca.key").read_bytes()
    result = cli("ca", "--out", pki / "ca")
    assert result.returncode == 2 and "--force" in result.stderr
    assert (pki / "ca/ca.key").read_bytes() == before


def test_missing_ca_is_explained(tmp_path):
    result = cli("client", "--ca", tmp_path / "nowhere", "--cn", "x", "--out", tmp_path / "out")
    assert result.returncode == 2 and "relayrouter pki ca" in result.stderr


def test_bad_san_names_the_value(pki, tmp_path):
    result = cli("server", "--ca", pki / "ca", "--san", "IP:not-an-ip", "--out", tmp_path / "s")
    assert result.returncode == 2 and "not-an-ip" in result.stderr
