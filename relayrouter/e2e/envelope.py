"""The end-to-end envelope, version 1: bytes in, bytes out, no I/O.

Theory of operation.  :func:`seal` serializes the document (JSON or CBOR),
draws a fresh 32-byte content key and 24-byte nonce, encrypts the document
with XChaCha20-Poly1305 (IETF) using everything before the ciphertext as
associated data, wraps the content key for each recipient's X25519 public key
with a libsodium sealed box, and signs all of it with the sender's Ed25519
key.  :func:`open_envelope` undoes it in the order that spends the least on
input we cannot use: parse, find our recipient entry, find the sender, verify
the signature, unwrap, decrypt, deserialize.  Each refusal is an
:class:`EnvelopeError` whose ``reason`` is one of :data:`REASONS`.

Layout (all integers big-endian)::

    magic "RRE" | version 1 | serializer | flags | created_ms u64 | message_id 16
    | sender_kid 8 | topic_len u16 | topic | nonce 24 | n_recipients u16
    | n x (kid 8 | wrapped_key 80) | ct_len u32 | ciphertext | signature 64

The topic is inside the signed, authenticated header: an envelope replayed
on another topic is refused.  docs/reference/e2e.md ("End-to-end envelope") is the
specification; tests/e2e/vectors/envelope-v1.json is its test vector.
"""

import json
import os
import struct
import time
from dataclasses import dataclass

import cbor2
import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import nacl.signing

from ..httpinput import json_value
from .keys import PrivateKeys, PublicKeys

MAGIC = b"RRE"
VERSION = 1
SERIALIZERS = {"json": 1, "cbor": 2}
SERIALIZER_NAMES = {code: name for name, code in SERIALIZERS.items()}
MAX_RECIPIENTS = 256
KID_SIZE = 8
WRAPPED_SIZE = 80  # sealed box: ephemeral public key 32 + content key 32 + MAC 16
SIGNATURE_SIZE = 64
NONCE_SIZE = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
KEY_SIZE = sodium.crypto_aead_xchacha20poly1305_ietf_KEYBYTES
TAG_SIZE = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES

# Payload Passthru Mode identifiers ("custom schemes MUST start with x_")
PPT_SCHEME = "x_relayrouter_e2e"
PPT_CIPHER = "xchacha20poly1305"

NOT_ADDRESSED = "not_addressed"
UNDECRYPTABLE = "undecryptable"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_SENDER = "unknown_sender"
MALFORMED = "malformed"
WRONG_TOPIC = "wrong_topic"
RETIRED_KEY = "retired_key"
REASONS = (NOT_ADDRESSED, UNDECRYPTABLE, BAD_SIGNATURE, UNKNOWN_SENDER, MALFORMED, WRONG_TOPIC, RETIRED_KEY)

_FIXED = struct.Struct(">3sBBBQ16s8sH")  # magic .. topic_len


class EnvelopeError(Exception):
    """Why an envelope cannot be used; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Parsed:
    """An envelope's fields, before any key is used."""

    version: int
    serializer: str
    created_ms: int
    message_id: bytes
    sender_kid: str
    topic: str
    nonce: bytes
    recipients: tuple  # ((kid, wrapped), ...)
    ciphertext: bytes
    aad: bytes  # everything before the ciphertext
    signed: bytes  # everything before the signature
    signature: bytes


@dataclass(frozen=True)
class Opened:
    """A verified, decrypted envelope."""

    document: object
    sender: PublicKeys
    topic: str
    created_ms: int
    message_id: bytes
    serializer: str


def seal(document, topic: str, sender: PrivateKeys, recipients, serializer: str = "json",
         created_ms: int | None = None) -> bytes:
    """The envelope of ``document`` for ``recipients`` (PublicKeys), signed by ``sender``."""
    created_ms = created_ms if created_ms is not None else int(time.time() * 1000)
    return seal_with(serialize(document, serializer), topic, sender, recipients, serializer, created_ms,
                     content_key=os.urandom(KEY_SIZE), nonce=os.urandom(NONCE_SIZE), message_id=os.urandom(16))


