"""Every authmethod end to end, Autobahn-Python against the real router,
and each refusal the issue lists as its own test."""

import base64
import hashlib
import hmac
import json
import os

import pytest
import pytest_twisted
from autobahn.wamp.cryptosign import CryptosignKey

from ..security_support import HS_SECRET, ISSUER, rsa_pair, start, stop, token
from ..support import LeftBeforeJoining, connect_rawsocket, connect_ws

ALICE_TICKET = "alice-static-ticket-value"
CRA_SECRET = "bob-wampcra-secret"
SALTED_SECRET = "carol-salted-secret"
DEVICE_KEY = CryptosignKey.from_bytes(os.urandom(32))
OTHER_KEY = CryptosignKey.from_bytes(os.urandom(32))
RSA_PRIVATE, RSA_PUBLIC = rsa_pair()


@pytest.fixture
def realms(monkeypatch, tmp_path):
    monkeypatch.setenv("ALICE_TICKET", ALICE_TICKET)
    monkeypatch.setenv("JWT_SECRET", HS_SECRET)
    (tmp_path / "bob.secret").write_text(CRA_SECRET + "\n")
    monkeypatch.setenv("CAROL_SECRET", SALTED_SECRET)
    (tmp_path / "rsa.pem").write_bytes(RSA_PUBLIC)
    return [
        {"name": "realm1", "auth": {
            "ticket": {"principals": [{"authid": "alice", "role": "user", "secret_env": "ALICE_TICKET"}]},
            "wampcra": {"principals": [
                {"authid": "bob", "role": "user", "secret_file": str(tmp_path / "bob.secret")},
                {"authid": "carol", "role": "user", "secret_env": "CAROL_SECRET", "salt": "pepper",
                 "iterations": 100, "keylen": 32}]},
            "cryptosign": {"principals": [{"authid": "device-1", "role": "device",
                                            "pubkeys": [DEVICE_KEY.public_key()]}]},
            "jwt": {"algorithms": ["HS256"], "audience": "relayrouter", "issuer": ISSUER, "as_ticket": True,
                    "authrole": "device", "keys": [{"secret_env": "JWT_SECRET"}]},
        }},
        {"name": "rsa", "auth": {"jwt": {
            "algorithms": ["RS256"], "authrole": "device", "as_ticket": True,
            "keys": [{"kid": "k1", "public_key_file": str(tmp_path / "rsa.pem")}]}}},
        {"name": "open"},
    ]


