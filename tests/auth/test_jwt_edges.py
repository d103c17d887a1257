"""JWT checks whose breakage would quietly accept more than a realm says.

Each case pins one of the conditions of the check: the realm's own algorithm
list (not only the key's), the key's declared algorithm from a JWK, and an
authid that must be a non-empty string.
"""

import base64

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from relayrouter.auth.jwt import JwtAuthenticator, JwtKey, JwtPolicy, NOT_ACCEPTED, StaticKeys
from relayrouter.core.auth import Accept, Deny

NOW = 1_700_000_000
LONG_SECRET = bytes(range(64))  # long enough for every HMAC algorithm
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _token(key=LONG_SECRET, alg="HS256", **claims):
    body = {"sub": "alice", "exp": NOW + 300, **claims}
    return pyjwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg)


def _check(clock, token, keys, algorithms):
    policy = JwtPolicy(algorithms=algorithms, authrole="user")
    return JwtAuthenticator(StaticKeys(keys), policy, clock=clock).check(token)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_the_realms_algorithm_list_holds_when_the_key_would_take_more(clock, alg):
    key = JwtKey.hmac(LONG_SECRET)  # the key itself is good for HS256, HS384 and HS512
    decision = _check(clock, _token(alg=alg), [key], ("HS256",))
    assert isinstance(decision, Deny)
    assert NOT_ACCEPTED in decision.message and "HS256" in decision.message
    assert isinstance(_check(clock, _token(alg="HS256"), [key], ("HS256",)), Accept)


def test_an_hmac_jwks_key_takes_only_its_declared_alg(clock):
    jwk = {"kty": "oct", "k": _b64(LONG_SECRET), "alg": "HS256"}
    keys = [JwtKey.from_jwk(jwk)]
    realm = ("HS256", "HS384", "HS512")
    assert isinstance(_check(clock, _token(alg="HS256"), keys, realm), Accept)
    for alg in ("HS384", "HS512"):
        decision = _check(clock, _token(alg=alg), keys, realm)
        assert isinstance(decision, Deny) and f"{NOT_ACCEPTED} for this key" in decision.message


def test_an_rsa_jwks_key_takes_only_its_declared_alg(clock):
    jwk = pyjwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True)
    keys = [JwtKey.from_jwk({**jwk, "alg": "RS256"})]
    realm = ("RS256", "PS256")
    assert isinstance(_check(clock, _token(RSA_KEY, "RS256"), keys, realm), Accept)
    decision = _check(clock, _token(RSA_KEY, "PS256"), keys, realm)
    assert isinstance(decision, Deny) and f"{NOT_ACCEPTED} for this key" in decision.message


def test_a_jwks_key_without_alg_takes_its_whole_family(clock):
    jwk = pyjwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True)
    keys = [JwtKey.from_jwk({k: v for k, v in jwk.items() if k != "alg"})]
    for alg in ("RS256", "PS256"):
        assert isinstance(_check(clock, _token(RSA_KEY, alg), keys, ("RS256", "PS256")), Accept)


@pytest.mark.parametrize("sub", ["", 42, ["alice"], {"id": "alice"}, True])
def test_an_authid_claim_that_is_not_a_nonempty_string_is_refused(clock, sub):
    decision = _check(clock, _token(sub=sub), [JwtKey.hmac(LONG_SECRET)], ("HS256",))
    assert isinstance(decision, Deny)
    assert "'sub' claim" in decision.message


def test_a_token_without_sub_is_refused_naming_the_claim(clock):
    decision = _check(clock, _token(sub=None), [JwtKey.hmac(LONG_SECRET)], ("HS256",))
    assert isinstance(decision, Deny) and "'sub' claim" in decision.message
