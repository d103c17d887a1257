"""The envelope format: the test vector, every refusal reason, tampering anywhere."""

import hashlib
import json
import struct
from pathlib import Path

import nacl.bindings as sodium
import nacl.public
import nacl.signing
import pytest

from relayrouter import e2e
from relayrouter.e2e import envelope as env
from relayrouter.e2e.keys import FileKeys, b64

VECTOR = json.loads((Path(__file__).parent / "vectors" / "envelope-v1.json").read_text("utf8"))


def vector_keys(org: str) -> FileKeys:
    k = VECTOR["keys"][org]
    return e2e.keys.parse_private(json.dumps({"version": 1, "org": org, "x25519_private": k["x25519_private"],
                                              "ed25519_seed": k["ed25519_seed"]}), "vector")


ACME, GLOBEX = vector_keys("acme"), vector_keys("globex")
TRUSTED = {ACME.public.signing_kid: ACME.public}


def test_vector_public_keys_and_key_ids():
    for org, keys in (("acme", ACME), ("globex", GLOBEX)):
        expected = VECTOR["keys"][org]
        assert keys.public.as_dict() == {k: expected[k] for k in keys.public.as_dict()}
        assert keys.public.encryption_kid == hashlib.sha256(keys.public.encryption).hexdigest()[:16]


def test_vector_opens_for_both_recipients_with_the_documented_fields():
    envelope = bytes.fromhex(VECTOR["envelope"])
    for keys in (ACME, GLOBEX):
        opened = e2e.open_envelope(envelope, keys, TRUSTED, topic=VECTOR["topic"])
        assert opened.document == VECTOR["document"]
        assert opened.sender.org == "acme" and opened.created_ms == VECTOR["created_ms"]
        assert opened.message_id.hex() == VECTOR["message_id"]
    assert e2e.ppt_options(envelope) == VECTOR["ppt"]


def test_vector_bytes_follow_from_the_inputs():
    """Everything but the sealed boxes is deterministic: rebuild it field by field."""
    envelope = bytes.fromhex(VECTOR["envelope"])
    parsed = e2e.parse(envelope)
    topic = VECTOR["topic"].encode()
    fixed = (b"RRE" + bytes([1, 1, 0]) + struct.pack(">Q", VECTOR["created_ms"]) + bytes.fromhex(VECTOR["message_id"])
             + bytes.fromhex(ACME.public.signing_kid) + struct.pack(">H", len(topic)) + topic
             + bytes.fromhex(VECTOR["nonce"]) + struct.pack(">H", 2))
    assert envelope.startswith(fixed)
    kids = [kid for kid, _ in parsed.recipients]
    assert kids == [ACME.public.encryption_kid, GLOBEX.public.encryption_kid]
    plaintext = bytes.fromhex(VECTOR["plaintext"])
    assert json.loads(plaintext) == VECTOR["document"]
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
        plaintext, parsed.aad, bytes.fromhex(VECTOR["nonce"]), bytes.fromhex(VECTOR["content_key"]))
    assert ciphertext.hex() == VECTOR["ciphertext"] == parsed.ciphertext.hex()
    assert parsed.aad.hex() == VECTOR["aad"]
    assert parsed.aad.endswith(struct.pack(">I", len(ciphertext)))
    # Ed25519 is deterministic: the signature over header + ciphertext is reproducible
    assert ACME.sign(parsed.aad + ciphertext).hex() == VECTOR["signature"]
    nacl.signing.VerifyKey(ACME.public.signing).verify(envelope[:-64], envelope[-64:])
    # each wrapped key is a sealed box of the content key for that recipient
    for keys, (_, wrapped) in zip((ACME, GLOBEX), parsed.recipients):
        assert keys.unwrap(wrapped).hex() == VECTOR["content_key"]


def test_roundtrip_cbor_binary_and_many_recipients():
    orgs = [FileKeys.generate(f"org{i}") for i in range(5)]
    document = {"blob": b"\x00\xff", "n": 3}
    envelope = e2e.seal(document, "com.t", ACME, [o.public for o in orgs], serializer="cbor")
    assert e2e.ppt_options(envelope)["ppt_serializer"] == "cbor"
    for o in orgs:
        assert e2e.open_envelope(envelope, o, TRUSTED).document == document
    # a fresh content key and nonce per message
    again = e2e.parse(e2e.seal(document, "com.t", ACME, [o.public for o in orgs], serializer="cbor"))
    assert again.nonce != e2e.parse(envelope).nonce


