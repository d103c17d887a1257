"""DIDComm v1 envelopes (Aries RFC 0019), keys and ``did:key``, on aries-askar.

aries-askar is the cryptography ACA-Py itself uses: Ed25519 keys converted
to X25519, ``crypto_box`` / ``crypto_box_seal`` for each recipient's copy of
the content key, XChaCha20-Poly1305 for the payload.  Its key operations are
synchronous, so they run on the reactor thread (a pack or unpack is a few
tens of microseconds); nothing here uses askar's asynchronous store.

An envelope is JSON ``{"protected", "iv", "ciphertext", "tag"}``; the
protected header (base64url) names ``enc``, ``typ``, ``alg`` (``Authcrypt``
with a sender, ``Anoncrypt`` without) and the ``recipients``, each with its
encrypted content key and ``kid`` (the recipient's verkey, base58), plus for
Authcrypt the sealed sender verkey and the box nonce.
"""

import base64
import json
from dataclasses import dataclass

from aries_askar import Key, KeyAlg, crypto_box

from relayrouter.api import httpinput

ENC = "xchacha20poly1305_ietf"
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_ED25519_MULTICODEC = b"\xed\x01"


class EnvelopeError(ValueError):
    """Not an envelope we can open (malformed, not for us, or tampered with)."""


@dataclass(frozen=True)
class Unpacked:
    message: dict
    recipient: str  # our verkey it was packed for
    sender: str | None  # the sender's verkey (Authcrypt), None for Anoncrypt


# ------------------------------------------------------------------ encodings


