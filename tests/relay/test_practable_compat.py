"""practable relay compatibility, written from practable's source (facts only):
one case per route, parameter and error, each naming the practable file it
comes from, run against the real router with the README's relay configuration.

Sources (practable/relay): ``api/access.yml`` (routes, parameters, bodies),
``internal/access/access.go`` (handlers), ``internal/access/restapi/operations/
*_parameters.go`` (parameter binding), ``internal/permission/models.go``
(token claims), ``internal/crossbar/crossbar.go`` (the WebSocket relay),
``internal/ttlcode/ttlcode.go`` (codes), ``internal/deny/deny.go`` (allow and
deny lists).  Where relayrouter answers differently on purpose the case says
so and the README's "Differences from practable" table gives the reason.
"""

import time

import jwt as pyjwt
import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import defer, endpoints, reactor

from ..support import eventually
from .readme import relay_config as documented_config
from .support import (HS_SECRET, RawRefused, _Raw, admin_token, http, open_raw, post_access, practable_token,
                      start, stop)

AUDIENCE = "https://relay.example.org/access"


def documented(monkeypatch, tmp_path, secret=HS_SECRET, **relay):
    """A router started from the README's relay configuration (listeners on port 0)."""
    monkeypatch.setenv("RELAYROUTER_JWT_SECRET", secret)
    data = documented_config()
    data["relay"] = {**data["relay"], "stats_interval": 0, **relay}
    return start(data, tmp_path / "state")


@pytest.fixture
def router(monkeypatch, tmp_path):
    running = pytest_twisted.blockon(documented(monkeypatch, tmp_path))
    yield running
    pytest_twisted.blockon(stop(running))


def admin(**kw):
    return {"Authorization": admin_token(**kw)}


def bids(router, which, query=""):
    return f"{router.http_url}/bids/{which}{query}"


def future(seconds=3600):
    return int(time.time()) + seconds


# ------------------------------------------------------------ POST /session/{session_id}

@pytest_twisted.inlineCallbacks
def test_session_answers_a_uri_with_a_code(router):
    """access.go sessionHandler: 200 {"uri": target/prefix/topic?code=...}."""
    code, body = yield post_access(router, "pend00", practable_token())
    assert code == 200 and set(body) == {"uri"}
    assert body["uri"].startswith(f"ws://127.0.0.1:{router.ws_port}/session/pend00?code=")


@pytest_twisted.inlineCallbacks
def test_session_takes_the_raw_token_in_authorization(router):
    """api/access.yml securityDefinitions: apiKey in header Authorization, no scheme."""
    assert (yield post_access(router, "pend00", practable_token(), bearer=False))[0] == 200


@pytest_twisted.inlineCallbacks
def test_session_takes_a_bearer_token_too(router):
    """api/access.yml: the whole header is the token (so 'Bearer ...' fails there); we accept both."""
    assert (yield post_access(router, "pend00", practable_token(), bearer=True))[0] == 200


@pytest_twisted.inlineCallbacks
def test_session_without_a_token_is_401(router):
    """api/access.yml: security Bearer on /session/{session_id}."""
    code, _, body = yield http("POST", f"{router.http_url}/session/pend00")
    assert code == 401 and body["error"] == "wamp.error.authentication_failed"


@pytest_twisted.inlineCallbacks
def test_session_for_another_topic_is_401(router):
    """access.go sessionHandler: claims.Topic != session_id -> 401 "Token Wrong Topic"."""
    code, body = yield post_access(router, "other", practable_token(topic="pend00"))
    assert code == 401 and "topic" in body["message"]


@pytest_twisted.inlineCallbacks
def test_session_without_a_booking_id_is_400(router):
    """access.go sessionHandler: empty bookingID and not AllowNoBookingID -> 400."""
    code, body = yield post_access(router, "pend00", practable_token(booking_id=None))
    assert code == 400 and "booking id" in body["message"]


