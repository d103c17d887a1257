"""One-time tickets over HTTP, roles and claim permissions, revocation,
token expiry, and a check that no secret reaches the log."""

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer
from twisted.logger import formatEvent, globalLogPublisher

from relayrouter.logs import event_as_json

from ..refusals import assert_refused
from ..security_support import HS_SECRET, ISSUER, http, start, stop, token
from ..support import LeftBeforeJoining, connect_raw, connect_tcp, connect_ws, eventually, within

ORIGIN = "https://app.example.com"
CLAIM_RULE = {"uri": "relay.session.{topic}", "scopes": {"read": ["subscribe"], "write": ["publish"]}}


def config(monkeypatch, **top):
    monkeypatch.setenv("JWT_SECRET", HS_SECRET)
    return {
        "realms": [{
            "name": "realm1",
            "auth": {"jwt": {"algorithms": ["HS256"], "audience": "relayrouter", "issuer": ISSUER,
                             "as_ticket": True, "authrole_claim": "role", "authrole": "device",
                             "keys": [{"secret_env": "JWT_SECRET"}]},
                     "one_time_tickets": {"lifetime": 30}},
            "roles": [
                {"name": "device", "rules": [CLAIM_RULE, {"uri": "com.public.", "match": "prefix",
                                                          "allow": ["subscribe", "call"]}]},
                {"name": "service", "rules": [{"uri": "com.", "match": "prefix",
                                               "allow": ["call", "register", "publish", "subscribe"]}]},
                # Router procedures are authorized like any call, then by revocation.admin_roles.
                {"name": "admin", "rules": [{"uri": "relayrouter.denylist.", "match": "prefix",
                                             "allow": ["call"]}]},
            ],
        }],
        "http": {"allowed_origins": [ORIGIN]},
        "revocation": {"claims": ["bid", "jti", "sub"], "admin_roles": ["admin"], "admin_scope": "relay:admin",
                       "close_grace": 1},
        **top,
    }