def b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, digit = divmod(number, 58)
        out = _B58[digit] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _B58.find(char)
        if index < 0:
            raise ValueError(f"{char!r} is not a base58 character")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def from_b64url(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a base64url string")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def did_key(verkey: str) -> str:
    """``did:key:z6Mk...`` of an Ed25519 verkey (base58)."""
    return "did:key:z" + b58encode(_ED25519_MULTICODEC + b58decode(verkey))


def verkey_of(key: str) -> str:
    """A base58 verkey from itself, ``did:key:z...`` or ``did:key:z...#z...``."""
    if key.startswith("did:key:z"):
        raw = b58decode(key[len("did:key:z"):].split("#", 1)[0])
        if raw[:2] != _ED25519_MULTICODEC or len(raw) != 34:
            raise ValueError(f"{key!r} is not an Ed25519 did:key")
        return b58encode(raw[2:])
    if len(b58decode(key)) != 32:
        raise ValueError(f"{key!r} is not an Ed25519 verkey")
    return key


# ----------------------------------------------------------------------- keys


def new_key() -> Key:
    return Key.generate(KeyAlg.ED25519)


def key_from_secret(secret: bytes) -> Key:
    return Key.from_secret_bytes(KeyAlg.ED25519, secret)


def verkey(key: Key) -> str:
    return b58encode(key.get_public_bytes())


def _x25519(verkey_b58: str) -> Key:
    return Key.from_public_bytes(KeyAlg.ED25519, b58decode(verkey_b58)).convert_key(KeyAlg.X25519)


def sign(key: Key, data: bytes) -> bytes:
    return key.sign_message(data)


def verify(verkey_b58: str, data: bytes, signature: bytes) -> bool:
    return Key.from_public_bytes(KeyAlg.ED25519, b58decode(verkey_b58)).verify_signature(data, signature)


# ------------------------------------------------------------- pack / unpack


def pack(message: dict | bytes, to: list[str], sender: Key | None = None) -> bytes:
    """The envelope of ``message`` for the verkeys ``to``; Authcrypt from ``sender`` if given."""
    payload = message if isinstance(message, bytes) else json.dumps(message).encode()
    cek = Key.generate(KeyAlg.C20P)
    cek_bytes = cek.get_secret_bytes()
    recipients = [_recipient(verkey_b58, cek_bytes, sender) for verkey_b58 in to]
    header = {"enc": ENC, "typ": "JWM/1.0", "alg": "Authcrypt" if sender else "Anoncrypt",
              "recipients": recipients}
    protected = b64url(json.dumps(header).encode())
    encrypted = cek.aead_encrypt(payload, aad=protected.encode("ascii"))
    ciphertext, tag, nonce = encrypted.parts
    return json.dumps({"protected": protected, "iv": b64url(nonce), "ciphertext": b64url(ciphertext),
                       "tag": b64url(tag)}).encode()


def _recipient(verkey_b58: str, cek: bytes, sender: Key | None) -> dict:
    target = _x25519(verkey_b58)
    if sender is None:
        return {"encrypted_key": b64url(crypto_box.crypto_box_seal(target, cek)), "header": {"kid": verkey_b58}}
    nonce = crypto_box.random_nonce()
    sealed_sender = crypto_box.crypto_box_seal(target, verkey(sender).encode("ascii"))
    boxed = crypto_box.crypto_box(target, sender.convert_key(KeyAlg.X25519), cek, nonce)
    return {"encrypted_key": b64url(boxed),
            "header": {"kid": verkey_b58, "sender": b64url(sealed_sender), "iv": b64url(nonce)}}


def unpack(envelope: bytes, keys: dict[str, Key]) -> Unpacked:
    """Open an envelope packed for one of ``keys`` (verkey -> private key)."""
    try:
        outer = httpinput.json_value(envelope, field="the envelope")  # BadInput is a ValueError
        protected = outer["protected"]
        header = httpinput.json_value(from_b64url(protected), field="the protected header")
        recipients = header["recipients"]
        alg = header["alg"]
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise EnvelopeError(f"not a DIDComm v1 envelope ({e.__class__.__name__})") from None
    if not isinstance(recipients, list) or alg not in ("Authcrypt", "Anoncrypt") or header.get("enc") != ENC:
        raise EnvelopeError(f"unsupported envelope: alg {str(alg)[:40]!r}, enc {str(header.get('enc'))[:40]!r}")
    mine = [r for r in recipients if isinstance(r, dict) and isinstance(r.get("header"), dict)
            and isinstance(r["header"].get("kid"), str) and r["header"]["kid"] in keys]
    if not mine:
        raise EnvelopeError("packed for none of our keys")
    recipient = mine[0]["header"]["kid"]
    try:
        cek, sender = _content_key(mine[0], keys[recipient], alg == "Authcrypt")
        payload = Key.from_secret_bytes(KeyAlg.C20P, cek).aead_decrypt(
            from_b64url(outer["ciphertext"]), nonce=from_b64url(outer["iv"]), tag=from_b64url(outer["tag"]),
            aad=protected.encode("ascii"))
        message = httpinput.json_value(bytes(payload), field="the message")
    except EnvelopeError:
        raise
    except Exception as e:  # noqa: BLE001 - askar raises its own error type for a bad box or tag
        raise EnvelopeError(f"cannot open the envelope ({e.__class__.__name__})") from None
    if not isinstance(message, dict):
        raise EnvelopeError("the envelope holds no JSON object")
    return Unpacked(message, recipient, sender)


def _content_key(entry: dict, key: Key, authcrypt: bool) -> tuple[bytes, str | None]:
    ours = key.convert_key(KeyAlg.X25519)
    encrypted = from_b64url(entry["encrypted_key"])
    if not authcrypt:
        return bytes(crypto_box.crypto_box_seal_open(ours, encrypted)), None
    header = entry["header"]
    if "sender" not in header or "iv" not in header:
        raise EnvelopeError("Authcrypt recipient without sender or iv")
    sender = bytes(crypto_box.crypto_box_seal_open(ours, from_b64url(header["sender"]))).decode("ascii")
    cek = crypto_box.crypto_box_open(ours, _x25519(sender), encrypted, from_b64url(header["iv"]))
    return bytes(cek), sender