@pytest_twisted.inlineCallbacks
def test_session_without_a_booking_id_when_allowed(monkeypatch, tmp_path):
    """access.go Config.AllowNoBookingID: such tokens are accepted."""
    running = yield documented(monkeypatch, tmp_path, allow_no_booking_id=True)
    try:
        code, _ = yield post_access(running, "pend00", practable_token(booking_id=None))
        assert code == 200
    finally:
        yield stop(running)


@pytest.mark.parametrize("missing", ["topic", "scopes", "prefix", "aud"])
@pytest_twisted.inlineCallbacks
def test_session_with_a_required_claim_missing_is_401(router, missing):
    """permission/models.go HasRequiredClaims: topic, scopes, prefix, aud, exp -> 401."""
    claims = {missing: () if missing == "scopes" else None}
    code, _ = yield post_access(router, "pend00", practable_token(**claims))
    assert code == 401


@pytest_twisted.inlineCallbacks
def test_session_without_exp_is_401(router):
    """permission/models.go HasRequiredClaims needs exp (practable dereferences a missing one)."""
    now = int(time.time())
    token = pyjwt.encode({"topic": "pend00", "prefix": "session", "scopes": ["read"], "booking_id": "b",
                          "aud": [AUDIENCE], "iat": now}, HS_SECRET, algorithm="HS256")
    code, body = yield post_access(router, "pend00", token)
    assert code == 401 and "exp" in body["message"]


SECRET_64 = "relay-secret-of-sixty-four-bytes-0123456789abcdef-0123456789abcd"


@pytest_twisted.inlineCallbacks
def test_session_accepts_the_hmac_family(monkeypatch, tmp_path):
    """access.go validateHeader: any jwt.SigningMethodHMAC with the shared secret (HS256, HS384,
    HS512); the README's configuration lists all three."""
    assert len(SECRET_64) == 64  # RFC 7518 3.2: HS512 needs a 64-byte secret (we hold to it)
    running = yield documented(monkeypatch, tmp_path, secret=SECRET_64)
    try:
        claims = pyjwt.decode(practable_token(), options={"verify_signature": False})
        for alg in ("HS256", "HS384", "HS512"):
            code, _ = yield post_access(running, "pend00", pyjwt.encode(claims, SECRET_64, algorithm=alg))
            assert code == 200, alg
    finally:
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_session_refuses_a_non_hmac_token_with_401(router):
    """access.go validateHeader: "unexpected signing method" (practable 500; we 401)."""
    from ..security_support import rsa_pair

    private, _ = rsa_pair()
    claims = pyjwt.decode(practable_token(), options={"verify_signature": False})
    code, _ = yield post_access(router, "pend00", pyjwt.encode(claims, private, algorithm="RS256"))
    assert code == 401


@pytest.mark.parametrize("why", ["expired", "not yet valid", "bad signature", "wrong audience", "not a jwt"])
@pytest_twisted.inlineCallbacks
def test_session_with_an_invalid_token_is_401(router, why):
    """access.go validateHeader: token.Valid (exp, nbf, iat), signature, VerifyAudience
    (practable answers these 500 "token invalid"; we 401)."""
    token = {"expired": lambda: practable_token(lifetime=-10),
             "not yet valid": lambda: practable_token(nbf=int(time.time()) + 600),
             "bad signature": lambda: practable_token()[:-4] + "AAAA",
             "wrong audience": lambda: practable_token(aud="https://elsewhere/access"),
             "not a jwt": lambda: "not-a-token"}[why]()
    code, body = yield post_access(router, "pend00", token)
    assert code == 401 and body["error"] == "wamp.error.authentication_failed"


