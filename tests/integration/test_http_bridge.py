"""The HTTP bridge against a real router: JWT callers under the realm's roles, Crossbar-format
signed requests (signed here exactly as crossbarconnect signs), replay protection, webhooks."""

import base64
import datetime
import hashlib
import hmac
import json
import random

import pytest
import pytest_twisted
import treq
from twisted.internet import defer

from ..security_support import HS_SECRET, start, stop, token
from ..support import connect_ws, eventually

BRIDGE_SECRET = "bridge-secret-0123456789abcdef"
GITHUB_SECRET = "github-secret-0123456789abcdef"


def config(monkeypatch, **bridge):
    monkeypatch.setenv("JWT_SECRET", HS_SECRET)
    monkeypatch.setenv("BRIDGE_SECRET", BRIDGE_SECRET)
    monkeypatch.setenv("GITHUB_SECRET", GITHUB_SECRET)
    return {
        "realms": [{
            "name": "realm1",
            "auth": {"jwt": {"algorithms": ["HS256"], "audience": "relayrouter", "issuer": "lab",
                             "authrole_claim": "role", "authrole": "user", "keys": [{"secret_env": "JWT_SECRET"}]},
                     "anonymous": {"role": "backend"}},
            "roles": [
                {"name": "backend", "rules": [{"uri": "com.example.", "match": "prefix",
                                               "allow": ["call", "register", "publish", "subscribe"]}]},
                {"name": "user", "rules": [{"uri": "com.example.public.", "match": "prefix",
                                            "allow": ["publish", "call"]}]},
                {"name": "webhook", "rules": [{"uri": "com.example.hooks.", "match": "prefix", "allow": ["publish"]}]},
            ],
        }],
        "http_bridge": {"max_body": 2048, "call_timeout": 2,
                        "keys": [{"key": "foobar", "secret_env": "BRIDGE_SECRET", "realm": "realm1",
                                  "role": "backend"}],
                        "webhooks": [{"name": "github", "realm": "realm1", "topic": "com.example.hooks.github",
                                      "github_secret_env": "GITHUB_SECRET"}],
                        **bridge},
    }


