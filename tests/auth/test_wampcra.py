import json

import pytest
from autobahn.wamp import message as m
from autobahn.wamp.auth import compute_wcs, derive_key

from relayrouter.auth.wampcra import Salt, WampCraAuthenticator, WampCraPrincipal
from relayrouter.core.auth import Accept, Challenge, Deny

from .wire import Wire, assert_abort, assert_welcome, request

SALT = Salt("salt123", iterations=100, keylen=32)
PRINCIPALS = {
    "plain": WampCraPrincipal("secret-one", "user"),
    "salty": WampCraPrincipal("secret-two", "admin", salt=SALT),
}


def auth(clock):
    return WampCraAuthenticator(PRINCIPALS, clock=clock)


def client_signature(secret: str, extra: dict) -> str:
    """What autobahn's AuthWampCra.on_challenge computes."""
    key = secret.encode()
    if "salt" in extra:
        key = derive_key(secret, extra["salt"], extra["iterations"], extra["keylen"])
    return compute_wcs(key, extra["challenge"].encode()).decode("ascii")


def test_challenge_is_the_spec_json(clock):
    challenge = auth(clock).hello(request("plain"))
    assert isinstance(challenge, Challenge) and challenge.method == "wampcra"
    body = json.loads(challenge.extra["challenge"])
    assert set(body) == {"authid", "authrole", "authmethod", "authprovider", "nonce", "timestamp", "session"}
    assert (body["authid"], body["authrole"], body["authmethod"]) == ("plain", "user", "wampcra")
    assert body["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert "salt" not in challenge.extra


def test_plain_secret_is_accepted(clock):
    a = auth(clock)
    ch = a.hello(request("plain"))
    decision = a.authenticate(request("plain"), ch.state, client_signature("secret-one", ch.extra), {})
    assert decision == Accept("plain", "user", "wampcra", authprovider="static")


def test_salted_secret_sends_salt_and_is_accepted(clock):
    a = auth(clock)
    ch = a.hello(request("salty"))
    assert (ch.extra["salt"], ch.extra["iterations"], ch.extra["keylen"]) == ("salt123", 100, 32)
    decision = a.authenticate(request("salty"), ch.state, client_signature("secret-two", ch.extra), {})
    assert isinstance(decision, Accept) and decision.authrole == "admin"


def test_wrong_secret_is_denied(clock):
    a = auth(clock)
    ch = a.hello(request("plain"))
    decision = a.authenticate(request("plain"), ch.state, client_signature("secret-two", ch.extra), {})
    assert decision == Deny("wrong authid or WAMP-CRA signature")


def test_signature_for_another_challenge_is_denied(clock):
    a = auth(clock)
    first, second = a.hello(request("plain")), a.hello(request("plain"))
    replayed = client_signature("secret-one", first.extra)
    assert isinstance(a.authenticate(request("plain"), second.state, replayed, {}), Deny)


def test_unknown_authid_is_challenged_and_denied_like_a_wrong_secret(clock):
    a = auth(clock)
    ch = a.hello(request("nobody"))
    assert isinstance(ch, Challenge) and "salt" in ch.extra  # looks like any salted principal
    assert a.hello(request("nobody")).extra["salt"] == ch.extra["salt"]  # stable when probed again
    decision = a.authenticate(request("nobody"), ch.state, client_signature("secret-one", ch.extra), {})
    assert decision == Deny("wrong authid or WAMP-CRA signature")


def test_bad_salt_config_names_the_value():
    with pytest.raises(ValueError, match="-5"):
        Salt("s", iterations=-5)


def test_through_the_session_with_autobahns_client_math(clock):
    wire = Wire({"wampcra": auth(clock)})
    challenge = wire.hello(["wampcra"], authid="salty")
    assert isinstance(challenge, m.Challenge) and challenge.method == "wampcra"
    welcome = wire.authenticate(client_signature("secret-two", challenge.extra))
    assert_welcome(welcome, "salty", "admin", "wampcra")


def test_wrong_secret_through_the_session_aborts(clock):
    wire = Wire({"wampcra": auth(clock)})
    challenge = wire.hello(["wampcra"], authid="plain")
    assert_abort(wire.authenticate(client_signature("wrong", challenge.extra)), "WAMP-CRA")
