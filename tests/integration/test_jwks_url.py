"""JWT keys from a JWKS URL, end to end: a twisted.web server on loopback
serves the JWKS, the router is configured with its URL, and Autobahn clients
join with RS256 tokens.  What the router did is read from the outside: the
JWKS server counts the requests it was sent, the clients see WELCOME or ABORT.
"""

import json

import jwt as pyjwt
import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.internet import defer, endpoints, reactor, task
from twisted.web import resource, server

from ..refusals import assert_refused
from ..security_support import start, stop
from ..support import LeftBeforeJoining, connect_ws, eventually

KEYS = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in ("k1", "k2", "k3")}
UNKNOWN_KEY = "token signed with an unknown key"


def jwk(kid: str) -> dict:
    public = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(KEYS[kid].public_key()))
    return {**public, "kid": kid, "use": "sig", "alg": "RS256"}


def token(kid: str, sub: str = "device-7") -> str:
    return pyjwt.encode({"sub": sub, "exp": int(reactor.seconds()) + 600}, KEYS[kid], algorithm="RS256",
                        headers={"kid": kid})


class JwksResource(resource.Resource):
    """/jwks.json: the JWKS of ``kids``, or HTTP 500 while ``failing``; counts requests."""

    isLeaf = True

    def __init__(self, kids) -> None:
        super().__init__()
        self.kids = list(kids)
        self.failing = False
        self.requests = 0

    def render_GET(self, request):  # noqa: N802 - twisted.web's name
        self.requests += 1
        if self.failing:
            request.setResponseCode(500)
            request.setHeader(b"connection", b"close")
            return b"identity provider unwell"
        request.setHeader(b"content-type", b"application/json")
        # no kept-alive connection: a server taken down is down for the next fetch
        request.setHeader(b"connection", b"close")
        return json.dumps({"keys": [jwk(kid) for kid in self.kids]}).encode()


class JwksServer:
    def __init__(self, kids=("k1",)) -> None:
        self.jwks = JwksResource(kids)
        self.port = None
        self.number = None

    @defer.inlineCallbacks
    def up(self):
        root = resource.Resource()
        root.putChild(b"jwks.json", self.jwks)
        endpoint = endpoints.TCP4ServerEndpoint(reactor, self.number or 0, interface="127.0.0.1")
        self.port = yield endpoint.listen(server.Site(root))
        self.number = self.port.getHost().port

    def down(self):
        port, self.port = self.port, None
        return port.stopListening()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.number}/jwks.json"


@pytest.fixture
def jwks_server():
    jwks = JwksServer()
    pytest_twisted.blockon(jwks.up())
    yield jwks
    if jwks.port is not None:
        pytest_twisted.blockon(jwks.down())


@defer.inlineCallbacks
def router_for(jwks, tmp_path, refresh_interval):
    running = yield start({"realms": [{"name": "realm1", "auth": {"jwt": {
        "algorithms": ["RS256"], "authrole": "device", "refresh_interval": refresh_interval,
        "keys": [{"jwks_url": jwks.url}]}}}],
        # these tests are refused on purpose, more often than the failed-login limit allows
        "auth_limits": {"burst": 1000, "address_burst": 1000}}, tmp_path / "state")
    return running


def join(running, kid, **kw):
    return connect_ws(running, authmethods=["jwt"], ticket=token(kid, **kw))


@defer.inlineCallbacks
def refused(running, kid):
    with pytest.raises(LeftBeforeJoining) as info:
        yield join(running, kid)
    return assert_refused(info.value, "wamp.error.authentication_failed")


# With refresh_interval 1 ms every unknown kid may fetch again (a join takes longer).
ALWAYS = 0.001
# With an hour, nothing but the first fetch can happen during a test.
HOUR = 3600