@pytest.fixture
def router(monkeypatch, tmp_path):
    running = pytest_twisted.blockon(start(config(monkeypatch), tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


def signed_query(body: bytes, key="foobar", secret=BRIDGE_SECRET, timestamp=None, seq=1, nonce=None) -> dict:
    """What crossbarconnect sends: key, timestamp, seq, nonce, signature (base64url HMAC-SHA256)."""
    timestamp = timestamp or datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    nonce = str(nonce if nonce is not None else random.randint(0, 2 ** 53))
    digest = hmac.new(secret.encode(), (key + timestamp + str(seq) + nonce).encode() + body, hashlib.sha256).digest()
    return {"key": key, "timestamp": timestamp, "seq": str(seq), "nonce": nonce,
            "signature": base64.urlsafe_b64encode(digest).decode()}


@defer.inlineCallbacks
def post(router, path, body, params=None, bearer=None, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"Content-Type": ["application/json"], **(headers or {})}
    if bearer:
        hdrs["Authorization"] = [f"Bearer {bearer}"]
    response = yield treq.post(router.http_url + path, data=data, params=params, headers=hdrs, timeout=30)
    content = yield treq.content(response)
    return response.code, json.loads(content) if content else None


@defer.inlineCallbacks
def backend(router):
    """A WAMP service: subscribes to com.example.*, answers com.example.add and com.example.fail."""
    from autobahn.wamp.exception import ApplicationError
    from autobahn.wamp.types import SubscribeOptions

    session = yield connect_ws(router)
    events = []
    yield session.subscribe(lambda *a, **kw: events.append((a, kw)), "com.example.",
                            options=SubscribeOptions(match="prefix"))

    def fail():
        raise ApplicationError("com.example.error.out_of_stock", "no more", item=7)

    yield session.register(lambda a, b: a + b, "com.example.add")
    yield session.register(lambda a, b: a + b, "com.example.public.add")
    yield session.register(fail, "com.example.fail")
    # Never answers; when the router cancels it (timeout), it just ends.
    yield session.register(lambda: defer.Deferred(lambda d: d.callback(None)), "com.example.never")
    return session, events


@pytest_twisted.inlineCallbacks
def test_signed_publish_and_call_as_crossbar_clients_send_them(router):
    _, events = yield backend(router)
    body = json.dumps({"topic": "com.example.news", "args": ["hello"], "kwargs": {"n": 1}}).encode()
    code, answer = yield post(router, "/publish", body, params=signed_query(body))
    assert code == 200 and isinstance(answer["id"], int)
    yield eventually(lambda: events)
    assert events == [(("hello",), {"n": 1})]
    body = json.dumps({"procedure": "com.example.add", "args": [2, 3]}).encode()
    code, answer = yield post(router, "/call", body, params=signed_query(body, seq=2))
    assert (code, answer) == (200, {"args": [5]})


@pytest_twisted.inlineCallbacks
def test_signed_requests_refused_for_every_fault(router):
    body = json.dumps({"topic": "com.example.news"}).encode()
    good = signed_query(body)
    cases = [
        (dict(good, signature=base64.urlsafe_b64encode(b"x" * 32).decode()), 401, "signature does not match"),
        (signed_query(body, secret="another-secret-0123456789"), 401, "signature does not match"),
        (signed_query(body, key="nobody"), 401, "unknown key 'nobody'"),
        (signed_query(body, timestamp="2020-01-01T00:00:00.000Z"), 401, "off the router's clock"),
        (dict(good, timestamp="yesterday"), 400, "timestamp must be UTC ISO-8601"),
        ({k: v for k, v in good.items() if k != "nonce"}, 400, "signed request without nonce"),
    ]
    for params, status, fragment in cases:
        code, answer = yield post(router, "/publish", body, params=params)
        assert code == status and fragment in answer["args"][0], (params, answer)
    code, _ = yield post(router, "/publish", body, params=good)
    assert code == 200
    code, answer = yield post(router, "/publish", body, params=good)  # the same request again
    assert code == 401 and "replayed request" in answer["args"][0]


@pytest_twisted.inlineCallbacks
def test_jwt_callers_get_exactly_their_roles(router):
    _, events = yield backend(router)
    user = token(sub="alice", role="user")
    code, answer = yield post(router, "/publish", {"topic": "com.example.public.chat", "args": [1]}, bearer=user)
    assert code == 200
    code, answer = yield post(router, "/publish", {"topic": "com.example.news", "args": [1]}, bearer=user)
    assert code == 403 and answer["error"] == "wamp.error.not_authorized"
    code, answer = yield post(router, "/call", {"procedure": "com.example.public.add", "args": [1, 1]}, bearer=user)
    assert (code, answer) == (200, {"args": [2]})
    code, answer = yield post(router, "/call", {"procedure": "com.example.add", "args": [1, 1]}, bearer=user)
    assert code == 403 and answer["error"] == "wamp.error.not_authorized"
    code, answer = yield post(router, "/call", {"procedure": "com.example.public.add"}, bearer="not-a-jwt")
    assert code == 401 and answer["error"] == "wamp.error.authentication_failed"
    code, answer = yield post(router, "/call", {"procedure": "com.example.public.add"})
    assert code == 401


@pytest_twisted.inlineCallbacks
def test_wamp_errors_become_statuses_with_the_uri(router):
    yield backend(router)
    admin = token(sub="svc", role="backend")
    cases = [({"procedure": "com.example.nothing"}, 404, "wamp.error.no_such_procedure"),
             ({"procedure": "com.example.fail"}, 502, "com.example.error.out_of_stock"),
             ({"procedure": "com.example.never", "options": {"timeout": 200}}, 504, "wamp.error.canceled")]
    for body, status, uri in cases:
        code, answer = yield post(router, "/call", body, bearer=admin)
        assert code == status and answer["error"] == uri, answer
    code, answer = yield post(router, "/call", {"procedure": "com.example.fail"}, bearer=admin)
    assert answer == {"error": "com.example.error.out_of_stock", "args": ["no more"], "kwargs": {"item": 7}}
    code, answer = yield post(router, "/call", b"x" * 5000, bearer=admin)
    assert code == 413 and answer["error"] == "wamp.error.invalid_argument" and "2048" in answer["args"][0]
    assert answer["kwargs"] == {}  # Crossbar's error shape, for a body refused while it arrives too
    code, answer = yield post(router, "/call", b"{not json", bearer=admin)
    assert code == 400 and "not valid JSON" in answer["args"][0]
    code, answer = yield post(router, "/call", {"args": [1]}, bearer=admin)
    assert code == 400 and "needs 'procedure'" in answer["args"][0]


@pytest_twisted.inlineCallbacks
def test_crossbar_error_status_answers_callee_errors_with_200(monkeypatch, tmp_path):
    running = yield start(config(monkeypatch, error_status="crossbar"), tmp_path / "state")
    try:
        yield backend(running)
        body = json.dumps({"procedure": "com.example.fail"}).encode()
        code, answer = yield post(running, "/call", body, params=signed_query(body))
        assert code == 200 and answer["error"] == "com.example.error.out_of_stock"
        body = json.dumps({"procedure": "com.example.nothing"}).encode()
        code, answer = yield post(running, "/call", body, params=signed_query(body))
        assert code == 200 and answer["error"] == "wamp.error.no_such_procedure"  # as Crossbar answers
    finally:
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_webhook_turns_a_signed_body_into_an_event(router):
    _, events = yield backend(router)
    payload = b'{"action": "opened", "number": 7}'
    signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), payload, hashlib.sha256).hexdigest()
    code, answer = yield post(router, "/webhook/github", payload, headers={"X-Hub-Signature-256": [signature],
                                                                           "X-GitHub-Event": ["issues"]})
    assert code == 202 and isinstance(answer["id"], int)
    yield eventually(lambda: events)
    (args, kwargs), = events
    assert kwargs["body"] == {"action": "opened", "number": 7} and kwargs["content_type"] == "application/json"
    assert kwargs["headers"]["x-github-event"] == "issues" and "x-hub-signature-256" not in kwargs["headers"]
    code, answer = yield post(router, "/webhook/github", payload, headers={"X-Hub-Signature-256": ["sha256=00"]})
    assert code == 401 and "does not match" in answer["args"][0]
    code, answer = yield post(router, "/webhook/gitlab", payload)
    assert code == 404