@pytest.fixture
def router(monkeypatch, tmp_path):
    running = pytest_twisted.blockon(start(config(monkeypatch), tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


def ticket_url(router):
    return f"{router.http_url}/ticket"


@defer.inlineCallbacks
def mint(router, bearer, **kw):
    code, headers, body = yield http("POST", ticket_url(router), bearer=bearer, **kw)
    assert code == 200, body
    return body


# ------------------------------------------------------------ one-time tickets

@pytest_twisted.inlineCallbacks
def test_ticket_exchange_then_join_bound_to_the_tokens_claims(router):
    body = yield mint(router, token(topic="lab42", scopes=["read"], bid="b-1"))
    assert body["ticket"].startswith("rrt_") and len(body["ticket"]) >= 40
    assert body["expires_in"] == 30 and body["realm"] == "realm1"
    assert body["url"] == router.ws_url
    client = yield connect_ws(router, authmethods=["ticket"], ticket=body["ticket"])
    assert (client.details.authid, client.details.authrole) == ("device-7", "device")
    # the token's claims bound the session: its own topic, and no other
    yield client.subscribe(lambda: None, "relay.session.lab42")
    with pytest.raises(ApplicationError) as info:
        yield client.subscribe(lambda: None, "relay.session.lab43")
    assert_refused(info.value, "wamp.error.not_authorized", "relay.session.lab43")


@pytest_twisted.inlineCallbacks
def test_replayed_ticket_is_refused(router):
    body = yield mint(router, token())
    yield connect_ws(router, authmethods=["ticket"], ticket=body["ticket"])
    with pytest.raises(LeftBeforeJoining) as info:
        yield connect_ws(router, authmethods=["ticket"], ticket=body["ticket"])
    assert_refused(info.value, "wamp.error.authentication_failed", "one-time ticket unknown, used or expired")


@pytest_twisted.inlineCallbacks
def test_ticket_in_the_websocket_url(router):
    body = yield mint(router, token())
    client = yield connect_ws(router, url=body["ticket_url"], authmethods=["ticket"], ticket="unused")
    assert client.details.authprovider == "one-time-ticket"


@pytest_twisted.inlineCallbacks
def test_ticket_after_revocation_is_refused(router):
    body = yield mint(router, token(bid="b-9"))
    code, _, _ = yield http("POST", f"{router.http_url}/denylist", bearer=token(sub="ops", scopes=["relay:admin"]),
                            body={"claim": "bid", "value": "b-9", "ttl": 60})
    assert code == 200
    with pytest.raises(LeftBeforeJoining) as info:
        yield connect_ws(router, authmethods=["ticket"], ticket=body["ticket"])
    # revocation dropped the pending ticket: it is no more than an unknown one now
    assert_refused(info.value, "wamp.error.authentication_failed", "one-time ticket unknown, used or expired")
    code, _, refused = yield http("POST", ticket_url(router), bearer=token(bid="b-9"))
    assert code == 403 and "revoked" in refused["message"]


@pytest.mark.parametrize("bearer, code, reason", [
    (None, 401, "send Authorization: Bearer <JWT>"),
    ("not-a-jwt", 401, "malformed token"),
    ("expired", 401, "token expired"),
])
@pytest_twisted.inlineCallbacks
def test_ticket_endpoint_refusals(router, bearer, code, reason):
    if bearer == "expired":
        bearer = token(lifetime=-60)
    status, headers, body = yield http("POST", ticket_url(router), bearer=bearer)
    assert status == code and body["error"] == "wamp.error.authentication_failed"
    assert reason in body["message"]


@pytest_twisted.inlineCallbacks
def test_cors_for_allowed_origins_and_403_for_others(router):
    code, headers, _ = yield http("OPTIONS", ticket_url(router), headers={"Origin": ORIGIN})
    assert code == 204
    assert headers.getRawHeaders("access-control-allow-origin") == [ORIGIN]
    assert "Authorization" in headers.getRawHeaders("access-control-allow-headers")[0]
    code, headers, body = yield http("POST", ticket_url(router), bearer=token(), headers={"Origin": ORIGIN})
    assert code == 200 and headers.getRawHeaders("access-control-allow-origin") == [ORIGIN]
    for method in ("OPTIONS", "POST"):
        code, _, body = yield http(method, ticket_url(router), bearer=token(), headers={"Origin": "https://evil.example"})
        assert code == 403 and body == {"error": "wamp.error.not_authorized", "message": "origin not allowed"}


@pytest_twisted.inlineCallbacks
def test_websocket_upgrade_from_a_foreign_origin_is_refused(router):
    status = yield upgrade_status(router, "https://evil.example")
    assert status.startswith("HTTP/1.1 403 ") and "https://evil.example" in status, status
    client = yield connect_ws(router, headers={"Origin": ORIGIN}, authmethods=["ticket"], ticket=token())
    assert client.details.authid == "device-7"


@defer.inlineCallbacks
def upgrade_status(router, origin: str) -> str:
    """The status line the router answers a WebSocket upgrade from ``origin`` with."""
    client = yield connect_tcp(router.ws_port)
    client.transport.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: wamp.2.json\r\nOrigin: " + origin.encode() + b"\r\n\r\n")
    yield eventually(lambda: b"\r\n" in client.received)
    client.transport.loseConnection()
    return client.received.split(b"\r\n", 1)[0].decode()


# --------------------------------------------------------------- authorization

@pytest_twisted.inlineCallbacks
def test_unauthorized_actions_name_action_and_uri(router):
    device = yield connect_ws(router, authmethods=["ticket"], ticket=token(topic="lab42", scopes=["read"]))
    for attempt, action, uri in [
        (lambda: device.publish("relay.session.lab42", options=PublishOptions(acknowledge=True)), "publish",
         "relay.session.lab42"),
        (lambda: device.subscribe(lambda: None, "relay.session.lab43"), "subscribe", "relay.session.lab43"),
        (lambda: device.register(lambda: None, "com.public.add"), "register", "com.public.add"),
        (lambda: device.call("com.private.add"), "call", "com.private.add"),
    ]:
        with pytest.raises(ApplicationError) as info:
            yield attempt()
        assert info.value.error == "wamp.error.not_authorized"
        assert action in info.value.args[0] and uri in info.value.args[0]


@pytest_twisted.inlineCallbacks
def test_claim_scopes_grant_publish_and_subscribe_on_the_claimed_topic(router):
    reader = yield connect_ws(router, authmethods=["ticket"], ticket=token(sub="r", topic="lab42", scopes=["read"]))
    writer = yield connect_ws(router, authmethods=["ticket"], ticket=token(sub="w", topic="lab42", scopes=["write"]))
    got = defer.Deferred()
    yield reader.subscribe(lambda x: got.callback(x), "relay.session.lab42")
    yield writer.publish("relay.session.lab42", 7, options=PublishOptions(acknowledge=True))
    assert (yield within(got)) == 7
    service = yield connect_ws(router, authmethods=["ticket"], ticket=token(sub="svc", role="service"))
    yield service.register(lambda: 42, "com.public.answer")
    assert (yield reader.call("com.public.answer")) == 42


# ------------------------------------------------------------------ revocation

@pytest_twisted.inlineCallbacks
def test_revoked_booking_id_while_connected_closes_the_session(router):
    victim = yield connect_ws(router, authmethods=["ticket"], ticket=token(bid="b-1"))
    bystander = yield connect_ws(router, authmethods=["ticket"], ticket=token(sub="other", bid="b-2"))
    admin = yield connect_ws(router, authmethods=["ticket"], ticket=token(sub="ops", role="admin"))
    result = yield admin.call("relayrouter.denylist.add", claim="bid", value="b-1", ttl=600, reason="refund")
    assert result["sessions_closed"] == 1
    details = yield within(victim.left)
    assert details.reason == "wamp.close.revoked"
    assert bystander.is_attached()
    with pytest.raises(LeftBeforeJoining) as info:
        yield connect_ws(router, authmethods=["ticket"], ticket=token(bid="b-1"))
    assert_refused(info.value, "wamp.error.not_authorized", "this credential has been revoked")
    with pytest.raises(ApplicationError) as denied:
        yield bystander.call("relayrouter.denylist.list")
    assert_refused(denied.value, "wamp.error.not_authorized",
                   "session 'other' with role 'device' is not authorized to call 'relayrouter.denylist.list'")


@pytest_twisted.inlineCallbacks
def test_denylist_http_endpoints_and_persistence(monkeypatch, tmp_path):
    state = tmp_path / "state"
    running = yield start(config(monkeypatch), state)
    url = f"{running.http_url}/denylist"
    admin = token(sub="ops", scopes=["relay:admin"])
    try:
        code, _, body = yield http("GET", url, bearer=token())
        assert code == 403 and body["error"] == "wamp.error.not_authorized"
        assert "may not administer the deny list" in body["message"]
        code, _, body = yield http("GET", url)
        assert code == 401 and body["error"] == "wamp.error.authentication_failed"
        assert "Bearer" in body["message"]
        code, _, body = yield http("POST", url, bearer=admin, body={"claim": "jti", "value": "t-1", "ttl": 600})
        assert code == 200 and body["entry"]["value"] == "t-1"
        code, _, body = yield http("GET", url, bearer=admin)
        assert [e["value"] for e in body["entries"]] == ["t-1"]
    finally:
        yield stop(running)
    again = yield start(config(monkeypatch), state)
    try:
        with pytest.raises(LeftBeforeJoining):
            yield connect_ws(again, authmethods=["ticket"], ticket=token(jti="t-1"))
        code, _, body = yield http("DELETE", f"{again.http_url}/denylist?claim=jti&value=t-1", bearer=admin)
        assert body == {"removed": True}
        yield connect_ws(again, authmethods=["ticket"], ticket=token(jti="t-1"))
    finally:
        yield stop(again)


@pytest_twisted.inlineCallbacks
def test_session_ends_when_its_token_expires(router):
    # long enough for a loaded machine to join before expiry (exp has whole
    # seconds); the expiry timer itself is tested with a fake clock in core
    client = yield connect_ws(router, authmethods=["ticket"], ticket=token(lifetime=4))
    details = yield within(client.left, 20)
    assert details.reason == "wamp.close.token_expired"


# --------------------------------------------------------------------- logging

@pytest_twisted.inlineCallbacks
def test_no_secret_reaches_the_log(monkeypatch, tmp_path):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        monkeypatch.setenv("STATIC_TICKET", "static-ticket-secret-value")
        data = config(monkeypatch)
        data["realms"][0]["auth"]["ticket"] = {"principals": [
            {"authid": "alice", "role": "device", "secret_env": "STATIC_TICKET"}]}
        running = yield start(data, tmp_path / "state")
        good, bad_sig = token(bid="b-x"), token()[:-3] + "abc"
        body = yield mint(running, good)
        secrets = [HS_SECRET, "static-ticket-secret-value", good, bad_sig, body["ticket"]]
        yield connect_ws(running, url=body["ticket_url"], authmethods=["ticket"], ticket="x")
        yield connect_ws(running, authmethods=["ticket"], authid="alice", ticket="static-ticket-secret-value")
        for wrong in (bad_sig, "static-ticket-secret-valuX", body["ticket"]):
            with pytest.raises(LeftBeforeJoining):
                yield connect_ws(running, authmethods=["ticket"], authid="alice", ticket=wrong)
        yield http("POST", f"{running.http_url}/ticket", bearer=bad_sig)
        raw = yield connect_raw(running)
        raw.send([1, "realm1", {"roles": {"caller": {}}, "authmethods": ["ticket"], "authid": "alice"}])
        assert (yield raw.next())[0] == 4  # CHALLENGE
        raw.send([5, HS_SECRET, {}])
        yield raw.next()
        yield stop(running)
        yield eventually(lambda: True)
    finally:
        globalLogPublisher.removeObserver(events.append)
    logged = "\n".join(formatEvent(e) + " " + repr(e) for e in events)
    # The same events as --log-format json writes them.
    as_json = "".join(event_as_json(e) for e in events)
    for text in (logged, as_json):
        assert "Authentication refused" in text  # the log is being captured
        for secret in secrets:
            assert secret not in text
            assert secret[:24] not in text
