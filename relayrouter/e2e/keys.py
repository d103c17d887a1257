"""An organisation's end-to-end key pairs and the public keys of others.

Every organisation has two key pairs: X25519 (messages are encrypted *to*
it) and Ed25519 (it signs what it sends).  A key is named by its key id, the
first 8 bytes of SHA-256 over the 32 public key bytes, written as 16
lower-case hex digits.

A private key file is JSON, written 0600 and refused when group or others
may read it::

    {"version": 1, "org": "acme", "x25519_private": "<base64 32 bytes>",
     "ed25519_seed": "<base64 32 bytes>"}

The same JSON may come from an environment variable instead of a file.
Nothing here logs or formats a private key: ``repr`` shows key ids only.

:class:`PrivateKeys` is the small interface the rest of the code uses
(``unwrap`` a content key, ``sign`` bytes); :class:`FileKeys` keeps the keys in
process memory.  A PKCS#11 / HSM implementation would offer the same two
operations without ever exposing the key bytes.
"""

import base64
import binascii
import functools
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import nacl.public
import nacl.signing

KEY_FILE_VERSION = 1


class KeyFileError(Exception):
    """A key file or variable that cannot be used; the message says why (never the key)."""


def key_id(public_key: bytes) -> str:
    """The key id of a 32-byte public key: hex of the first 8 bytes of its SHA-256."""
    return hashlib.sha256(public_key).digest()[:8].hex()


def fingerprint(public_key: bytes) -> str:
    """Hex of the SHA-256 of a 32-byte public key (64 digits)."""
    return hashlib.sha256(public_key).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str, size: int = 32) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise KeyFileError(f"{what} is not base64") from None
    if len(data) != size:
        raise KeyFileError(f"{what} is {len(data)} bytes, not {size}")
    return data


@dataclass(frozen=True)
class PublicKeys:
    """What others may know of an organisation: its two public keys."""

    org: str
    encryption: bytes  # X25519 public key, 32 bytes
    signing: bytes  # Ed25519 public key, 32 bytes

    # computed once per object: an envelope's reader asks for them for every envelope
    @functools.cached_property
    def encryption_kid(self) -> str:
        return key_id(self.encryption)

    @functools.cached_property
    def signing_kid(self) -> str:
        return key_id(self.signing)

    @property
    def signing_fingerprint(self) -> str:
        """Hex of the whole SHA-256 of the signing key: what a configuration pins (a key id is 8 bytes of it)."""
        return fingerprint(self.signing)

    def as_dict(self) -> dict:
        return {"org": self.org, "encryption_key": b64(self.encryption), "encryption_kid": self.encryption_kid,
                "signing_key": b64(self.signing), "signing_kid": self.signing_kid}

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "PublicKeys":
        """From ``{"org", "encryption_key", "signing_key"}`` (either key may be absent: empty bytes)."""
        enc, sig = data.get("encryption_key"), data.get("signing_key")
        return cls(str(data.get("org", "")),
                   unb64(enc, f"{where}.encryption_key") if enc else b"",
                   unb64(sig, f"{where}.signing_key") if sig else b"")


class PrivateKeys(Protocol):
    """The operations that need an organisation's private keys."""

    public: PublicKeys

    def unwrap(self, wrapped: bytes) -> bytes:
        """Open a sealed box addressed to our X25519 key; raises ``nacl.exceptions.CryptoError`` when it is not."""

    def sign(self, data: bytes) -> bytes:
        """A 64-byte Ed25519 signature of ``data``."""


class FileKeys:
    """Private keys held in memory (loaded from a file or an environment variable)."""

    def __init__(self, org: str, x25519_private: bytes, ed25519_seed: bytes) -> None:
        self._box_key = nacl.public.PrivateKey(x25519_private)
        self._signing_key = nacl.signing.SigningKey(ed25519_seed)
        self.public = PublicKeys(org, bytes(self._box_key.public_key), bytes(self._signing_key.verify_key))

    @classmethod
    def generate(cls, org: str) -> "FileKeys":
        return cls(org, bytes(nacl.public.PrivateKey.generate()), bytes(nacl.signing.SigningKey.generate()))

    def unwrap(self, wrapped: bytes) -> bytes:
        return nacl.public.SealedBox(self._box_key).decrypt(wrapped)

    def sign(self, data: bytes) -> bytes:
        return self._signing_key.sign(data).signature

    def to_json(self) -> str:
        return json.dumps({"version": KEY_FILE_VERSION, "org": self.public.org,
                           "x25519_private": b64(bytes(self._box_key)),
                           "ed25519_seed": b64(bytes(self._signing_key))}, indent=2) + "\n"

    def __repr__(self) -> str:
        return (f"FileKeys(org={self.public.org!r}, encryption_kid={self.public.encryption_kid}, "
                f"signing_kid={self.public.signing_kid})")


def parse_private(text: str | bytes, where: str) -> FileKeys:
    """Private keys from the key file JSON; errors name ``where``, never a key."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise KeyFileError(f"{where} is not a relayrouter key file (JSON expected)") from None
    if not isinstance(data, dict) or "x25519_private" not in data or "ed25519_seed" not in data:
        raise KeyFileError(f"{where} is not a relayrouter private key file (x25519_private, ed25519_seed missing)")
    if data.get("version") != KEY_FILE_VERSION:
        raise KeyFileError(f"{where}: unsupported key file version {data.get('version')!r} "
                           f"(this build reads {KEY_FILE_VERSION})")
    return FileKeys(str(data.get("org", "")), unb64(data["x25519_private"], f"{where}: x25519_private"),
                    unb64(data["ed25519_seed"], f"{where}: ed25519_seed"))


def check_private_file(path: Path) -> None:
    """Refuse a private key file that group or others may read or write."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as e:
        raise KeyFileError(f"cannot read key file '{path}': {e.strerror}") from None
    if mode & 0o077:
        raise KeyFileError(f"key file '{path}' has loose permissions {mode:04o}: group or others may access "
                           f"it; run: chmod 600 '{path}'")


def load_private(path: str | Path) -> FileKeys:
    path = Path(path)
    check_private_file(path)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read key file '{path}': {e.strerror}") from None
    return parse_private(text, f"key file '{path}'")


def load_private_env(var: str, environ=os.environ) -> FileKeys:
    if var not in environ:
        raise KeyFileError(f"environment variable {var} is not set")
    return parse_private(environ[var], f"environment variable {var}")


def write_private(path: Path, keys: FileKeys) -> None:
    """Create ``path`` 0600 (never overwriting) with the private key JSON."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(keys.to_json())


def load_public(path: str | Path) -> PublicKeys:
    """Public keys from a ``.pub`` file (JSON of :meth:`PublicKeys.as_dict`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise KeyFileError(f"cannot read public key file '{path}': {e.strerror}") from None
    except ValueError:
        raise KeyFileError(f"public key file '{path}' is not JSON") from None
    if not isinstance(data, dict):
        raise KeyFileError(f"public key file '{path}' is not a JSON object")
    return PublicKeys.from_dict(data, f"public key file '{path}'")

