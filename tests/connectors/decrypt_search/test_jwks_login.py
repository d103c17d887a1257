"""The HTTP API's bearer tokens checked against the identity provider's JWKS URL, with the
real router and connector processes and a JWKS server on loopback."""

import json
import time

import jwt as pyjwt
import pytest
import pytest_twisted
import treq
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import defer, endpoints, reactor, task
from twisted.web.resource import Resource
from twisted.web.server import Site

from connectors.decrypt_search import config as cfg

from .support import config_dict, org_keys, token
from .test_end_to_end import connectors, router, world  # noqa: F401 (fixtures)

KEYS = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("k1", "k2", "forged")}


class Jwks(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.kids = ["k1"]
        self.fetches = 0

    def render_GET(self, request):  # noqa: N802 - twisted.web's name
        self.fetches += 1
        keys = [{**json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(KEYS[kid].public_key())), "kid": kid,
                 "use": "sig", "alg": "RS256"} for kid in self.kids]
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"keys": keys}).encode()


def idp_token(kid: str, signer: str | None = None, scopes=("search",)) -> str:
    now = int(time.time())
    claims = {"sub": "analyst", "aud": "decrypt-search", "iat": now, "exp": now + 300, "scope": " ".join(scopes)}
    return pyjwt.encode(claims, KEYS[signer or kid], algorithm="RS256", headers={"kid": kid})


@defer.inlineCallbacks
def status_of(connector, bearer: str):
    response = yield treq.get(connector.url + "/search", headers={"Authorization": f"Bearer {bearer}"})
    body = yield response.json()
    return response.code, body


@pytest_twisted.inlineCallbacks
def test_tokens_of_the_identity_provider_are_checked_with_its_jwks(world, router, connectors):  # noqa: F811
    jwks = Jwks()
    root = Resource()
    root.putChild(b"jwks.json", jwks)
    port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(root))
    try:
        url = f"http://127.0.0.1:{port.getHost().port}/jwks.json"
        acme = connectors("acme", http_auth=f"""algorithms = ["HS256", "RS256"]
audience = "decrypt-search"
refresh_interval = 0.5
[[http.auth.keys]]
kid = "local"
secret_file = "{world.jwt_secret_file}"
[[http.auth.keys]]
jwks_url = "{url}"
""")
        first = yield status_of(acme, idp_token("k1"))
        assert first[0] == 200, (first, acme.output()[-3000:])
        assert (yield status_of(acme, token()))[0] == 200  # the configured HMAC secret still works
        code, body = yield status_of(acme, idp_token("k1", signer="forged"))
        assert code == 401 and body["message"].startswith("bearer token refused")
        code, _ = yield status_of(acme, idp_token("k2"))
        assert code == 401  # not (yet) in the identity provider's JWKS
        code, body = yield status_of(acme, idp_token("k1", scopes=("status",)))
        assert (code, body["message"]) == (403, "the token lacks the scope 'search'")

        jwks.kids = ["k1", "k2"]  # the identity provider rotates its keys
        deadline = time.monotonic() + 15
        while (yield status_of(acme, idp_token("k2")))[0] != 200:
            assert time.monotonic() < deadline, "the new key of the JWKS was never fetched"
            yield task.deferLater(reactor, 0.2, lambda: None)

        before = jwks.fetches
        results = yield defer.gatherResults([status_of(acme, idp_token("k9", signer="forged")) for _ in range(30)])
        assert {code for code, _ in results} == {401}
        assert jwks.fetches - before <= 2  # unknown kids do not turn into a fetch each
    finally:
        yield port.stopListening()


def test_a_key_without_kid_beside_a_jwks_url_is_refused():
    """It would be tried for every token whose kid it does not know, the identity provider's included."""
    data = config_dict("acme", org_keys(), http={"auth": {"algorithms": ["RS256"], "keys": [
        {"public_key_file": __file__}, {"jwks_url": "https://idp.example.com/jwks.json"}]}})
    with pytest.raises(cfg.ConfigError, match=r"http.auth.keys\[0\]: give it a kid"):
        cfg.parse(data, cfg.Path("."))


@pytest.mark.parametrize("url, message", [
    ("http://idp.example.com/jwks.json", "http.auth.keys[0].jwks_url: 'http://idp.example.com/jwks.json' must be "
                                         "https://"),
    ("ftp://127.0.0.1/jwks.json", "must be https://"),
])
def test_a_jwks_url_fetched_in_the_clear_from_elsewhere_is_refused(url, message):
    keys = org_keys()
    data = config_dict("acme", keys, http={"auth": {"algorithms": ["RS256"], "keys": [{"jwks_url": url}]}})
    with pytest.raises(cfg.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cfg.parse(data, cfg.Path("."))
