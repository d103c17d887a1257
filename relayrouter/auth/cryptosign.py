"""WAMP-cryptosign: Ed25519 public-key authentication.

The client puts its public key (hex) in ``authextra.pubkey`` and may ask for
``authextra.channel_binding = "tls-unique"``.  We CHALLENGE with 32 random
bytes (hex).  The client signs the challenge, or with channel binding the XOR
of challenge and the TLS channel ID, and answers with the hex of the 64-byte
signature followed by the 32 bytes it signed (Autobahn's
``CryptosignKey.sign_challenge``).  We check both: the signed bytes must be
the ones we expect, and the signature must verify under the offered key.
"""

import hmac
import secrets
from dataclasses import dataclass
from typing import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..core.auth import Accept, Challenge, Deny, JoinRequest

TLS_UNIQUE = "tls-unique"
SIGNATURE_DENIED = "cryptosign signature invalid"


@dataclass(frozen=True, slots=True)
class CryptosignPrincipal:
    pubkeys: tuple[str, ...]  # hex Ed25519 public keys
    authrole: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "pubkeys", tuple(_normalize_pubkey(k) for k in self.pubkeys))
        if not self.pubkeys:
            raise ValueError(f"cryptosign principal with role '{self.authrole}' has no public key")


@dataclass(frozen=True, slots=True)
class _Pending:
    authid: str
    pubkey: str
    signed: bytes  # what the client must have signed


class CryptosignAuthenticator:
    authmethod = "cryptosign"

    def __init__(self, principals: Mapping[str, CryptosignPrincipal], *,
                 require_channel_binding: bool = False, authprovider: str = "static") -> None:
        self.principals_by_authid = dict(principals)
        self.authid_by_pubkey = _index_pubkeys(self.principals_by_authid)
        self.require_channel_binding = require_channel_binding
        self.authprovider = authprovider

    def hello(self, request: JoinRequest) -> Challenge | Deny:
        pubkey = request.authextra.get("pubkey")
        if not isinstance(pubkey, str):
            return Deny("cryptosign needs the client's public key (hex) in authextra.pubkey")
        authid = self.authid_by_pubkey.get(pubkey.lower())
        if authid is None or (request.authid and request.authid != authid):
            return Deny("this public key is not registered for the authid")
        binding = request.authextra.get("channel_binding")
        channel = _channel_id(request, binding, self.require_channel_binding)
        if isinstance(channel, Deny):
            return channel
        challenge = secrets.token_bytes(32)
        signed = bytes(a ^ b for a, b in zip(challenge, channel)) if channel else challenge
        extra = {"challenge": challenge.hex(), "channel_binding": binding}
        return Challenge("cryptosign", extra, state=_Pending(authid, pubkey.lower(), signed))

    def authenticate(self, request: JoinRequest, state: _Pending, signature: str,
                     extra: dict) -> Accept | Deny:
        raw = _unhex(signature)
        if raw is None or len(raw) != 96:
            return Deny("cryptosign signature must be 96 bytes in hex (signature and challenge)")
        if not hmac.compare_digest(raw[64:], state.signed):
            return Deny("cryptosign signature is not over this session's challenge")
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(state.pubkey)).verify(raw[:64], state.signed)
        except InvalidSignature:
            return Deny(SIGNATURE_DENIED)
        principal = self.principals_by_authid[state.authid]
        return Accept(state.authid, principal.authrole, "cryptosign",
                      authprovider=self.authprovider, authextra={"pubkey": state.pubkey})


def _channel_id(request: JoinRequest, binding, required: bool) -> bytes | None | Deny:
    if binding is None:
        return Deny("this realm requires channel_binding 'tls-unique'") if required else None
    if binding != TLS_UNIQUE:
        return Deny(f"unsupported channel_binding '{binding}' (only 'tls-unique')")
    channel = request.transport.channel_id.get(TLS_UNIQUE)
    if not request.transport.is_secure or not channel or len(channel) != 32:
        return Deny("channel_binding 'tls-unique' needs a TLS connection")
    return channel


def _index_pubkeys(principals: Mapping[str, CryptosignPrincipal]) -> dict[str, str]:
    authid_by_pubkey: dict[str, str] = {}
    for authid, principal in principals.items():
        for pubkey in principal.pubkeys:
            if authid_by_pubkey.setdefault(pubkey, authid) != authid:
                raise ValueError(f"public key {pubkey} is listed for both "
                                 f"'{authid_by_pubkey[pubkey]}' and '{authid}'")
    return authid_by_pubkey


def _normalize_pubkey(pubkey: str) -> str:
    raw = _unhex(pubkey)
    if raw is None or len(raw) != 32:
        raise ValueError(f"'{pubkey}' is not an Ed25519 public key (64 hex digits)")
    return raw.hex()


def _unhex(text) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None