@pytest.mark.parametrize("change, message", [
    ({"role": "nobody"}, "http_bridge.webhooks[0].role: realm 'realm1' has no role 'nobody' (its roles: backend, user, webhook)"),
    ({"event": "xml"}, "http_bridge.webhooks[0].event: must be one of kwargs, crossbar, not 'xml'"),
    ({"name": "a/b"}, "http_bridge.webhooks[0].name: 'a/b' has a '/'"),
])
def test_webhook_settings_are_checked_at_start(monkeypatch, change, message):
    from relayrouter.config import ConfigError, parse

    data = config(monkeypatch)
    data["http_bridge"]["webhooks"][0].update(change)
    with pytest.raises(ConfigError) as info:
        parse(data)
    assert message in str(info.value)


def test_a_realm_with_roles_needs_the_webhooks_default_role(monkeypatch):
    from relayrouter.config import ConfigError, parse

    data = config(monkeypatch)
    data["realms"][0]["roles"] = [r for r in data["realms"][0]["roles"] if r["name"] != "webhook"]
    with pytest.raises(ConfigError, match=r"webhooks\[0\].role: realm 'realm1' has no role 'webhook'"):
        parse(data)
    data["http_bridge"]["keys"][0]["role"] = "admin"
    data["http_bridge"]["webhooks"] = []
    with pytest.raises(ConfigError, match=r"keys\[0\].role: realm 'realm1' has no role 'admin'"):
        parse(data)


@pytest_twisted.inlineCallbacks
def test_bridge_and_webhook_sessions_show_their_http_side_in_the_console(monkeypatch, tmp_path):
    data = config(monkeypatch)
    data["console"] = {"roles": ["backend"]}
    data["realms"][0]["roles"][0]["rules"].append({"uri": "relayrouter.console.", "match": "prefix",
                                                   "allow": ["call"]})
    running = yield start(data, tmp_path / "state")
    try:
        viewer = yield connect_ws(running)
        body = json.dumps({"topic": "com.example.news"}).encode()
        code, _ = yield post(running, "/publish", body, params=signed_query(body))
        payload = b'{"action": "opened"}'
        signature = "sha256=" + hmac.new(GITHUB_SECRET.encode(), payload, hashlib.sha256).hexdigest()
        code, _ = yield post(running, "/webhook/github", payload, headers={"X-Hub-Signature-256": [signature]})
        rows = {row["authid"]: row for row in (yield viewer.call("relayrouter.console.sessions"))["sessions"]}
        for authid, sent in (("http-bridge:foobar", body), ("webhook:github", payload)):
            row = rows[authid]
            assert row["peer"] == "127.0.0.1 (HTTP, 1 request)" and row["transport"] == "http", row
            assert row["since"].endswith("Z") and row["rx_bytes"] == len(sent) and row["tx_bytes"] > 0, row
        before = (yield viewer.call("relayrouter.console.overview"))["bytes_received"]
        running.service.http_bridge.close()  # the sessions end: the router's totals keep their bytes
        after = (yield viewer.call("relayrouter.console.overview"))["bytes_received"]
        assert after >= before
    finally:
        yield stop(running)