@pytest_twisted.inlineCallbacks
def test_session_for_a_topic_that_cannot_be_a_wamp_uri_component_is_400(router):
    """access.go sessionHandler takes any session_id as the topic; ours is also the WAMP topic
    relay.{prefix}.{topic}, so a '.' (or '#', a space) in it is refused with 400."""
    code, body = yield post_access(router, "pend.00", practable_token(topic="pend.00"))
    assert code == 400 and body["error"] == "wamp.error.invalid_argument"
    assert "'pend.00' cannot be a topic" in body["message"]


@pytest_twisted.inlineCallbacks
def test_every_refusal_is_one_json_shape(router):
    """models/error.go: practable's refusals are {"code": "<status>", "message"}, a bare JSON
    string (access.go sessionHandler's 401s) or go-swagger's {"code": 602, "message"} (422);
    ours are all {"error": <WAMP error URI>, "message"}, whatever the status."""
    yield http("POST", bids(router, "deny", f"?bid=bk-gone&exp={future()}"), headers=admin())
    refusals = [
        ("POST", f"{router.http_url}/session/pend00", {}, 401),  # no token
        ("POST", f"{router.http_url}/session/other", {"Authorization": practable_token()}, 401),
        ("POST", f"{router.http_url}/session/pend00", {"Authorization": practable_token(lifetime=-10)}, 401),
        ("POST", f"{router.http_url}/session/pend00", {"Authorization": practable_token(booking_id=None)}, 400),
        ("POST", f"{router.http_url}/session/pend00", {"Authorization": practable_token(booking_id="bk-gone")}, 403),
        ("POST", bids(router, "deny", f"?bid=x&exp={future()}"), admin(scopes=("read",)), 403),
        ("POST", bids(router, "deny", "?bid=x"), admin(), 422),
        ("POST", bids(router, "deny", f"?bid=x&exp={int(time.time()) - 10}"), admin(), 400),
        ("GET", f"{router.http_url}/status", admin(), 403),
    ]
    for method, url, headers, status in refusals:
        code, _, body = yield http(method, url, headers=headers)
        assert code == status, (url, code, body)
        assert set(body) == {"error", "message"}, (url, body)
        assert body["error"].startswith(("wamp.error.", "relayrouter.error.")) and body["message"], (url, body)


@pytest_twisted.inlineCallbacks
def test_session_for_a_denied_booking_is_refused(router):
    """access.go sessionHandler: DenyStore.IsDenied -> refused (practable 400; we 403)."""
    yield http("POST", bids(router, "deny", f"?bid=bk-1&exp={future()}"), headers=admin())
    code, body = yield post_access(router, "pend00", practable_token(booking_id="bk-1"))
    assert code == 403 and "denied" in body["message"]


@pytest_twisted.inlineCallbacks
def test_session_lists_its_booking_as_allowed(router):
    """access.go sessionHandler: DenyStore.Allow(bookingID, exp) on every access request."""
    yield post_access(router, "pend00", practable_token(booking_id="seen-1"))
    code, _, body = yield http("GET", bids(router, "allow"), headers=admin())
    assert code == 200 and "seen-1" in body["booking_ids"]


# ------------------------------------------------------------------ codes (ttlcode)

@pytest_twisted.inlineCallbacks
def test_a_code_is_good_once(router):
    """ttlcode.go ExchangeCode: the code is deleted when exchanged."""
    _, body = yield post_access(router, "pend00", practable_token())
    yield open_raw(router, body["uri"])
    with pytest.raises(RawRefused):
        yield open_raw(router, body["uri"])


@pytest_twisted.inlineCallbacks
def test_a_code_lives_30_seconds(router):
    """ttlcode.go NewDefaultCodeStore: ttl 30 s."""
    _, body = yield post_access(router, "pend00", practable_token())
    relay = router.service.relay
    relay.codes.clock = lambda: time.time() + 31
    try:
        with pytest.raises(RawRefused):
            yield open_raw(router, body["uri"])
    finally:
        relay.codes.clock = time.time


# --------------------------------------------------- the WebSocket relay (crossbar.go)

