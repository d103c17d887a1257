"""JWT keys and claims where a broken line went unnoticed: a key given as a
certificate, a key's kid and algorithms kept, the JWKS keys that are not for
signing skipped without hiding the others, a role claim that is not a name,
what an accepted session carries (provider, expiry), time claims that are not
numbers, a token valid from its nbf on, which key a token without a known
kid is checked with; a key refusing an algorithm of another family, a short
HMAC key from a JWKS meeting the same length rule as a configured secret, the
provider an authenticator names by default, and a JWKS URL's keys: how often
they are fetched again by default and the error kept when a fetch gives no
usable JWKS."""

import datetime

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from relayrouter.auth._pending import Pending
from relayrouter.auth.jwt import FetchedKeys, JwtAuthenticator, JwtKey, JwtPolicy, StaticKeys, keys_from_jwks
from relayrouter.core.auth import Accept, Deny

from tests.auth.test_jwt_edges import LONG_SECRET, NOW, RSA_KEY, _b64, _token


def _certificate_pem() -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.example")])
    start = datetime.datetime(2023, 1, 1, tzinfo=datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(RSA_KEY.public_key()).serial_number(7)
                   .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=3650))
                   .sign(RSA_KEY, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _rsa_jwk(**fields) -> dict:
    return {**pyjwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True), **fields}


def _authenticator(clock, key, **policy) -> JwtAuthenticator:
    policy = {"algorithms": ("RS256", "HS256"), "authrole": "user", **policy}
    return JwtAuthenticator(StaticKeys([key]), JwtPolicy(**policy), clock=clock, authprovider="idp")


def test_a_certificates_public_key_verifies_and_keeps_its_kid_and_algorithms(clock):
    key = JwtKey.from_pem(_certificate_pem(), kid="issuer-1", algorithms=["RS256"])
    assert (key.family, key.kid, key.algorithms) == ("RSA", "issuer-1", ("RS256",))
    token = pyjwt.encode({"sub": "alice", "exp": NOW + 300}, RSA_KEY, algorithm="RS256",
                         headers={"kid": "issuer-1"})
    assert isinstance(_authenticator(clock, key).check(token), Accept)


def test_a_public_key_in_pem_text_keeps_its_kid():
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    key = JwtKey.from_pem(pem, kid="k2")
    assert (key.family, key.kid) == ("RSA", "k2")
    assert key.algorithms == ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")


def test_an_hmac_jwk_keeps_its_kid():
    key = JwtKey.from_jwk({"kty": "oct", "k": _b64(LONG_SECRET), "kid": "shared-1", "alg": "HS256"})
    assert (key.family, key.kid, key.algorithms) == ("oct", "shared-1", ("HS256",))


def test_an_unusable_jwk_is_refused_naming_its_kid():
    with pytest.raises(ValueError, match=r"^unusable JWK with kid 'odd-1': "):
        JwtKey.from_jwk({"kty": "XYZ", "kid": "odd-1"})


def test_a_jwks_skips_keys_not_for_signing_and_keys_it_cannot_use_but_keeps_the_rest():
    jwks = {"keys": ["not a key", _rsa_jwk(use="enc", kid="enc-1"), {"kty": "XYZ", "kid": "odd-1"},
                     _rsa_jwk(use="sig", kid="sig-1"), _rsa_jwk(kid="plain-1")]}
    assert [key.kid for key in keys_from_jwks(jwks)] == ["sig-1", "plain-1"]


@pytest.mark.parametrize("document", [[], {"keys": {}}, {"key": []}, "keys"])
def test_a_document_that_is_not_a_jwks_is_refused(document):
    with pytest.raises(ValueError) as refused:
        keys_from_jwks(document)
    assert str(refused.value) == "a JWKS must be a JSON object with a 'keys' list"


@pytest.mark.parametrize("role, expected", [("admin", "admin"), ("", "user"), (5, "user"), (["admin"], "user")])
def test_a_role_claim_that_is_not_a_name_falls_back_to_the_fixed_role(clock, role, expected):
    key = JwtKey.hmac(LONG_SECRET)
    decision = _authenticator(clock, key, authrole_claim="role").check(_token(role=role))
    assert isinstance(decision, Accept) and decision.authrole == expected


def test_without_a_fixed_role_a_token_without_the_role_claim_is_denied_naming_it(clock):
    key = JwtKey.hmac(LONG_SECRET)
    decision = _authenticator(clock, key, authrole=None, authrole_claim="role").check(_token(role=5))
    assert isinstance(decision, Deny) and decision.message == "token has no 'role' claim to take the role from"