def reason(envelope, keys=GLOBEX, senders=TRUSTED, topic=None) -> str:
    with pytest.raises(e2e.EnvelopeError) as caught:
        e2e.open_envelope(envelope, keys, senders, topic=topic)
    assert caught.value.message and "base64" not in caught.value.message
    return caught.value.reason


def test_refusal_reasons():
    other = FileKeys.generate("initech")
    for_acme_only = e2e.seal({"x": 1}, "com.t", ACME, [ACME.public])
    assert reason(for_acme_only) == e2e.NOT_ADDRESSED
    by_stranger = e2e.seal({"x": 1}, "com.t", other, [GLOBEX.public])
    assert reason(by_stranger) == e2e.UNKNOWN_SENDER
    assert reason(e2e.seal({"x": 1}, "com.t", ACME, [GLOBEX.public]), topic="com.other") == e2e.WRONG_TOPIC
    assert reason(b"not an envelope") == e2e.MALFORMED
    assert reason("a string") == e2e.MALFORMED


def test_forged_signature_and_any_flipped_byte_is_refused():
    good = e2e.seal({"x": 1}, "com.t", ACME, [GLOBEX.public])
    # a stranger re-signs under acme's key id: bad signature
    stranger = nacl.signing.SigningKey.generate()
    forged = good[:-64] + stranger.sign(good[:-64]).signature
    assert reason(forged) == e2e.BAD_SIGNATURE
    for i in range(0, len(good), 7):
        flipped = bytearray(good)
        flipped[i] ^= 0x01
        assert reason(bytes(flipped)) in (e2e.MALFORMED, e2e.BAD_SIGNATURE, e2e.NOT_ADDRESSED,
                                          e2e.UNKNOWN_SENDER), i


def test_undecryptable_when_the_wrapped_key_is_not_for_our_key():
    """A sender that signs correctly but wraps the content key for another key under our key id."""
    other = FileKeys.generate("initech")
    sealed = e2e.parse(e2e.seal({"x": 1}, "com.t", ACME, [other.public]))
    plaintext = env.serialize({"x": 1}, "json")
    aad = env.header("json", sealed.created_ms, sealed.message_id, ACME.public.signing_kid, "com.t", sealed.nonce,
                     [(GLOBEX.public.encryption_kid, sealed.recipients[0][1])], len(plaintext) + env.TAG_SIZE)
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, sealed.nonce, bytes(32))
    envelope = aad + ciphertext + ACME.sign(aad + ciphertext)
    assert reason(envelope) == e2e.UNDECRYPTABLE


@pytest.mark.parametrize("garbage", [b"{not json", b"[" * 20000, b"[" * 101 + b"]" * 101])
def test_decrypted_garbage_is_malformed(garbage):
    """Not JSON, or nested past the reader's limit (thousands deep was a RecursionError)."""
    aad_args = dict(serializer="json", created_ms=1, message_id=bytes(16), sender_kid=ACME.public.signing_kid,
                    topic="com.t", nonce=bytes(24))
    key = bytes(range(32))
    wrapped = [(GLOBEX.public.encryption_kid,
                nacl.public.SealedBox(nacl.public.PublicKey(GLOBEX.public.encryption)).encrypt(key))]
    aad = env.header(wrapped=wrapped, ct_len=len(garbage) + 16, **aad_args)
    ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(garbage, aad, bytes(24), key)
    assert reason(aad + ciphertext + ACME.sign(aad + ciphertext)) == e2e.MALFORMED


def test_repr_of_keys_shows_no_secret():
    text = repr(ACME) + str(ACME.public)
    assert VECTOR["keys"]["acme"]["x25519_private"] not in text
    assert VECTOR["keys"]["acme"]["ed25519_seed"] not in text
    assert b64(bytes(ACME._box_key)) == VECTOR["keys"]["acme"]["x25519_private"]