@pytest_twisted.inlineCallbacks
def test_websocket_on_an_unsupported_prefix_is_404(router):
    """crossbar.go serveWs: connection type not served -> 404."""
    with pytest.raises(RawRefused) as refused:
        yield open_raw(router, f"ws://127.0.0.1:{router.ws_port}/shell/pend00?code=x")
    assert "404" in str(refused.value)


@pytest.mark.parametrize("query", ["", "?code=", "?code=unknown"])
@pytest_twisted.inlineCallbacks
def test_websocket_without_a_valid_code_is_refused(router, query):
    """crossbar.go serveWs: no code, or ExchangeCode fails -> no relay (practable closes after
    upgrading; we refuse the upgrade with 401)."""
    with pytest.raises(RawRefused) as refused:
        yield open_raw(router, f"ws://127.0.0.1:{router.ws_port}/session/pend00{query}")
    assert "401" in str(refused.value)


@pytest_twisted.inlineCallbacks
def test_websocket_with_a_code_for_another_topic_is_refused(router):
    """crossbar.go serveWs: topic != token.Topic -> no relay (we: 403 at the upgrade)."""
    _, body = yield post_access(router, "pend00", practable_token())
    with pytest.raises(RawRefused) as refused:
        yield open_raw(router, body["uri"].replace("/pend00?", "/other?"))
    assert "403" in str(refused.value)


@pytest_twisted.inlineCallbacks
def test_websocket_echoes_the_null_subprotocol(router):
    """crossbar.go upgrader: Subprotocols ["null"]."""
    _, body = yield post_access(router, "pend00", practable_token())
    factory = WebSocketClientFactory(body["uri"], protocols=["null"])
    factory.protocol = _Raw
    factory.opened, factory.closed, factory.inbox, factory.waiting = defer.Deferred(), defer.Deferred(), [], []
    yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", router.ws_port).connect(factory)
    proto = yield factory.opened.addTimeout(10, reactor)
    assert proto.websocket_protocol_in_use == "null"


@defer.inlineCallbacks
def raw(router, scopes, booking_id="bk-1", topic="pend00", headers=None):
    _, body = yield post_access(router, topic, practable_token(topic=topic, scopes=scopes, booking_id=booking_id))
    client = yield open_raw(router, body["uri"], headers=headers)
    return client


@pytest_twisted.inlineCallbacks
def test_a_writer_reaches_every_other_reader_never_itself(router):
    """crossbar.go hub broadcast: to every client of the topic but the sender."""
    a, b, c = (yield raw(router, ("read", "write"))), (yield raw(router, ("read", "write"))), \
        (yield raw(router, ("read", "write")))
    a.send_text("from a")
    assert (yield b.next()) == "from a" and (yield c.next()) == "from a"
    b.send_text("from b")
    assert (yield a.next()) == "from b"  # a's own frame never came back before this one


@pytest_twisted.inlineCallbacks
def test_frames_keep_their_type(router):
    """crossbar.go message mt: a text frame stays text, a binary frame binary."""
    a, b = (yield raw(router, ("read", "write"))), (yield raw(router, ("read", "write")))
    a.send_binary(b"\x00\xffbin")
    a.send_text("txt")
    assert (yield b.next()) == b"\x00\xffbin" and (yield b.next()) == "txt"


@pytest_twisted.inlineCallbacks
def test_the_largest_frame_is_the_routers_limit(router):
    """crossbar.go maxMessageSize: practable's read limit is 10 MiB; ours is the router's
    limits.max_message_size (16 MiB by default): a 12 MiB frame is relayed, a larger one than the
    limit closes its sender with 1009."""
    writer, reader = (yield raw(router, ("read", "write"))), (yield raw(router, ("read", "write")))
    writer.send_binary(b"v" * (12 * 2**20))
    assert len((yield reader.next(timeout=60))) == 12 * 2**20
    writer.send_binary(b"v" * (16 * 2**20 + 1))
    code, _ = yield writer.closed(60)
    assert code == 1009