def seal_with(plaintext: bytes, topic: str, sender: PrivateKeys, recipients, serializer: str, created_ms: int,
              content_key: bytes, nonce: bytes, message_id: bytes) -> bytes:
    """:func:`seal` with the random parts given (test vectors); never reuse a content key or nonce."""
    wrapped = [(r.encryption_kid, nacl.public.SealedBox(nacl.public.PublicKey(r.encryption)).encrypt(content_key))
               for r in _unique(recipients)]
    aad = header(serializer, created_ms, message_id, sender.public.signing_kid, topic, nonce, wrapped,
                 len(plaintext) + TAG_SIZE)
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, content_key)
    signed = aad + ciphertext
    return signed + sender.sign(signed)


def _unique(recipients) -> list:
    by_kid = {r.encryption_kid: r for r in recipients}
    if not by_kid:
        raise ValueError("an envelope needs at least one recipient")
    if len(by_kid) > MAX_RECIPIENTS:
        raise ValueError(f"{len(by_kid)} recipients; at most {MAX_RECIPIENTS}")
    return list(by_kid.values())


def header(serializer: str, created_ms: int, message_id: bytes, sender_kid: str, topic: str, nonce: bytes,
           wrapped: list, ct_len: int) -> bytes:
    """The associated data: every field before the ciphertext."""
    if serializer not in SERIALIZERS:
        raise ValueError(f"serializer {serializer!r}: one of {', '.join(SERIALIZERS)}")
    topic_bytes = topic.encode("utf8")
    parts = [_FIXED.pack(MAGIC, VERSION, SERIALIZERS[serializer], 0, created_ms, message_id,
                         bytes.fromhex(sender_kid), len(topic_bytes)), topic_bytes, nonce,
             struct.pack(">H", len(wrapped))]
    parts += [bytes.fromhex(kid) + box for kid, box in wrapped]
    parts.append(struct.pack(">I", ct_len))
    return b"".join(parts)


def serialize(document, serializer: str) -> bytes:
    if serializer == "json":
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf8")
    if serializer == "cbor":
        return cbor2.dumps(document)
    raise ValueError(f"serializer {serializer!r}: one of {', '.join(SERIALIZERS)}")


def parse(envelope: bytes) -> Parsed:
    """The fields of an envelope; EnvelopeError(MALFORMED) when the bytes are not one."""
    if not isinstance(envelope, (bytes, bytearray)):
        raise EnvelopeError(MALFORMED, f"the payload is a {type(envelope).__name__}, not bytes")
    envelope = bytes(envelope)
    reader = _Reader(envelope)
    magic, version, ser, flags, created_ms, message_id, sender_kid, topic_len = reader.unpack(_FIXED)
    if magic != MAGIC:
        raise EnvelopeError(MALFORMED, "not a relayrouter envelope (magic bytes differ)")
    if version != VERSION:
        raise EnvelopeError(MALFORMED, f"envelope version {version}; this build reads version {VERSION}")
    if ser not in SERIALIZER_NAMES or flags != 0:
        raise EnvelopeError(MALFORMED, f"unknown serializer code {ser} or flags {flags}")
    try:
        topic = reader.take(topic_len).decode("utf8")
    except UnicodeDecodeError:
        raise EnvelopeError(MALFORMED, "the envelope's topic is not UTF-8") from None
    nonce = reader.take(NONCE_SIZE)
    (count,) = reader.unpack(struct.Struct(">H"))
    if not 1 <= count <= MAX_RECIPIENTS:
        raise EnvelopeError(MALFORMED, f"{count} recipients; 1 to {MAX_RECIPIENTS} allowed")
    recipients = tuple((reader.take(KID_SIZE).hex(), reader.take(WRAPPED_SIZE)) for _ in range(count))
    (ct_len,) = reader.unpack(struct.Struct(">I"))
    aad_end = reader.offset
    ciphertext = reader.take(ct_len)
    signed_end = reader.offset
    signature = reader.take(SIGNATURE_SIZE)
    if reader.offset != len(envelope) or ct_len < TAG_SIZE:
        raise EnvelopeError(MALFORMED, "envelope length does not match its fields")
    return Parsed(version, SERIALIZER_NAMES[ser], created_ms, message_id, sender_kid.hex(), topic, nonce,
                  recipients, ciphertext, envelope[:aad_end], envelope[:signed_end], signature)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, n: int) -> bytes:
        end = self.offset + n
        if end > len(self.data):
            raise EnvelopeError(MALFORMED, "envelope truncated")
        chunk, self.offset = self.data[self.offset:end], end
        return chunk

    def unpack(self, fmt: struct.Struct) -> tuple:
        return fmt.unpack(self.take(fmt.size))


