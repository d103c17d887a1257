import json

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from treq.testing import StubTreq
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.web.pages import errorPage
from twisted.web.resource import Resource

from relayrouter.auth.jwks import jwks_fetcher, read_jwks_file
from relayrouter.auth.jwt import FetchedKeys, JwtAuthenticator, JwtKey, JwtPolicy, StaticKeys, keys_from_jwks
from relayrouter.core.auth import Accept, Deny

NOW = 1_700_000_000
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
POLICY = JwtPolicy(algorithms=("RS256", "HS256"), authrole="user")


def jwks(kid="k1") -> dict:
    public = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    oct_key = json.loads(pyjwt.algorithms.HMACAlgorithm.to_jwk(b"s" * 64))
    return {"keys": [{**public, "kid": kid, "use": "sig"},
                     {**oct_key, "kid": "shared"},
                     {**public, "kid": "enc", "use": "enc"},
                     {"kty": "weird", "kid": "skip-me"}]}


def token(kid="k1") -> str:
    return pyjwt.encode({"sub": "bob", "exp": NOW + 60}, RSA_KEY, algorithm="RS256", headers={"kid": kid})


class JsonBody(Resource):
    isLeaf = True

    def __init__(self, body: bytes):
        super().__init__()
        self.body = body

    def render_GET(self, request):  # noqa: N802 - twisted.web's name
        request.setHeader(b"content-type", b"application/json")
        return self.body


def site(body: bytes, code: int = 200) -> Resource:
    root = Resource()
    root.putChild(b"jwks.json", JsonBody(body) if code == 200 else errorPage(code, "nope", "nope"))
    return root


def test_keys_from_jwks_skips_what_it_cannot_use():
    keys = keys_from_jwks(jwks())
    assert [(k.kid, k.family) for k in keys] == [("k1", "RSA"), ("shared", "oct")]


def test_jwks_must_be_an_object_with_keys():
    with pytest.raises(ValueError, match="'keys'"):
        keys_from_jwks({"nokeys": []})


def test_jwks_file(tmp_path):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks()))
    keys = StaticKeys(read_jwks_file(path))
    assert isinstance(JwtAuthenticator(keys, POLICY, clock=lambda: NOW).check(token()), Accept)


def test_unreadable_jwks_file_names_the_path(tmp_path):
    with pytest.raises(ValueError, match="missing.json"):
        read_jwks_file(tmp_path / "missing.json")


def test_fetcher_loads_keys_over_http_without_blocking():
    http = StubTreq(site(json.dumps(jwks()).encode()))
    keys = FetchedKeys(jwks_fetcher("https://idp.example/jwks.json", http=http), clock=lambda: NOW)
    decisions = []
    JwtAuthenticator(keys, POLICY, clock=lambda: NOW).check(token()).addBoth(decisions.append)
    http.flush()
    assert isinstance(decisions[0], Accept) and keys.key_for("k1") is not None


def test_fetcher_http_error_is_counted_and_denies():
    http = StubTreq(site(b"", code=500))
    keys = FetchedKeys(jwks_fetcher("https://idp.example/jwks.json", http=http), clock=lambda: NOW)
    decisions = []
    JwtAuthenticator(keys, POLICY, clock=lambda: NOW).check(token()).addBoth(decisions.append)
    http.flush()
    assert decisions == [Deny("token signed with an unknown key")]
    assert keys.refresh_failures == 1 and "HTTP 500" in keys.last_error


def test_fetcher_refuses_other_schemes():
    with pytest.raises(ValueError, match="file:///etc/jwks"):
        jwks_fetcher("file:///etc/jwks")


def test_oct_jwk_becomes_an_hmac_key():
    key = JwtKey.from_jwk(jwks()["keys"][1])
    assert key.family == "oct" and key.algorithms == ("HS256", "HS384", "HS512")


class Negotiating(Resource):
    """A JWKS endpoint that serves JSON only to a client asking for it (406 otherwise)."""

    isLeaf = True

    def render_GET(self, request):  # noqa: N802 - twisted.web's name
        if request.getHeader(b"accept") != b"application/json":
            request.setResponseCode(406)
            return b""
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(jwks()).encode()


class Timed:
    """treq's get as the fetcher calls it, with the timeout each request was given."""

    def __init__(self, http) -> None:
        self.http, self.timeouts = http, []

    def get(self, url, timeout=None, **kwargs):
        self.timeouts.append(timeout)
        return self.http.get(url, timeout=timeout, **kwargs)

    def json_content(self, response):
        return self.http.json_content(response)


@pytest.mark.parametrize("url", ["https://idp.example/jwks.json", "http://idp.internal/jwks.json"])
def test_the_fetcher_asks_for_json_within_its_timeout(url):
    root = Resource()
    root.putChild(b"jwks.json", Negotiating())
    http = Timed(StubTreq(root))
    keys = FetchedKeys(jwks_fetcher(url, http=http), clock=lambda: NOW)
    JwtAuthenticator(keys, POLICY, clock=lambda: NOW).check(token())
    http.http.flush()
    assert keys.key_for("k1") is not None and keys.refresh_failures == 0
    jwks_fetcher(url, http=http, timeout=2.5)()
    assert http.timeouts == [10.0, 2.5]


def test_a_failed_fetch_is_logged_naming_the_url_and_the_error():
    http = StubTreq(site(b"", code=404))
    with capturedLogs() as events:
        failures = []
        jwks_fetcher("https://idp.example/jwks.json", http=http)().addErrback(failures.append)
        http.flush()
    [failure] = failures
    assert str(failure.value) == "JWKS URL https://idp.example/jwks.json answered HTTP 404"
    [warning] = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]
    assert warning == ("could not fetch the JWKS from https://idp.example/jwks.json: "
                       "JWKS URL https://idp.example/jwks.json answered HTTP 404")


def test_a_jwks_file_without_a_usable_signing_key_is_refused_naming_it(tmp_path):
    path = tmp_path / "enc-only.json"
    path.write_text(json.dumps({"keys": [jwks()["keys"][2]]}))
    with pytest.raises(ValueError) as refused:
        read_jwks_file(path)
    assert str(refused.value) == f"JWKS file '{path}' holds no usable signing key"


def test_every_failed_refresh_is_counted_and_the_last_error_kept():
    now = [NOW]
    http = StubTreq(site(b"", code=503))
    keys = FetchedKeys(jwks_fetcher("https://idp.example/jwks.json", http=http), clock=lambda: now[0],
                       min_interval=1)
    assert keys.last_error is None
    for _ in range(2):
        keys.refresh()
        http.flush()
        now[0] += 61
    assert keys.refresh_failures == 2
    assert keys.last_error == "JWKS URL https://idp.example/jwks.json answered HTTP 503"