@pytest_twisted.inlineCallbacks
def test_without_write_frames_go_nowhere(router):
    """crossbar.go readPump: a message is broadcast only if canWrite."""
    reader, other = (yield raw(router, ("read",))), (yield raw(router, ("read", "write")))
    reader.send_text("dropped")
    yield eventually(lambda: any(p.refused for p in router.service.relay.peers))
    other.send_text("kept")
    assert (yield reader.next()) == "kept"


@pytest_twisted.inlineCallbacks
def test_without_read_nothing_arrives(router):
    """crossbar.go writePump: a message is sent only if canRead."""
    writer, other = (yield raw(router, ("write",))), (yield raw(router, ("read", "write")))
    other.send_text("not for the writer")
    writer.send_text("to other")
    assert (yield other.next()) == "to other"
    assert not writer.factory.inbox


@pytest_twisted.inlineCallbacks
def test_a_connection_ends_at_its_tokens_exp(router):
    """crossbar.go serveWs: the connection is cancelled after the token's ttl."""
    _, body = yield post_access(router, "pend00", practable_token(lifetime=5))
    client = yield open_raw(router, body["uri"])
    code, reason = yield client.closed(timeout=30)
    assert code == 1000 and reason == "wamp.close.token_expired"


# ------------------------------------------------------ /bids/deny and /bids/allow

@pytest_twisted.inlineCallbacks
def test_deny_closes_live_connections_and_voids_codes(router):
    """access.go denyHandler: 204; CodeStore.DeleteByBookingID, DenyChannel closes connections."""
    live = yield raw(router, ("read", "write"), booking_id="bk-9")
    _, pending = yield post_access(router, "pend00", practable_token(booking_id="bk-9"))
    code, _, _ = yield http("POST", bids(router, "deny", f"?bid=bk-9&exp={future()}"), headers=admin())
    assert code == 204
    assert (yield live.closed()) == (1000, "wamp.close.revoked")
    with pytest.raises(RawRefused):
        yield open_raw(router, pending["uri"])
    code, _, body = yield http("GET", bids(router, "deny"), headers=admin())
    assert code == 200 and body == {"booking_ids": ["bk-9"]}


@pytest.mark.parametrize("which", ["deny", "allow"])
@pytest.mark.parametrize("query, status", [
    ("?exp={exp}", 422),             # deny_parameters.go / allow_parameters.go: bid required
    ("?bid=&exp={exp}", 422),        # validate.RequiredString: an empty bid too
    ("?bid=b1", 422),                # exp required
    ("?bid=b1&exp=soon", 422),       # exp: int64 (errors.InvalidType)
    ("?bid=b1&exp={past}", 400),     # access.go: exp in the past -> 400
])
@pytest_twisted.inlineCallbacks
def test_bids_parameters(router, which, query, status):
    """deny_parameters.go, allow_parameters.go (422 before the handler), access.go (400)."""
    url = bids(router, which, query.format(exp=future(), past=int(time.time()) - 10))
    code, _, body = yield http("POST", url, headers=admin())
    assert code == status, body
    assert body["error"] == "wamp.error.invalid_argument" and body["message"]


@pytest_twisted.inlineCallbacks
def test_allow_undoes_a_denial(router):
    """deny.go Allow: off the deny list, onto the allow list; access.go allowHandler 204."""
    yield http("POST", bids(router, "deny", f"?bid=bk-5&exp={future()}"), headers=admin())
    code, _, _ = yield http("POST", bids(router, "allow", f"?bid=bk-5&exp={future()}"), headers=admin())
    assert code == 204
    _, _, denied = yield http("GET", bids(router, "deny"), headers=admin())
    _, _, allowed = yield http("GET", bids(router, "allow"), headers=admin())
    assert "bk-5" not in denied["booking_ids"] and "bk-5" in allowed["booking_ids"]
    assert (yield post_access(router, "pend00", practable_token(booking_id="bk-5")))[0] == 200