def test_an_accepted_session_carries_the_provider_and_the_tokens_expiry(clock):
    key = JwtKey.hmac(LONG_SECRET)
    decision = _authenticator(clock, key).check(_token())
    assert (decision.authprovider, decision.expires_at) == ("idp", float(NOW + 300))
    decision = _authenticator(clock, key, require_exp=False).check(_token(exp=None))
    assert isinstance(decision, Accept) and decision.expires_at is None


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_time_claim_that_is_not_a_number_is_denied_naming_it(clock, claim):
    decision = _authenticator(clock, JwtKey.hmac(LONG_SECRET)).check(_token(**{claim: "tomorrow"}))
    assert isinstance(decision, Deny) and decision.message == f"malformed token: '{claim}' is not a number"


def test_a_token_is_valid_from_its_nbf_on(clock):
    """RFC 7519 4.1.5: not accepted *before* nbf; at nbf it is."""
    authenticator = _authenticator(clock, JwtKey.hmac(LONG_SECRET))
    assert isinstance(authenticator.check(_token(nbf=int(clock.seconds()))), Accept)
    decision = authenticator.check(_token(nbf=int(clock.seconds()) + 1))
    assert isinstance(decision, Deny) and decision.message == "token not yet valid"


def test_a_token_without_kid_uses_the_only_key_even_if_that_key_has_a_kid(clock):
    decision = _authenticator(clock, JwtKey.hmac(LONG_SECRET, kid="k1")).check(_token())
    assert isinstance(decision, Accept)


def test_a_token_whose_kid_is_unknown_uses_the_one_key_without_a_kid(clock):
    keys = StaticKeys([JwtKey.hmac(bytes(64), kid="k1"), JwtKey.hmac(LONG_SECRET)])
    authenticator = JwtAuthenticator(keys, JwtPolicy(algorithms=("HS256",), authrole="user"), clock=clock)
    token = pyjwt.encode({"sub": "alice", "exp": NOW + 300}, LONG_SECRET, algorithm="HS256", headers={"kid": "k9"})
    assert isinstance(authenticator.check(token), Accept)


@pytest.mark.parametrize("named, admitted", [
    ("acme", True), (["globex", "acme"], True), ("globex", False), (["globex"], False),
    (None, False), (7, False), ({"acme": True}, False), ("", False),
])
def test_a_realm_claim_admits_a_token_only_into_a_realm_it_names(clock, named, admitted):
    from dataclasses import replace

    from .test_jwt import POLICY, check, token

    policy = replace(POLICY, realm_claim="service", realm="acme")
    decision = check(clock, token(service=named), policy=policy)
    if admitted:
        assert isinstance(decision, Accept), decision
    else:
        assert decision == Deny("token is not for realm 'acme' (its 'service' claim does not name it)")


def test_without_a_realm_or_a_realm_claim_the_claim_is_not_asked_for(clock):
    from dataclasses import replace

    from .test_jwt import POLICY, check, token

    for policy in (replace(POLICY, realm_claim="service"), replace(POLICY, realm="acme")):
        assert isinstance(check(clock, token(service="globex"), policy=policy), Accept)


def test_a_keys_repr_hides_an_hmac_secret_and_names_a_public_keys_type():
    secret = "s" * 64
    shown = repr(JwtKey.hmac(secret, kid="k1"))
    assert secret not in shown and shown.startswith("JwtKey(<hidden>, family='oct', kid='k1'")
    public = repr(JwtKey(RSA_KEY.public_key(), "RSA", "r1"))
    assert public.startswith("JwtKey(RSAPublicKey, family='RSA', kid='r1'"), public


def test_a_policy_that_cannot_work_is_refused_saying_what_to_give():
    from relayrouter.auth.jwt import ALL_ALGORITHMS

    cases = [
        (dict(algorithms=(), authrole="user"), "no JWT algorithm accepted: list at least one, e.g. ['RS256']"),
        (dict(algorithms=("HS1",), authrole="user"),
         f"JWT algorithm 'HS1' is not supported (have {', '.join(sorted(ALL_ALGORITHMS))}; 'none' never)"),
        (dict(algorithms=("HS256",)), "give a fixed authrole or an authrole_claim"),
        (dict(algorithms=("HS256",), authrole="user", leeway=-1), "leeway must not be negative, not -1"),
    ]
    for fields, message in cases:
        with pytest.raises(ValueError) as refused:
            JwtPolicy(**fields)
        assert str(refused.value) == message


def test_a_public_key_of_another_kind_is_refused_naming_its_kid_and_type():
    from cryptography.hazmat.primitives.asymmetric import dsa

    public = dsa.generate_private_key(key_size=2048).public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError) as refused:
        JwtKey.from_pem(pem, kid="k9")
    assert str(refused.value) == "the key for kid 'k9' is a DSAPublicKey; use RSA, EC or Ed25519"