@pytest.fixture
def router(realms, tmp_path):
    running = pytest_twisted.blockon(start({"realms": realms}, tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


@pytest_twisted.inlineCallbacks
def refused(router, reason="wamp.error.authentication_failed", connect=connect_ws, **kw):
    with pytest.raises(LeftBeforeJoining) as info:
        yield connect(router, **kw)
    assert info.value.reason == reason, info.value.message
    return info.value.message


# ------------------------------------------------------------- accepted

@pytest.mark.parametrize("connect", [connect_ws, connect_rawsocket])
@pytest_twisted.inlineCallbacks
def test_static_ticket(router, connect):
    client = yield connect(router, authmethods=["ticket"], authid="alice", ticket=ALICE_TICKET)
    assert (client.details.authid, client.details.authrole, client.details.authmethod) == ("alice", "user", "ticket")


@pytest.mark.parametrize("authid, secret", [("bob", CRA_SECRET), ("carol", SALTED_SECRET)])
@pytest_twisted.inlineCallbacks
def test_wampcra_plain_and_salted(router, authid, secret):
    client = yield connect_ws(router, authmethods=["wampcra"], authid=authid, secret=secret)
    assert (client.details.authid, client.details.authmethod) == (authid, "wampcra")


@pytest_twisted.inlineCallbacks
def test_cryptosign_with_autobahns_key(router):
    client = yield connect_rawsocket(router, authmethods=["cryptosign"], key=DEVICE_KEY)
    assert (client.details.authid, client.details.authrole) == ("device-1", "device")


@pytest_twisted.inlineCallbacks
def test_jwt_as_ticket(router):
    client = yield connect_ws(router, authmethods=["ticket"], ticket=token())
    assert (client.details.authid, client.details.authrole, client.details.authmethod) == \
        ("device-7", "device", "ticket")


@pytest_twisted.inlineCallbacks
def test_jwt_method_with_token_in_authextra(router):
    client = yield connect_ws(router, authmethods=["jwt"], authextra={"token": token()})
    assert client.details.authmethod == "jwt"


@pytest_twisted.inlineCallbacks
def test_rs256_token(router):
    client = yield connect_ws(router, realm="rsa", authmethods=["ticket"],
                              ticket=token(RSA_PRIVATE, "RS256", headers={"kid": "k1"}))
    assert client.details.authid == "device-7"


@pytest_twisted.inlineCallbacks
def test_client_order_of_authmethods_decides(router):
    client = yield connect_ws(router, authmethods=["anonymous", "wampcra", "ticket"], authid="bob",
                              secret=CRA_SECRET)
    assert client.details.authmethod == "wampcra"


# ------------------------------------------------------------- refused

@pytest_twisted.inlineCallbacks
def test_anonymous_is_off_when_a_realm_has_auth(router):
    message = yield refused(router)
    assert "anonymous" in message
    open_client = yield connect_ws(router, realm="open")
    assert open_client.details.authmethod == "anonymous"


@pytest_twisted.inlineCallbacks
def test_no_such_realm(router):
    message = yield refused(router, "wamp.error.no_such_realm", realm="nowhere")
    assert message == "no realm named 'nowhere' on this router"


@pytest_twisted.inlineCallbacks
def test_wrong_static_ticket(router):
    message = yield refused(router, authmethods=["ticket"], authid="alice", ticket="guess")
    assert ALICE_TICKET not in message and message == "wrong authid or ticket"


@pytest_twisted.inlineCallbacks
def test_wrong_wampcra_secret(router):
    message = yield refused(router, authmethods=["wampcra"], authid="bob", secret="not-it")
    assert message == "wrong authid or WAMP-CRA signature"


@pytest_twisted.inlineCallbacks
def test_wrong_cryptosign_key(router):
    message = yield refused(router, authmethods=["cryptosign"], key=OTHER_KEY)
    assert "not registered" in message


@pytest.mark.parametrize("case, make, fragment", [
    ("expired", lambda: token(lifetime=-60), "expired"),
    ("not yet valid", lambda: token(nbf=2_000_000_000, exp=2_000_000_600), "not yet valid"),
    ("wrong audience", lambda: token(aud="someone-else"), "audience"),
    ("wrong issuer", lambda: token(iss="mallory"), "issuer"),
    ("tampered signature", lambda: token()[:-4] + ("AAAA" if not token().endswith("AAAA") else "BBBB"),
     "signature"),
    ("alg none", lambda: token(secret=None, alg="none"), "not accepted"),
])
@pytest_twisted.inlineCallbacks
def test_bad_tokens(router, case, make, fragment):
    message = yield refused(router, authmethods=["ticket"], ticket=make())
    assert fragment in message, (case, message)


@pytest_twisted.inlineCallbacks
def test_hmac_token_where_rsa_is_configured(router):
    # The classic confusion: the RSA public key used as an HMAC secret.
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = b64(json.dumps({"sub": "device-7", "exp": 2_000_000_000}).encode())
    signature = hmac.new(RSA_PUBLIC, f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}.{b64(signature)}"
    message = yield refused(router, realm="rsa", authmethods=["ticket"], ticket=forged)
    assert "not accepted" in message


@pytest_twisted.inlineCallbacks
def test_unknown_key_id(router):
    message = yield refused(router, realm="rsa", authmethods=["ticket"],
                            ticket=token(RSA_PRIVATE, "RS256", headers={"kid": "k2"}))
    assert "unknown key" in message


@pytest_twisted.inlineCallbacks
def test_failed_attempts_are_rate_limited_per_address(realms, tmp_path):
    running = yield start({"realms": realms, "auth_limits": {"burst": 2, "per_minute": 1}}, tmp_path / "s")
    try:
        for _ in range(2):
            yield refused(running, authmethods=["ticket"], authid="alice", ticket="guess")
        message = yield refused(running, authmethods=["ticket"], authid="alice", ticket=ALICE_TICKET)
        assert "too many failed authentication attempts" in message
    finally:
        yield stop(running)
