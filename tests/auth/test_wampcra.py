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


def test_the_challenge_names_the_principals_own_role_in_compact_json_with_the_milliseconds():
    clock = lambda: 1_700_000_000.987  # noqa: E731
    ch = WampCraAuthenticator(PRINCIPALS, clock=clock).hello(request("salty"))
    body = json.loads(ch.extra["challenge"])
    assert (body["authrole"], body["session"], body["timestamp"]) == ("admin", 0, "2023-11-14T22:13:20.987Z")
    assert ch.extra["challenge"] == json.dumps(body, separators=(",", ":"))  # no white space: what is signed
    assert len(body["nonce"]) == 22  # 128 random bits, base64url


def test_the_challenge_time_is_utc_whatever_the_local_time_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        ch = WampCraAuthenticator(PRINCIPALS, clock=lambda: 1_700_000_000.0).hello(request("plain"))
    finally:
        monkeypatch.undo()
        time.tzset()
    assert json.loads(ch.extra["challenge"])["timestamp"] == "2023-11-14T22:13:20.000Z"


def test_an_unknown_authid_looks_like_a_salted_principal_of_its_own(clock):
    a = WampCraAuthenticator({"only": WampCraPrincipal("s", "operator", salt=Salt("realsalt", 7, 24))}, clock=clock)
    one, two = a.hello(request("nobody")), a.hello(request("somebody"))
    assert json.loads(one.extra["challenge"])["authrole"] == "operator"
    assert (one.extra["iterations"], one.extra["keylen"]) == (7, 24)
    assert len(one.extra["salt"]) == 16 and one.extra["salt"] != two.extra["salt"]


def test_without_salted_principals_an_unknown_authid_gets_no_salt_and_without_any_no_role(clock):
    ch = WampCraAuthenticator({"plain": WampCraPrincipal("s", "user")}, clock=clock).hello(request("nobody"))
    assert set(ch.extra) == {"challenge"}
    ch = WampCraAuthenticator({}, clock=clock).hello(request("nobody"))
    assert json.loads(ch.extra["challenge"])["authrole"] == "" and set(ch.extra) == {"challenge"}


def test_a_salt_with_its_own_key_length_is_accepted_with_autobahns_client_math(clock):
    a = WampCraAuthenticator({"short": WampCraPrincipal("secret", "user", salt=Salt("s4lt", 10, 16))}, clock=clock)
    ch = a.hello(request("short"))
    assert isinstance(a.authenticate(request("short"), ch.state, client_signature("secret", ch.extra), {}), Accept)


@pytest.mark.parametrize("signature", [None, 7, "é" * 44, ""])
def test_a_signature_that_is_not_ascii_text_is_denied(clock, signature):
    a = auth(clock)
    ch = a.hello(request("plain"))
    assert a.authenticate(request("plain"), ch.state, signature, {}) == Deny("wrong authid or WAMP-CRA signature")


def test_an_accepted_session_carries_the_realms_provider(clock):
    a = WampCraAuthenticator(PRINCIPALS, clock=clock, authprovider="directory")
    ch = a.hello(request("plain"))
    assert a.authenticate(request("plain"), ch.state, client_signature("secret-one", ch.extra), {}) == \
        Accept("plain", "user", "wampcra", authprovider="directory")


def test_refusals_say_why(clock):
    assert auth(clock).hello(request(None)) == Deny("WAMP-CRA needs an authid in HELLO")
    with pytest.raises(ValueError) as refused:
        WampCraPrincipal("", "operator")
    assert str(refused.value) == "empty WAMP-CRA secret for role 'operator'"
    with pytest.raises(ValueError) as refused:
        Salt("")
    assert str(refused.value) == "empty WAMP-CRA salt"
    for iterations, keylen in ((0, 32), (1000, 0)):
        with pytest.raises(ValueError) as refused:
            Salt("s", iterations, keylen)
        assert str(refused.value) == f"WAMP-CRA iterations and keylen must be positive, not {iterations} and {keylen}"
    assert Salt("s", 1, 1).extra() == {"salt": "s", "iterations": 1, "keylen": 1}  # the smallest allowed
