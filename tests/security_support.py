"""Credentials for the security integration tests: JWTs, a development PKI
(made with the `relayrouter pki` functions), TLS client options, HTTP calls."""

import datetime
import json
import time

import jwt as pyjwt
import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.internet import defer, ssl

from relayrouter import config as cfg
from relayrouter.cli import pki

from .support import start_router

HS_SECRET = "jwt-hmac-secret-0123456789abcdef-0123456789abcdef"  # 48 bytes
AUDIENCE = "relayrouter"
ISSUER = "lab"


def token(secret=HS_SECRET, alg="HS256", lifetime=600, headers=None, **claims) -> str:
    now = int(time.time())
    body = {"sub": "device-7", "aud": AUDIENCE, "iss": ISSUER, "iat": now, "exp": now + lifetime}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return pyjwt.encode(body, secret, algorithm=alg, headers=headers)


def rsa_pair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return private, public


@defer.inlineCallbacks
def start(data: dict, state_dir=None):
    """A router from a config dict (as the TOML file would give), on loopback port 0."""
    data = dict(data)
    data.setdefault("listeners", [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1"},
                                  {"type": "rawsocket", "endpoint": "tcp:0:interface=127.0.0.1"}])
    if state_dir is not None:
        data["state_dir"] = str(state_dir)
    running = yield start_router(cfg.parse(data))
    return running


def stop(running):
    for session in list(running.router.sessions()):
        session.peer.close()
    return running.service.stopService()


# ------------------------------------------------------------------- HTTP

@defer.inlineCallbacks
def http(method: str, url: str, bearer: str | None = None, body=None, headers=None):
    """(status, headers, parsed JSON or None)."""
    hdrs = {k: [v] for k, v in (headers or {}).items()}
    if bearer is not None:
        hdrs["Authorization"] = [f"Bearer {bearer}"]
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        hdrs["Content-Type"] = ["application/json"]
    response = yield treq.request(method, url, headers=hdrs, data=data)
    content = yield response.content()
    parsed = json.loads(content) if content else None
    return response.code, response.headers, parsed


# -------------------------------------------------------------------- PKI

class Pki:
    """A CA, another CA, a server certificate and client certificates, on disk."""

    def __init__(self, root) -> None:
        self.root = root
        self.ca = pki.make_ca("relayrouter test CA", 30)
        self.other_ca = pki.make_ca("some other CA", 30)
        pki.write(root / "ca", "ca", self.ca)
        server = pki.make_leaf(self.ca, "localhost", [x509.DNSName("localhost")],
                               ExtendedKeyUsageOID.SERVER_AUTH, 30)
        self.server_key, self.server_crt = pki.write(root / "server", "server", server)
        self.ca_crt = root / "ca" / "ca.crt"
        self.clients = {
            "device": pki.make_leaf(self.ca, "tenant:device-7", [], ExtendedKeyUsageOID.CLIENT_AUTH, 30),
            "stranger": pki.make_leaf(self.other_ca, "tenant:device-7", [], ExtendedKeyUsageOID.CLIENT_AUTH, 30),
            "expired": _expired_leaf(self.ca, "tenant:device-8"),
        }

    def listener_tls(self, client_certificates="required") -> dict:
        return {"certificate": str(self.server_crt), "key": str(self.server_key), "ca": str(self.ca_crt),
                "client_certificates": client_certificates}

    def client_options(self, who: str | None = "device"):
        trust = ssl.Certificate.loadPEM(self.ca.cert.public_bytes(serialization.Encoding.PEM))
        if who is None:
            return ssl.optionsForClientTLS("localhost", trustRoot=trust)
        issued = self.clients[who]
        pem = (issued.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
               + issued.cert.public_bytes(serialization.Encoding.PEM))
        return ssl.optionsForClientTLS("localhost", trustRoot=trust,
                                       clientCertificate=ssl.PrivateCertificate.loadPEM(pem))


def _expired_leaf(ca, cn):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=10))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return pki.Issued(key, cert)