@pytest_twisted.inlineCallbacks
def test_first_fetch_at_start_then_a_refetch_for_an_unknown_kid(jwks_server, tmp_path):
    running = yield router_for(jwks_server, tmp_path, ALWAYS)
    try:
        yield eventually(lambda: jwks_server.jwks.requests == 1)  # fetched at start, before any token
        client = yield join(running, "k1")
        assert (client.details.authid, client.details.authrole, client.details.authmethod) == \
            ("device-7", "device", "jwt")
        assert jwks_server.jwks.requests == 1  # a known kid needs no fetch
        jwks_server.jwks.kids = ["k1", "k2"]  # the identity provider rotates in a new key
        client = yield join(running, "k2", sub="device-8")
        assert client.details.authid == "device-8"
        assert jwks_server.jwks.requests == 2
        text = yield refused(running, "k3")  # still unknown after fetching again
        assert UNKNOWN_KEY in text
        assert jwks_server.jwks.requests == 3
    finally:
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_unknown_kids_do_not_fetch_more_often_than_refresh_interval(jwks_server, tmp_path):
    running = yield router_for(jwks_server, tmp_path, HOUR)
    try:
        yield eventually(lambda: jwks_server.jwks.requests == 1)
        jwks_server.jwks.kids = ["k1", "k2"]
        attempts = yield defer.gatherResults([refused(running, "k2") for _ in range(10)])
        assert all(UNKNOWN_KEY in text for text in attempts)
        assert jwks_server.jwks.requests == 1  # ten unknown kids, no fetch within the hour
        client = yield join(running, "k1")  # the keys fetched at start still work
        assert client.details.authid == "device-7"
    finally:
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_a_server_down_at_start_then_up(jwks_server, tmp_path):
    yield jwks_server.down()
    running = yield router_for(jwks_server, tmp_path, ALWAYS)  # starts, though the JWKS cannot be had
    try:
        assert UNKNOWN_KEY in (yield refused(running, "k1"))
        yield jwks_server.up()  # same port
        client = yield join(running, "k1")
        assert client.details.authid == "device-7"
        assert jwks_server.jwks.requests == 1
    finally:
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_a_failing_or_vanished_server_keeps_the_keys_already_fetched(jwks_server, tmp_path):
    running = yield router_for(jwks_server, tmp_path, ALWAYS)
    try:
        yield join(running, "k1")
        jwks_server.jwks.failing = True
        assert UNKNOWN_KEY in (yield refused(running, "k2"))  # refetch answered 500
        requests = jwks_server.jwks.requests
        yield jwks_server.down()
        assert UNKNOWN_KEY in (yield refused(running, "k2"))  # refetch refused a connection
        assert jwks_server.jwks.requests == requests
        client = yield join(running, "k1")  # known: no fetch, the key is kept
        assert client.details.authid == "device-7"
        jwks_server.jwks.failing = False
        jwks_server.jwks.kids = ["k1", "k2"]
        yield jwks_server.up()
        client = yield join(running, "k2", sub="device-9")
        assert client.details.authid == "device-9"
    finally:
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_ready_recovers_on_its_own_when_the_jwks_server_comes_back(jwks_server, tmp_path):
    """A load balancer waits on /ready: the router fetches keys it could not load on its
    own schedule, not only when a client happens to log in."""
    import treq

    yield jwks_server.down()
    running = yield router_for(jwks_server, tmp_path, ALWAYS)
    try:
        response = yield treq.get(running.http_url + "/ready")
        body = yield response.json()
        assert response.code == 503 and any("JWKS keys are not loaded yet" in p for p in body["problems"])
        yield jwks_server.up()  # same port; no client logs in from here on

        deadline = reactor.seconds() + 20
        while True:
            response = yield treq.get(running.http_url + "/ready")
            yield response.content()
            if response.code == 200:
                break
            assert reactor.seconds() < deadline, "/ready stayed 503 after the JWKS server came back"
            yield task.deferLater(reactor, 0.1, lambda: None)
        assert jwks_server.jwks.requests == 1
    finally:
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_a_configured_key_beside_the_jwks_checks_its_own_kid_only(jwks_server, tmp_path, monkeypatch):
    """The identity provider's tokens go to the JWKS (a new kid fetched), a
    local service's to the configured key with its kid: neither shadows the other."""
    secret = "local-service-secret-0123456789abcdef"
    monkeypatch.setenv("LOCAL_JWT_SECRET", secret)
    running = yield start({"realms": [{"name": "realm1", "auth": {"jwt": {
        "algorithms": ["RS256", "HS256"], "authrole": "device", "refresh_interval": ALWAYS,
        "keys": [{"kid": "local-1", "secret_env": "LOCAL_JWT_SECRET"}, {"jwks_url": jwks_server.url}]}}}],
        "auth_limits": {"burst": 1000, "address_burst": 1000}}, tmp_path / "state")
    try:
        yield eventually(lambda: jwks_server.jwks.requests == 1)
        jwks_server.jwks.kids = ["k1", "k2"]
        client = yield join(running, "k2", sub="from-the-idp")  # unknown locally: fetched, then accepted
        assert client.details.authid == "from-the-idp" and jwks_server.jwks.requests == 2
        local = pyjwt.encode({"sub": "local-svc", "exp": int(reactor.seconds()) + 600}, secret,
                             algorithm="HS256", headers={"kid": "local-1"})
        client = yield connect_ws(running, authmethods=["jwt"], ticket=local)
        assert client.details.authid == "local-svc"
        forged = pyjwt.encode({"sub": "x", "exp": int(reactor.seconds()) + 600}, secret,
                              algorithm="HS256", headers={"kid": "k1"})  # the local secret under the IdP's kid
        with pytest.raises(LeftBeforeJoining):
            yield connect_ws(running, authmethods=["jwt"], ticket=forged)
    finally:
        yield stop(running)