@pytest.mark.parametrize("make, message", [
    (lambda: JwtKey(RSA_KEY.public_key(), "RSA", "r1", ("RS256", "HS256")),
     "algorithm HS256 cannot be used with a key of type RSA"),
    (lambda: JwtKey.from_pem(_certificate_pem(), kid="r2", algorithms=["ES256"]),
     "algorithm ES256 cannot be used with a key of type RSA"),
    (lambda: JwtKey(LONG_SECRET, "oct", "s1", ("RS256",)), "algorithm RS256 cannot be used with a key of type oct"),
])
def test_a_key_refuses_an_algorithm_of_another_family(make, message):
    """Else an RSA public key could be offered to HS256 as an HMAC secret (the key-confusion attack)."""
    with pytest.raises(ValueError) as refused:
        make()
    assert str(refused.value) == message


@pytest.mark.parametrize("secret, alg, message", [
    (bytes(16), None, "the HMAC secret for kid 'short-1' is 16 bytes; HS256 needs at least 32"),
    (bytes(32), "HS512", "the HMAC secret for kid 'short-1' is 32 bytes; HS512 needs at least 64"),
    (b"-----BEGIN PUBLIC KEY-----" + bytes(40), None,
     "the HMAC secret for kid 'short-1' looks like a PEM key; configure it as a public key"),
])
def test_an_oct_jwk_meets_the_same_rules_as_a_configured_hmac_secret(secret, alg, message):
    """RFC 7518 3.2: an HMAC key at least as long as the hash; a JWKS is no way around it."""
    jwk = {"kty": "oct", "k": _b64(secret), "kid": "short-1", **({"alg": alg} if alg else {})}
    with pytest.raises(ValueError) as refused:
        JwtKey.from_jwk(jwk)
    assert str(refused.value) == message
    assert keys_from_jwks({"keys": [jwk, _rsa_jwk(kid="r1")]}) == (JwtKey.from_jwk(_rsa_jwk(kid="r1")),)
    # The length that suffices is taken, and only the algorithms it suffices for.
    key = JwtKey.from_jwk({"kty": "oct", "k": _b64(bytes(48)), "kid": "ok-1"})
    assert (key.family, key.algorithms) == ("oct", ("HS256", "HS384"))


def test_an_authenticator_names_its_provider_jwt_by_default(clock):
    policy = JwtPolicy(algorithms=("HS256",), authrole="user")
    decision = JwtAuthenticator(StaticKeys([JwtKey.hmac(LONG_SECRET)]), policy, clock=clock).check(_token())
    assert isinstance(decision, Accept) and (decision.authmethod, decision.authprovider) == ("jwt", "jwt")
    ticket = JwtAuthenticator(StaticKeys([JwtKey.hmac(LONG_SECRET)]), policy, authmethod="ticket", clock=clock)
    assert ticket.check(_token()).authprovider == "jwt"


class _Fetch:
    """A JWKS fetch answered by the test: each call a Pending, fired with what the URL gave."""

    def __init__(self):
        self.calls: list[Pending] = []

    def __call__(self):
        self.calls.append(Pending())
        return self.calls[-1]


def test_a_jwks_url_is_fetched_again_at_most_once_a_minute_by_default(clock):
    fetch = _Fetch()
    keys = FetchedKeys(fetch, clock=clock, keys=[JwtKey.from_jwk(_rsa_jwk(kid="r1"))])
    keys.refresh()
    fetch.calls[0].fire({"keys": [_rsa_jwk(kid="r1")]})
    clock.now += 59.5
    assert keys.refresh() is None and len(fetch.calls) == 1
    clock.now += 0.5
    assert keys.refresh() is not None and len(fetch.calls) == 2


@pytest.mark.parametrize("document", [{"key": []}, {"keys": "r1"}, [], "keys"])
def test_a_fetch_that_gives_no_jwks_keeps_the_keys_and_says_why(clock, document):
    fetch = _Fetch()
    kept = JwtKey.from_jwk(_rsa_jwk(kid="r1"))
    keys = FetchedKeys(fetch, clock=clock, keys=[kept])
    keys.refresh()
    fetch.calls[0].fire(document)
    assert keys.keys == (kept,) and keys.refresh_failures == 1
    assert keys.last_error == "a JWKS must be a JSON object with a 'keys' list"


def test_a_fetch_that_cannot_start_is_counted_with_its_own_error(clock):
    def fetch():
        raise RuntimeError("no route to the identity provider")

    keys = FetchedKeys(fetch, clock=clock)
    waiter = keys.refresh()
    fired = []
    waiter.addBoth(fired.append)
    assert fired == [None] and keys.refresh_failures == 1
    assert keys.last_error == "no route to the identity provider"
