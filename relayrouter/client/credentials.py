"""How a connector proves who it is to the router, and how it checks the router.

A :class:`Credentials` value holds one authentication method and what it
needs (a ticket or JWT read from the environment or a file, an Ed25519 key
read from a file); :meth:`Credentials.answer` answers the router's CHALLENGE.
A :class:`TlsClient` value makes the client TLS settings for ``wss://`` and
``rss://``: the CA bundle to trust and, for the ``tls`` method, the client
certificate.  Secrets never appear in ``repr`` or in errors; key files that
the group or others can read are refused, as ssh does.
"""

import binascii
import os
import stat
from dataclasses import dataclass, field

from .errors import ConfigError

METHODS = ("anonymous", "ticket", "jwt", "cryptosign", "tls")


def check_private_file(path: str, what: str) -> None:
    """Refuse a key file that is missing or readable by group or others."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{what}: {path} is not a regular file")
    if mode & 0o077:
        raise ConfigError(f"{what}: {path} is accessible by group or others (mode {stat.S_IMODE(mode):04o});"
                          f" run chmod 600 {path}")


def read_secret_file(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().rstrip("\r\n")
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path}: {e.strerror}") from None
    if not value:
        raise ConfigError(f"{what}: {path} is empty")
    return value


def load_cryptosign_key(path: str, what: str = "--cryptosign-key"):
    """An Ed25519 signing key from an OpenSSH private key, Autobahn's key file
    (``private-key-ed25519: <hex>``), 64 hex characters or 32 raw bytes."""
    from autobahn.wamp.cryptosign import CryptosignKey

    check_private_file(path, what)
    with open(path, "rb") as f:
        data = f.read()
    text = data.decode("ascii", "replace").strip()
    try:
        if text.startswith("-----BEGIN OPENSSH PRIVATE KEY-----"):
            return CryptosignKey.from_ssh_bytes(text)
        if "private-key-ed25519:" in text:
            return CryptosignKey.from_keyfile(path)
        if len(text) == 64:
            return CryptosignKey.from_bytes(binascii.a2b_hex(text))
        if len(data) == 32:
            return CryptosignKey.from_bytes(data)
    except (ValueError, RuntimeError, binascii.Error) as e:
        raise ConfigError(f"{what}: {path} is not a usable Ed25519 private key ({e})") from None
    raise ConfigError(f"{what}: {path} holds no Ed25519 private key (expected an OpenSSH key,"
                      " 'private-key-ed25519: <hex>', 64 hex characters or 32 raw bytes)")


@dataclass(frozen=True)
class Credentials:
    method: str = "anonymous"
    authid: str | None = None
    secret: str | None = field(default=None, repr=False)  # ticket or JWT
    key: object = field(default=None, repr=False)  # autobahn CryptosignKey
    secret_file: str | None = None  # read again at every connection: a renewed JWT is picked up

    def __post_init__(self) -> None:
        if self.secret_file and self.secret is None:
            object.__setattr__(self, "secret", read_secret_file(self.secret_file, f"--{self.method}-file"))
        if self.method not in METHODS:
            raise ConfigError(f"--auth: unknown method {self.method!r} (one of {', '.join(METHODS)})")
        if self.method in ("ticket", "jwt") and not self.secret:
            raise ConfigError(f"--auth {self.method}: no {self.method} given (a file option or its environment variable)")
        if self.method == "ticket" and not self.authid:
            raise ConfigError("--auth ticket: --authid is required")
        if self.method == "cryptosign" and self.key is None:
            raise ConfigError("--auth cryptosign: --cryptosign-key is required")

    @property
    def authmethods(self) -> list[str]:
        return [self.method]

    def current_secret(self) -> str | None:
        """The ticket or JWT as the file holds it now (the one read at start if it cannot be read)."""
        if self.secret_file:
            try:
                return read_secret_file(self.secret_file, f"--{self.method}-file")
            except ConfigError:
                return self.secret
        return self.secret

    @property
    def authextra(self) -> dict | None:
        if self.method == "cryptosign":
            return {"pubkey": self.key.public_key(binary=False)}
        if self.method == "jwt":
            return {"token": self.current_secret()}
        return None

    def answer(self, challenge) -> str:
        """The AUTHENTICATE signature for a CHALLENGE of our method."""
        if challenge.method != self.method and not (self.method == "jwt" and challenge.method == "ticket"):
            raise ValueError(f"the router challenged with {challenge.method!r}, we offered {self.method!r}")
        if self.method in ("ticket", "jwt"):
            return self.current_secret()
        if self.method == "cryptosign":
            return self.key.sign_challenge(challenge)
        raise ValueError(f"authmethod {self.method!r} expects no challenge")


@dataclass(frozen=True)
class TlsClient:
    """Client TLS: whom to trust (``ca_file``, else the system store) and our certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("--tls-cert and --tls-key go together")
        if self.key_file:
            check_private_file(self.key_file, "--tls-key")
        for path, what in ((self.ca_file, "--ca-cert"), (self.cert_file, "--tls-cert")):
            if path and not os.path.isfile(path):
                raise ConfigError(f"{what}: {path} is not a file")
        self.creator("localhost")  # load every file now, so a bad one stops the start

    def creator(self, hostname: str):
        from twisted.internet import ssl

        trust = None
        try:
            if self.ca_file:
                with open(self.ca_file, "rb") as f:
                    trust = ssl.trustRootFromCertificates(
                        [ssl.Certificate.loadPEM(pem) for pem in _pem_blocks(f.read())])
            client = None
            if self.cert_file:
                with open(self.cert_file, "rb") as f:
                    cert = f.read()
                with open(self.key_file, "rb") as f:
                    key = f.read()
                client = ssl.PrivateCertificate.loadPEM(key + b"\n" + cert)
        except Exception as e:  # OpenSSL's errors are many; name the files
            raise ConfigError(f"--ca-cert/--tls-cert/--tls-key: cannot load ({e})") from None
        return ssl.optionsForClientTLS(hostname, trustRoot=trust, clientCertificate=client,
                                       extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2})


def _pem_blocks(data: bytes) -> list[bytes]:
    end = b"-----END CERTIFICATE-----"
    blocks = [part + end for part in data.split(end) if b"-----BEGIN CERTIFICATE-----" in part]
    if not blocks:
        raise ValueError("no PEM certificate in the file")
    return blocks
