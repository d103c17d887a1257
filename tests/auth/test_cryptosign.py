import os

import pytest
import txaio
from autobahn.wamp import message as m
from autobahn.wamp.cryptosign import CryptosignKey
from autobahn.wamp.types import Challenge as ClientChallenge

from relayrouter.auth.cryptosign import CryptosignAuthenticator, CryptosignPrincipal
from relayrouter.core.auth import Accept, Challenge, Deny
from relayrouter.core.peer import TransportInfo

from .wire import Wire, assert_abort, assert_welcome, request

txaio.use_twisted()

ALICE = CryptosignKey.from_bytes(bytes(range(32)))
MALLORY = CryptosignKey.from_bytes(bytes(range(1, 33)))
TLS = TransportInfo(kind="websocket", is_secure=True, channel_id={"tls-unique": os.urandom(32)})


def auth(**options):
    return CryptosignAuthenticator({"alice": CryptosignPrincipal((ALICE.public_key(),), "device")}, **options)


def sign(key: CryptosignKey, extra: dict, channel_id=None, binding=None) -> str:
    """Autobahn's client half, exactly as AuthCryptoSign.on_challenge calls it."""
    results = []
    d = key.sign_challenge(ClientChallenge("cryptosign", extra), channel_id=channel_id, channel_id_type=binding)
    d.addCallback(results.append)
    return results[0]


def hello(a, key=ALICE, transport=None, **authextra):
    return a.hello(request(None, {"pubkey": key.public_key(), **authextra}, transport))


def test_autobahn_signature_is_accepted():
    a = auth()
    ch = hello(a)
    assert isinstance(ch, Challenge) and len(ch.extra["challenge"]) == 64
    decision = a.authenticate(request(), ch.state, sign(ALICE, ch.extra), {})
    assert isinstance(decision, Accept)
    assert (decision.authid, decision.authrole, decision.authmethod) == ("alice", "device", "cryptosign")


def test_tls_unique_binding_with_autobahn_signature_is_accepted():
    a = auth()
    ch = hello(a, transport=TLS, channel_binding="tls-unique")
    signature = sign(ALICE, ch.extra, TLS.channel_id["tls-unique"], "tls-unique")
    assert isinstance(a.authenticate(request(transport=TLS), ch.state, signature, {}), Accept)


def test_tls_unique_binding_mismatch_is_denied():
    # The client signed for another TLS channel (a relayed credential).
    a = auth()
    ch = hello(a, transport=TLS, channel_binding="tls-unique")
    signature = sign(ALICE, ch.extra, os.urandom(32), "tls-unique")
    assert a.authenticate(request(transport=TLS), ch.state, signature, {}) == \
        Deny("cryptosign signature is not over this session's challenge")


@pytest.mark.parametrize("transport", [
    TransportInfo(), TransportInfo(kind="websocket", is_secure=False, channel_id={"tls-unique": os.urandom(32)}),
    TransportInfo(kind="websocket", is_secure=True, channel_id={"tls-unique": os.urandom(12)}),
    TransportInfo(kind="websocket", is_secure=True, channel_id={}),
], ids=["no TLS", "a channel id without TLS", "a channel id of the wrong length", "no channel id"])
def test_tls_unique_without_a_tls_channel_is_denied(transport):
    assert hello(auth(), transport=transport, channel_binding="tls-unique") == \
        Deny("channel_binding 'tls-unique' needs a TLS connection")


def test_required_binding_refuses_an_unbound_client():
    assert hello(auth(require_channel_binding=True), transport=TLS) == \
        Deny("this realm requires channel_binding 'tls-unique'")


def test_unknown_binding_is_denied():
    assert "tls-exporter" in hello(auth(), transport=TLS, channel_binding="tls-exporter").message


def test_wrong_key_signing_is_denied():
    # Claims alice's public key but signs with another private key.
    a = auth()
    ch = hello(a)
    assert a.authenticate(request(), ch.state, sign(MALLORY, ch.extra), {}) == Deny("cryptosign signature invalid")


def test_unregistered_public_key_is_denied():
    assert hello(auth(), key=MALLORY) == Deny("this public key is not registered for the authid")


def test_authid_not_owning_the_key_is_denied():
    a = auth()
    assert a.hello(request("bob", {"pubkey": ALICE.public_key()})) == \
        Deny("this public key is not registered for the authid")


def test_missing_pubkey_is_denied():
    assert auth().hello(request("alice")) == Deny("cryptosign needs the client's public key (hex) in authextra.pubkey")


@pytest.mark.parametrize("signature", ["", "zz", "00" * 95, None])
def test_malformed_signature_is_denied(signature):
    a = auth()
    assert a.authenticate(request(), hello(a).state, signature, {}) == \
        Deny("cryptosign signature must be 96 bytes in hex (signature and challenge)")


def test_the_challenge_says_which_binding_it_is_over():
    assert set(hello(auth()).extra) == {"challenge", "channel_binding"}
    assert hello(auth()).extra["channel_binding"] is None
    assert hello(auth(), transport=TLS, channel_binding="tls-unique").extra["channel_binding"] == "tls-unique"


@pytest.mark.parametrize("options, provider", [({}, "static"), ({"authprovider": "dynamic"}, "dynamic")])
def test_an_accepted_session_carries_its_provider_and_its_public_key_in_lower_case(options, provider):
    a = auth(**options)
    ch = a.hello(request(None, {"pubkey": ALICE.public_key().upper()}))
    decision = a.authenticate(request(), ch.state, sign(ALICE, ch.extra), {})
    assert decision == Accept("alice", "device", "cryptosign", authprovider=provider,
                              authextra={"pubkey": ALICE.public_key().lower()})


def test_a_public_key_listed_twice_or_none_is_refused_naming_why():
    with pytest.raises(ValueError) as refused:
        CryptosignAuthenticator({"alice": CryptosignPrincipal((ALICE.public_key(),), "device"),
                                 "bob": CryptosignPrincipal((ALICE.public_key(),), "device")})
    assert str(refused.value) == f"public key {ALICE.public_key()} is listed for both 'alice' and 'bob'"
    with pytest.raises(ValueError) as refused:
        CryptosignPrincipal((), "device")
    assert str(refused.value) == "cryptosign principal with role 'device' has no public key"


def test_bad_public_key_config_names_the_value():
    with pytest.raises(ValueError, match="abc"):
        CryptosignPrincipal(("abc",), "x")


def test_through_the_session():
    wire = Wire({"cryptosign": auth()})
    challenge = wire.hello(["cryptosign"], authextra={"pubkey": ALICE.public_key()})
    assert isinstance(challenge, m.Challenge) and challenge.method == "cryptosign"
    assert_welcome(wire.authenticate(sign(ALICE, challenge.extra)), "alice", "device", "cryptosign")


def test_wrong_key_through_the_session_aborts():
    wire = Wire({"cryptosign": auth()})
    challenge = wire.hello(["cryptosign"], authextra={"pubkey": ALICE.public_key()})
    assert_abort(wire.authenticate(sign(MALLORY, challenge.extra)), "signature invalid")