@pytest.mark.parametrize("method, which", [("GET", "deny"), ("GET", "allow"), ("POST", "deny"), ("POST", "allow")])
@pytest_twisted.inlineCallbacks
def test_bids_need_the_admin_scope(router, method, which):
    """access.go isRelayAdmin: relay:admin scope (practable 401; we 403 for a valid token
    without it, 401 without a token)."""
    url = bids(router, which, f"?bid=x&exp={future()}" if method == "POST" else "")
    code, _, body = yield http(method, url, headers={"Authorization": practable_token()})
    assert code == 403 and "relay:admin" in body["message"]
    code, _, _ = yield http(method, url)
    assert code == 401


# ------------------------------------------------------------------------- /status

@pytest_twisted.inlineCallbacks
def test_status_reports_each_connection(router):
    """access.go getStatusHandler, models/report.go: can_read, can_write, connected_at,
    expires_at, remote_addr, scopes, topic, user_agent."""
    yield raw(router, ("read",), headers={"User-Agent": "practable-page"})
    code, _, body = yield http("GET", f"{router.http_url}/status", headers=admin(scopes=("relay:stats",)))
    assert code == 200 and len(body) == 1
    (report,) = body
    assert {k: report[k] for k in ("can_read", "can_write", "scopes", "topic")} == {
        "can_read": True, "can_write": False, "scopes": ["read"], "topic": "pend00"}
    assert "practable-page" in report["user_agent"]
    assert report["connected_at"].endswith("Z") and report["expires_at"].endswith("Z")
    assert report["remote_addr"].startswith("127.0.0.1:")


@pytest_twisted.inlineCallbacks
def test_status_needs_the_stats_scope(router):
    """access.go getStatusHandler: hasStatsScope (practable 401; we 403)."""
    code, _, body = yield http("GET", f"{router.http_url}/status", headers=admin())
    assert code == 403 and "relay:stats" in body["message"]
    code, _, _ = yield http("GET", f"{router.http_url}/status")
    assert code == 401


@pytest_twisted.inlineCallbacks
def test_status_remote_addr_from_a_trusted_proxy(monkeypatch, tmp_path):
    """crossbar.go serveWs: remoteAddr is X-Forwarded-For (practable always trusts it; we only
    from relay.trusted_proxies, else the TCP peer)."""

    @defer.inlineCallbacks
    def remote_addr(running):
        client = yield raw(running, ("read",), headers={"X-Forwarded-For": "203.0.113.7, 127.0.0.1"})
        _, _, body = yield http("GET", f"{running.http_url}/status", headers=admin(scopes=("relay:stats",)))
        client.close()
        yield client.closed()
        return body[0]["remote_addr"]

    for trusted, expected in ((["127.0.0.1"], "203.0.113.7"), (["10.0.0.0/8"], "127.0.0.1:")):
        running = yield documented(monkeypatch, tmp_path / str(len(expected)), trusted_proxies=trusted)
        try:
            assert (yield remote_addr(running)).startswith(expected)
        finally:
            yield stop(running)


@pytest.mark.parametrize("value, message", [
    ("127.0.0.1", "relay.trusted_proxies: must be a list"),
    (["10.0.0.0/33"], "relay.trusted_proxies[0]: '10.0.0.0/33' is not an IP address or network"),
    ([7], "relay.trusted_proxies[0]: 7 is not an IP address or network"),
])
def test_trusted_proxies_are_checked_at_start(monkeypatch, value, message):
    from relayrouter import config as cfg

    monkeypatch.setenv("RELAYROUTER_JWT_SECRET", HS_SECRET)
    data = documented_config()
    data["relay"]["trusted_proxies"] = value
    with pytest.raises(cfg.ConfigError) as e:
        cfg.parse(data)
    assert message in str(e.value)
