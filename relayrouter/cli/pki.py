"""``relayrouter pki``: a development CA, server and client certificates.

    relayrouter pki ca --out pki/ca
    relayrouter pki server --ca pki/ca --name localhost --san DNS:localhost --san IP:127.0.0.1 --out pki/server
    relayrouter pki client --ca pki/ca --cn tenant:device-7 --out pki/device-7
    relayrouter pki client --ca pki/ca --pair 8675309/00224dd149bb --class gateway --pkeycert --out pki/gw

``--pkeycert`` also writes ``<kind>.pkeycert.pem``, the certificate followed by
its key in one file (mode 0600), which Micronets gateways and managers load.

Keys are EC P-256, written with mode 0600; nothing is overwritten without
``--force``.  For development and tests: a production CA lives elsewhere.
"""

import argparse
import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import CliError


@dataclass(frozen=True, slots=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


# ------------------------------------------------------------------ arguments

def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    ca = kinds.add_parser("ca", allow_abbrev=False, help="a development CA (ca.key, ca.crt)")
    ca.add_argument("--cn", default="relayrouter development CA")
    ca.add_argument("--days", type=int, default=3650)
    server = kinds.add_parser("server", allow_abbrev=False, help="a server certificate signed by the CA (server.key, server.crt)")
    server.add_argument("--name", default="localhost", help="subject CN (default localhost)")
    server.add_argument("--days", type=int, default=825)
    client = kinds.add_parser("client", allow_abbrev=False, help="a client certificate signed by the CA (client.key, client.crt)")
    who = client.add_mutually_exclusive_group(required=True)
    who.add_argument("--cn", help="subject CN, e.g. tenant:device-7")
    who.add_argument("--pair", metavar="SUBSCRIBER/BOX",
                     help="a pair's peer: CN <class>:<subscriber>:<box> and a SAN URI "
                          "urn:relayrouter:pair:<class>:<subscriber>:<box> (give --class)")
    client.add_argument("--class", dest="peer_class", choices=("gateway", "manager"),
                        help="with --pair: which of the pair's two peers the certificate is for")
    client.add_argument("--days", type=int, default=825)
    for sub in (server, client):
        sub.add_argument("--ca", required=True, metavar="DIR", help="directory holding ca.key and ca.crt")
        sub.add_argument("--san", action="append", default=[],
                         help="DNS:name, IP:address, email:addr or URI:uri (repeatable)")
    for sub in (server, client):
        sub.add_argument("--pkeycert", action="store_true",
                         help="also write <kind>.pkeycert.pem: the certificate and its key in one file")
    for sub in (ca, server, client):
        sub.add_argument("--out", required=True, metavar="DIR")
        sub.add_argument("--force", action="store_true", help="overwrite existing files")


def run(args: argparse.Namespace) -> int:
    if args.days <= 0:
        raise CliError(f"--days must be positive, not {args.days}")
    out = Path(args.out)
    combined = getattr(args, "pkeycert", False)
    _refuse_overwrite(out, args.kind, args.force, combined)
    issued = _RUNNERS[args.kind](args)
    for path in write(out, args.kind, issued):
        print(path)
    if combined:
        print(write_pkeycert(out, args.kind, issued))
    return 0


def _run_ca(args) -> Issued:
    return make_ca(args.cn, args.days)


def _run_server(args) -> Issued:
    sans = [parse_san(s) for s in args.san] or [x509.DNSName(args.name)]
    return make_leaf(load_ca(Path(args.ca)), args.name, sans, ExtendedKeyUsageOID.SERVER_AUTH, args.days)


def _run_client(args) -> Issued:
    sans = [parse_san(s) for s in args.san]
    cn = args.cn
    if args.pair is not None:
        cn = pair_cn(args.pair, args.peer_class)
        sans.append(x509.UniformResourceIdentifier(f"urn:relayrouter:pair:{cn}"))
    elif args.peer_class is not None:
        raise CliError("--class goes with --pair")
    return make_leaf(load_ca(Path(args.ca)), cn, sans, ExtendedKeyUsageOID.CLIENT_AUTH, args.days)


def pair_cn(pair: str, peer_class: str | None) -> str:
    """``<class>:<subscriber>:<box>``, the CN a pairing realm's default rule reads."""
    if peer_class is None:
        raise CliError("--pair needs --class gateway or --class manager")
    subscriber, sep, box = pair.partition("/")
    for name, value in (("subscriber", subscriber), ("box", box)):
        if not sep or not value or any(c in value for c in ".:#/ \t"):
            raise CliError(f"--pair '{pair}': give SUBSCRIBER/BOX, each without '.', ':', '#', '/' "
                           f"or spaces ({name} is {value!r})")
    return f"{peer_class}:{subscriber}:{box}"


_RUNNERS = {"ca": _run_ca, "server": _run_server, "client": _run_client}


# ------------------------------------------------------------- certificates

def make_ca(cn: str, days: int) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(cn)
    cert = (_builder(name, name, key.public_key(), days)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(key, cert)


def make_leaf(ca: Issued, cn: str, sans: list, usage, days: int) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (_builder(_name(cn), ca.cert.subject, key.public_key(), days)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_key_usage(cert_sign=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def _builder(subject, issuer, public_key, days: int) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
                         crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _name(cn: str) -> x509.Name:
    if not cn:
        raise CliError("a certificate needs a non-empty common name")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


_SAN_KINDS = {"DNS": x509.DNSName, "EMAIL": x509.RFC822Name, "URI": x509.UniformResourceIdentifier}


def parse_san(text: str):
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise CliError(f"--san '{text}' is not KIND:VALUE (DNS:, IP:, email:, URI:)")
    if kind.upper() == "IP":
        try:
            return x509.IPAddress(ipaddress.ip_address(value))
        except ValueError:
            raise CliError(f"--san '{text}': '{value}' is not an IP address") from None
    if kind.upper() not in _SAN_KINDS:
        raise CliError(f"--san '{text}': unknown kind '{kind}' (DNS, IP, email, URI)")
    return _SAN_KINDS[kind.upper()](value)


# -------------------------------------------------------------------- files

_FILES = {"ca": "ca", "server": "server", "client": "client"}


def _paths(out: Path, kind: str) -> tuple[Path, Path]:
    stem = _FILES[kind]
    return out / f"{stem}.key", out / f"{stem}.crt"


def _pkeycert_path(out: Path, kind: str) -> Path:
    return out / f"{_FILES[kind]}.pkeycert.pem"


def _refuse_overwrite(out: Path, kind: str, force: bool, combined: bool = False) -> None:
    paths = _paths(out, kind) + ((_pkeycert_path(out, kind),) if combined else ())
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise CliError(f"{', '.join(existing)} exists already; use --force to overwrite")


def write(out: Path, kind: str, issued: Issued) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = _paths(out, kind)
    _write_private(key_path, _key_pem(issued))
    cert_path.write_bytes(issued.cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def write_pkeycert(out: Path, kind: str, issued: Issued) -> Path:
    """The certificate, then its key, in one private file (what Python's ``load_cert_chain`` takes)."""
    path = _pkeycert_path(out, kind)
    _write_private(path, issued.cert.public_bytes(serialization.Encoding.PEM) + _key_pem(issued))
    return path


def _key_pem(issued: Issued) -> bytes:
    return issued.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start: never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)


def load_ca(directory: Path) -> Issued:
    key_path, cert_path = _paths(directory, "ca")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as e:
        raise CliError(f"cannot read the CA in '{directory}': {e.strerror} ({e.filename}); "
                       "create one with 'relayrouter pki ca --out DIR'") from None
    except ValueError as e:
        raise CliError(f"the CA in '{directory}' is not usable: {e}") from None
    return Issued(key, cert)