def open_envelope(envelope: bytes, keys, senders: dict, topic: str | None = None,
                  retired=frozenset()) -> Opened:
    """Verify and decrypt; ``senders`` maps signing key id -> PublicKeys of the senders we trust.

    ``keys`` is our PrivateKeys, or several (a key ring: the current pair first, then earlier ones, so
    what was sealed for an earlier key still opens).  ``topic``, when given, must be the topic the
    envelope was sealed for.  ``retired`` holds key ids that take no new envelope: one signed by a
    retired key (after its signature verified, when the key is known), or addressed to none of our
    keys but retired ones, is refused as RETIRED_KEY.
    """
    parsed = parse(envelope)
    if topic is not None and parsed.topic != topic:
        raise EnvelopeError(WRONG_TOPIC, f"sealed for topic '{parsed.topic}', received on '{topic}'")
    ring = keys if isinstance(keys, (list, tuple)) else (keys,)
    entries = dict(parsed.recipients)
    mine = [(k, entries[k.public.encryption_kid]) for k in ring if k.public.encryption_kid in entries]
    if not mine:
        raise EnvelopeError(NOT_ADDRESSED, f"not addressed to key {', '.join(k.public.encryption_kid for k in ring)} "
                            f"(recipients: {', '.join(kid for kid, _ in parsed.recipients)})")
    sender = senders.get(parsed.sender_kid)
    if sender is None and parsed.sender_kid in retired:
        raise EnvelopeError(RETIRED_KEY, f"signed by retired key {parsed.sender_kid}")
    if sender is None:
        raise EnvelopeError(UNKNOWN_SENDER, f"signed by unknown key {parsed.sender_kid}")
    verify(parsed, sender)
    if parsed.sender_kid in retired:
        raise EnvelopeError(RETIRED_KEY, f"signed by {sender.org or 'a'} key {parsed.sender_kid}, which is retired")
    usable = [(k, box) for k, box in mine if k.public.encryption_kid not in retired]
    if not usable:
        raise EnvelopeError(RETIRED_KEY, f"addressed only to our retired key "
                            f"{', '.join(k.public.encryption_kid for k, _ in mine)}")
    key, wrapped = usable[0]
    return Opened(decrypt(parsed, key, wrapped), sender, parsed.topic, parsed.created_ms, parsed.message_id,
                  parsed.serializer)


def verify(parsed: Parsed, sender: PublicKeys) -> None:
    try:
        nacl.signing.VerifyKey(sender.signing).verify(parsed.signed, parsed.signature)
    except nacl.exceptions.BadSignatureError:
        raise EnvelopeError(BAD_SIGNATURE, f"signature does not verify with {sender.org or 'the'} key "
                            f"{sender.signing_kid}") from None


def decrypt(parsed: Parsed, keys: PrivateKeys, wrapped: bytes):
    try:
        content_key = keys.unwrap(wrapped)
        plaintext = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(parsed.ciphertext, parsed.aad,
                                                                       parsed.nonce, content_key)
    except nacl.exceptions.CryptoError:
        raise EnvelopeError(UNDECRYPTABLE, f"cannot decrypt with key {keys.public.encryption_kid}") from None
    return deserialize(plaintext, parsed.serializer)


def deserialize(plaintext: bytes, serializer: str):
    try:
        if serializer == "json":  # from a trusted sender, still read bounded: nesting past the limit is refused
            return json_value(plaintext, field="the decrypted payload")
        return cbor2.loads(plaintext)
    except (ValueError, cbor2.CBORDecodeError):
        raise EnvelopeError(MALFORMED, f"the decrypted payload is not valid {serializer}") from None


def ppt_options(envelope: bytes) -> dict:
    """The Payload Passthru Mode options that go with ``envelope`` (PUBLISH, CALL, YIELD, ERROR)."""
    parsed = parse(envelope)
    return {"ppt_scheme": PPT_SCHEME, "ppt_serializer": parsed.serializer, "ppt_cipher": PPT_CIPHER,
            "ppt_keyid": parsed.sender_kid}
