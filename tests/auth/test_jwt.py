import base64
import hashlib
import hmac
import json

import jwt as pyjwt
import pytest
from autobahn.wamp import message as m
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from relayrouter.auth._pending import Pending
from relayrouter.auth.jwt import FetchedKeys, JwtAuthenticator, JwtKey, JwtPolicy, StaticKeys
from relayrouter.core.auth import Accept, Challenge, Deny

from .wire import Wire, assert_abort, assert_welcome, request

NOW = 1_700_000_000
SECRET = b"0123456789abcdef0123456789abcdef"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
POLICY = JwtPolicy(algorithms=("HS256",), audience="relay", issuer="https://issuer", authrole="user")


def pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def claims(**overrides):
    base = {"sub": "alice", "aud": "relay", "iss": "https://issuer", "iat": NOW, "exp": NOW + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(key=SECRET, alg="HS256", kid=None, **overrides) -> str:
    headers = {"kid": kid} if kid else None
    return pyjwt.encode(claims(**overrides), key, algorithm=alg, headers=headers)


def auth(clock, keys=None, policy=POLICY, authmethod="jwt"):
    return JwtAuthenticator(keys or StaticKeys([JwtKey.hmac(SECRET)]), policy, authmethod=authmethod, clock=clock)


def check(clock, tok, **kw):
    return auth(clock, **kw).check(tok)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ------------------------------------------------------------------ accepted

def test_hs256_token_is_accepted_with_claims_as_permissions(clock):
    decision = check(clock, token(topic="lab/1", scopes=["read"]))
    assert isinstance(decision, Accept)
    assert (decision.authid, decision.authrole, decision.authmethod) == ("alice", "user", "jwt")
    assert decision.expires_at == NOW + 300
    assert decision.permissions["topic"] == "lab/1" and decision.permissions["scopes"] == ("read",)
    with pytest.raises(TypeError):
        decision.permissions["topic"] = "other"


@pytest.mark.parametrize("private_key, alg", [(RSA_KEY, "RS256"), (RSA_KEY, "PS384"), (EC_KEY, "ES256"),
                                              (ED_KEY, "EdDSA")])
def test_public_key_algorithms_are_accepted(clock, private_key, alg):
    policy = JwtPolicy(algorithms=(alg,), audience="relay", authrole="user")
    keys = StaticKeys([JwtKey.from_pem(pem(private_key))])
    assert isinstance(check(clock, token(private_key, alg), keys=keys, policy=policy), Accept)


def test_role_and_authid_from_configured_claims(clock):
    policy = JwtPolicy(algorithms=("HS256",), authid_claim="email", authrole_claim="role", authrole="guest")
    decision = check(clock, token(email="a@example.org", role="operator"), policy=policy)
    assert (decision.authid, decision.authrole) == ("a@example.org", "operator")
    assert check(clock, token(email="a@example.org"), policy=policy).authrole == "guest"


def test_leeway_forgives_small_skew(clock):
    policy = JwtPolicy(algorithms=("HS256",), authrole="user", leeway=30)
    assert isinstance(check(clock, token(exp=NOW - 10), policy=policy), Accept)
    assert isinstance(check(clock, token(nbf=NOW + 10), policy=policy), Accept)


# -------------------------------------------------------------------- denied

@pytest.mark.parametrize("overrides, message", [
    ({"exp": NOW - 1}, "token expired"),
    ({"exp": NOW}, "token expired"),
    ({"nbf": NOW + 60}, "token not yet valid"),
    ({"iat": NOW + 60}, "token not yet valid (issued in the future)"),
    ({"aud": "elsewhere"}, "wrong audience"),
    ({"aud": None}, "wrong audience"),
    ({"iss": "https://evil"}, "wrong issuer"),
    ({"exp": None}, "token has no expiry (exp claim)"),
    ({"exp": "tomorrow"}, "malformed token: 'exp' is not a number"),
    ({"sub": None}, "token has no 'sub' claim to take the authid from"),
])
def test_bad_claims_are_denied_in_user_terms(clock, overrides, message):
    assert check(clock, token(**overrides)) == Deny(message)


def test_audience_list_containing_ours_is_accepted(clock):
    assert isinstance(check(clock, token(aud=["other", "relay"])), Accept)


def test_tampered_payload_is_denied(clock):
    header, _, signature = token().split(".")
    forged = _b64(json.dumps(claims(sub="admin")).encode())
    assert check(clock, f"{header}.{forged}.{signature}") == Deny("token signature invalid")


def test_token_signed_with_another_secret_is_denied(clock):
    assert check(clock, token(key=b"x" * 32)) == Deny("token signature invalid")


def test_alg_none_is_denied(clock):
    unsigned = pyjwt.encode(claims(), None, algorithm="none")
    decision = check(clock, unsigned)
    assert decision.message.startswith("algorithm not accepted")


def test_none_can_never_be_configured():
    with pytest.raises(ValueError, match="'none'"):
        JwtPolicy(algorithms=("none",), authrole="user")


def hs_token_keyed_with_rsa_public_pem() -> str:
    """The classic confusion attack: HMAC over the token with the RSA public key as secret."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims()).encode())
    mac = hmac.new(pem(RSA_KEY), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


def test_hmac_token_where_rsa_is_configured_is_denied(clock):
    keys = StaticKeys([JwtKey.from_pem(pem(RSA_KEY))])
    rs_only = JwtPolicy(algorithms=("RS256",), authrole="user")
    assert check(clock, hs_token_keyed_with_rsa_public_pem(), keys=keys, policy=rs_only).message.startswith(
        "algorithm not accepted")
    # Even a realm that accepts both families never uses an RSA key as an HMAC secret.
    both = JwtPolicy(algorithms=("HS256", "RS256"), authrole="user")
    assert check(clock, hs_token_keyed_with_rsa_public_pem(), keys=keys, policy=both) == \
        Deny("algorithm not accepted for this key")


def test_malformed_tokens_are_denied_without_echo(clock):
    for bad in ["", "abc", "a.b.c", None, 42]:
        decision = check(clock, bad)
        assert isinstance(decision, Deny) and decision.message.startswith("malformed token")


def test_denials_never_echo_the_token(clock):
    tok = token(exp=NOW - 1)
    assert tok not in check(clock, tok).message


def test_short_or_pem_hmac_secret_is_a_config_error():
    with pytest.raises(ValueError, match="10 bytes"):
        JwtKey.hmac(b"0123456789")
    with pytest.raises(ValueError, match="HS512 needs at least 64"):
        JwtKey.hmac(SECRET, algorithms=("HS512",))
    assert JwtKey.hmac(SECRET).algorithms == ("HS256",)  # only what the length allows
    with pytest.raises(ValueError, match="PEM"):
        JwtKey.hmac(pem(RSA_KEY))


def test_private_key_as_verification_key_is_a_config_error():
    private_pem = RSA_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    with pytest.raises(ValueError, match="private key"):
        JwtKey.from_pem(private_pem)


# ---------------------------------------------------------------- key ids

def rsa_jwk(kid: str) -> dict:
    jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


RS_POLICY = JwtPolicy(algorithms=("RS256",), authrole="user")


def test_kid_selects_the_key(clock):
    keys = StaticKeys([JwtKey.hmac(b"k" * 32, kid="old"), JwtKey.hmac(SECRET, kid="new")])
    assert isinstance(check(clock, token(kid="new"), keys=keys), Accept)
    assert check(clock, token(kid="gone"), keys=keys) == Deny("token signed with an unknown key")


class FakeFetch:
    """Stands in for jwks_fetcher: each call returns a Pending the test fires."""

    def __init__(self):
        self.calls: list[Pending] = []

    def __call__(self):
        self.calls.append(Pending())
        return self.calls[-1]


def test_unknown_kid_refreshes_once_then_decides(clock):
    fetch = FakeFetch()
    keys = FetchedKeys(fetch, clock=clock, min_interval=60)
    later = check(clock, token(RSA_KEY, "RS256", kid="k1"), keys=keys, policy=RS_POLICY)
    decisions = []
    later.addBoth(decisions.append)
    assert decisions == [] and len(fetch.calls) == 1
    fetch.calls[0].fire({"keys": [rsa_jwk("k1")]})
    assert isinstance(decisions[0], Accept)


def test_refresh_that_does_not_find_the_kid_denies(clock):
    fetch = FakeFetch()
    keys = FetchedKeys(fetch, clock=clock)
    decisions = []
    check(clock, token(RSA_KEY, "RS256", kid="k9"), keys=keys, policy=RS_POLICY).addBoth(decisions.append)
    fetch.calls[0].fire({"keys": [rsa_jwk("k1")]})
    assert decisions == [Deny("token signed with an unknown key")]


def test_refreshes_are_rate_limited_and_shared(clock):
    fetch = FakeFetch()
    keys = FetchedKeys(fetch, clock=clock, min_interval=60)
    a = auth(clock, keys=keys, policy=RS_POLICY)
    first, second = [], []
    a.check(token(RSA_KEY, "RS256", kid="k1")).addBoth(first.append)
    a.check(token(RSA_KEY, "RS256", kid="k1")).addBoth(second.append)  # joins the running fetch
    assert len(fetch.calls) == 1
    fetch.calls[0].fire({"keys": [rsa_jwk("k1")]})
    assert isinstance(first[0], Accept) and isinstance(second[0], Accept)
    assert a.check(token(RSA_KEY, "RS256", kid="made-up")) == Deny("token signed with an unknown key")
    assert len(fetch.calls) == 1  # too soon for another fetch
    clock.now += 61
    assert hasattr(a.check(token(RSA_KEY, "RS256", kid="made-up")), "addBoth")
    assert len(fetch.calls) == 2


def test_failed_refresh_keeps_keys_counts_and_denies(clock):
    fetch = FakeFetch()
    keys = FetchedKeys(fetch, clock=clock, keys=[JwtKey.from_jwk(rsa_jwk("k1"))])
    decisions = []
    check(clock, token(RSA_KEY, "RS256", kid="k2"), keys=keys, policy=RS_POLICY).addBoth(decisions.append)
    fetch.calls[0].fire(ConnectionRefusedError("jwks host down"))
    assert decisions == [Deny("token signed with an unknown key")]
    assert keys.refresh_failures == 1 and "jwks host down" in keys.last_error
    assert keys.key_for("k1") is not None


# ------------------------------------------------------------ through the session

def test_jwt_as_ticket_through_the_session(clock):
    wire = Wire({"ticket": auth(clock, authmethod="ticket")})
    challenge = wire.hello(["ticket"], authid="ignored")
    assert isinstance(challenge, m.Challenge) and challenge.method == "ticket"
    assert_welcome(wire.authenticate(token()), "alice", "user", "ticket")
    assert wire.peer.session.expires_at == NOW + 300


def test_jwt_method_with_token_in_hello(clock):
    wire = Wire({"jwt": auth(clock)})
    assert_welcome(wire.hello(["jwt"], authextra={"token": token()}), "alice", "user", "jwt")


def test_jwt_method_without_token_is_challenged(clock):
    a = auth(clock)
    assert a.hello(request()) == Challenge("jwt", {})


def test_expired_token_through_the_session_aborts(clock):
    wire = Wire({"ticket": auth(clock, authmethod="ticket")})
    wire.hello(["ticket"])
    assert_abort(wire.authenticate(token(exp=NOW - 5)), "token expired")


def test_unknown_kid_through_the_session_waits_for_the_refresh(clock):
    fetch = FakeFetch()
    keys = FetchedKeys(fetch, clock=clock)
    wire = Wire({"jwt": auth(clock, keys=keys, policy=RS_POLICY)})
    wire.hello(["jwt"], authextra={"token": token(RSA_KEY, "RS256", kid="k1")})
    assert wire.peer.sent == [] and not wire.peer.closed  # waiting for the keys
    fetch.calls[0].fire({"keys": [rsa_jwk("k1")]})
    assert_welcome(wire.peer.last(), "alice", "user", "jwt")


def test_without_any_key_a_fetch_may_start_every_ten_seconds_whatever_min_interval(clock):
    fetch = FakeFetch()
    keys = FetchedKeys(fetch, clock=clock, min_interval=3600)
    keys.refresh()
    fetch.calls[0].fire(ValueError("connection refused"))  # the JWKS server is down
    clock.now += 9
    assert keys.refresh() is None and len(fetch.calls) == 1
    clock.now += 1
    keys.refresh()
    assert len(fetch.calls) == 2
    fetch.calls[1].fire({"keys": [rsa_jwk("k1")]})
    clock.now += 10  # loaded: min_interval applies again
    assert keys.refresh() is None and len(fetch.calls) == 2
