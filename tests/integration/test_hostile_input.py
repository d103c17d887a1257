"""Hostile input to the router's HTTP endpoints is a 4xx naming what is wrong,
never a 500 with a traceback: JSON nested thousands of levels deep, a
``realm`` that is not a string, an Authorization header that is not UTF-8,
a NUL in a static file's path, numbers no float holds."""

import base64
import json

import pytest
import pytest_twisted
from twisted.internet import threads

from relayrouter.httpinput import MAX_DEPTH

from ..security_support import HS_SECRET, ISSUER, start, stop, token
from .test_http_bridge import BRIDGE_SECRET, GITHUB_SECRET, signed_query
from ..support import LeftBeforeJoining, connect_ws, eventually
from .test_mailboxes import raw_http

JWT = {"algorithms": ["HS256"], "audience": "relayrouter", "issuer": ISSUER, "as_ticket": True,
       "authrole_claim": "role", "authrole": "user", "keys": [{"secret_env": "JWT_SECRET"}]}
ADMIN = dict(role="admin", sub="ops")
DEEP = b"[" * 5000  # what a sweep sent: Python's JSON decoder gives up past ~1000 levels (RecursionError)
TOO_DEEP = json.dumps(json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))).encode()  # decodes; over the limit


def config(monkeypatch) -> dict:
    monkeypatch.setenv("JWT_SECRET", HS_SECRET)
    monkeypatch.setenv("BRIDGE_SECRET", BRIDGE_SECRET)
    monkeypatch.setenv("GITHUB_SECRET", GITHUB_SECRET)
    return {
        "realms": [{"name": "management", "auth": {"jwt": JWT, "one_time_tickets": {"lifetime": 30}},
                    "roles": [{"name": name, "rules": [{"uri": "com.example.", "match": "prefix",
                                                          "allow": ["publish", "call", "subscribe"]}]}
                              for name in ("admin", "webhook")]}],
        "realm_templates": [{"name": "tenant", "auth": {"jwt": dict(JWT, realm_claim="service")}}],
        "tenants": {"admin_roles": ["admin"]},
        "revocation": {"admin_roles": ["admin"], "admin_realm": "management"},
        "metrics": {"loopback_open": False},
        "http_bridge": {"keys": [{"key": "foobar", "secret_env": "BRIDGE_SECRET", "realm": "management",
                                  "role": "admin"}],
                        "webhooks": [{"name": "open", "realm": "management", "topic": "com.example.hook"},
                                     {"name": "github", "realm": "management", "topic": "com.example.gh",
                                      "github_secret_env": "GITHUB_SECRET"}]},
    }


@pytest.fixture
def router(monkeypatch, tmp_path):
    running = pytest_twisted.blockon(start(config(monkeypatch), tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


def request(port: int, method: str, target: str, body: bytes = b"", headers: dict | None = None):
    """(status, headers as one lowercase byte string, body bytes), over a plain socket (in a thread),
    so that any byte at all can be sent in a header."""
    lines = [f"{method} {target} HTTP/1.0".encode(), b"Host: 127.0.0.1", b"Connection: close",
             b"Content-Length: %d" % len(body)]
    lines += [name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
              for name, value in (headers or {}).items()]
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    d = threads.deferToThread(raw_http, port, head, body)
    return d.addCallback(_parsed)


def _parsed(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.lower(), body


def admin_headers() -> dict:
    return {"Authorization": "Bearer " + token(**ADMIN), "Content-Type": "application/json"}


def signed(path: str, body: bytes) -> str:
    query = "&".join(f"{k}={v}" for k, v in signed_query(body).items())
    return f"{path}?{query}"


def deep_cases() -> list:
    """(method, target, headers): the router's endpoints that read a JSON body."""
    admin = admin_headers()
    json_only = {"Content-Type": "application/json"}
    return [("POST", "/ticket", admin), ("GET", "/denylist", admin), ("POST", "/denylist", admin),
            ("DELETE", "/denylist", admin), ("POST", "/realms", admin),
            ("POST", "/publish", admin), ("POST", "/call", admin),
            ("POST", "/ticket", json_only), ("POST", "/realms", json_only), ("POST", "/publish", json_only)]


@pytest_twisted.inlineCallbacks
def test_json_nested_thousands_deep_is_a_400_naming_the_limit(router):
    for body in (DEEP, TOO_DEEP):
        for method, target, headers in deep_cases():
            status, _, answer = yield request(router.ws_port, method, target, body, headers)
            assert status == 400, (method, target, status, answer)
            assert f"nested more than {MAX_DEPTH} levels" in answer.decode(), (method, target, answer)
        for path in ("/publish", "/call"):  # signed as Crossbar's clients sign: the body is read first
            status, _, answer = yield request(router.ws_port, "POST", signed(path, body), body,
                                              {"Content-Type": "application/json"})
            assert status == 400 and b"nested more than" in answer, (path, status, answer)


@pytest_twisted.inlineCallbacks
def test_a_webhook_body_too_deep_for_json_is_passed_on_as_text(router):
    # A webhook carries any body: JSON it cannot use is passed on as the text it is.
    session = yield connect_ws(router, realm="management", authmethods=["ticket"], ticket=token(**ADMIN))
    events = []
    yield session.subscribe(lambda **kw: events.append(kw), "com.example.hook")
    for body in (DEEP, TOO_DEEP):
        status, _, answer = yield request(router.ws_port, "POST", "/webhook/open", body,
                                          {"Content-Type": "application/json"})
        assert status == 202, answer
    yield eventually(lambda: len(events) == 2)
    assert [e["body"] for e in events] == [DEEP.decode(), TOO_DEEP.decode()]
    status, _, answer = yield request(router.ws_port, "POST", "/webhook/github", DEEP,
                                      {"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00"})
    assert status == 401, answer


@pytest.mark.parametrize("realm", [[], {}, ["management"], 7, True])
@pytest_twisted.inlineCallbacks
def test_a_realm_that_is_not_a_string_is_a_400_naming_it(router, realm):
    cases = [("/ticket", {"realm": realm}), ("/publish", {"realm": realm, "topic": "com.example.t"}),
             ("/call", {"realm": realm, "procedure": "com.example.p"})]
    for path, body in cases:
        status, _, answer = yield request(router.ws_port, "POST", path, json.dumps(body).encode(), admin_headers())
        assert status == 400, (path, status, answer)
        assert "'realm' must be a string" in answer.decode(), answer
    status, _, answer = yield request(router.ws_port, "POST", "/realms",
                                      json.dumps({"name": "acme", "template": realm}).encode(), admin_headers())
    assert status == 400 and b"template" in answer, answer


@pytest_twisted.inlineCallbacks
def test_an_authorization_header_that_is_not_utf8(router):
    bad = {"Authorization": b"Bearer \xff\xfe\xc3("}
    status, _, answer = yield request(router.ws_port, "GET", "/health", headers=bad)
    assert (status, json.loads(answer)) == (200, {"status": "ok"})  # and no details: not privileged
    status, _, answer = yield request(router.ws_port, "GET", "/ready", headers=bad)
    assert status in (200, 503) and "problems" not in json.loads(answer)
    status, _, answer = yield request(router.ws_port, "GET", "/metrics", headers=bad)
    assert status == 401 and json.loads(answer)["error"] == "unauthorized"
    for method, target in (("POST", "/ticket"), ("GET", "/denylist"), ("POST", "/publish"), ("GET", "/realms")):
        status, _, answer = yield request(router.ws_port, method, target, b"{}", dict(bad, **{
            "Content-Type": "application/json"}))
        assert status == 400, (target, status, answer)
        answer = json.loads(answer)
        assert answer.get("message", answer.get("args", [None])[0]) == "the Authorization header is not valid UTF-8"


@pytest_twisted.inlineCallbacks
def test_a_query_parameter_that_is_not_utf8_is_a_400_naming_it(router):
    status, _, answer = yield request(router.ws_port, "POST", "/ticket?realm=%ff%fe", b"", admin_headers())
    assert status == 400 and json.loads(answer)["message"] == "?realm= is not valid UTF-8"
    status, _, answer = yield request(router.ws_port, "POST", "/publish?key=%ff", b"{}", admin_headers())
    assert status == 400 and json.loads(answer)["args"] == ["?key= is not valid UTF-8"]


@pytest.mark.parametrize("segment", ["%00", "index.html%00", "%ff", "%00%00/x"])
@pytest_twisted.inlineCallbacks
def test_a_console_path_with_a_nul_or_not_utf8_is_a_404(router, segment):
    status, _, _ = yield request(router.ws_port, "GET", f"/console/{segment}")
    assert status == 404
    status, _, answer = yield request(router.ws_port, "GET", "/console/index.html")
    assert status == 200 and b"<html" in answer.lower()


@pytest.mark.parametrize("ttl", ["1e400", str(2 ** 1100), "NaN", "-Infinity"])
@pytest_twisted.inlineCallbacks
def test_a_deny_list_ttl_no_float_holds_is_a_400(router, ttl):
    body = b'{"claim": "sub", "value": "x", "ttl": ' + ttl.encode() + b"}"
    status, _, answer = yield request(router.ws_port, "POST", "/denylist", body, admin_headers())
    assert status == 400 and b"ttl must be" in answer, answer


@pytest.mark.parametrize("options", [{"exclude": "x"}, {"eligible": 7}, {"retain": "yes"}, {"exclude": [None]}])
@pytest_twisted.inlineCallbacks
def test_bridge_options_of_the_wrong_type_are_a_400(router, options):
    body = json.dumps({"topic": "com.example.t", "options": options}).encode()
    status, _, answer = yield request(router.ws_port, "POST", "/publish", body, admin_headers())
    assert status == 400, answer
    body = json.dumps({"procedure": "com.example.p", "options": {"timeout": 1e300}}).encode()
    status, _, answer = yield request(router.ws_port, "POST", "/call", body, admin_headers())
    assert status == 400 and b"options.timeout" in answer, answer


BRIDGE_PATHS = ("/publish", "/call", "/webhook/open")
ODD_METHODS = ("PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "HEAD", "POST", "GET", "PROPFIND")


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics", "/ticket", "/denylist", "/realms", "/publish",
                                  "/call", "/webhook/open", "/console/", "/console/index.html", "/ws"])
@pytest_twisted.inlineCallbacks
def test_a_method_a_resource_does_not_serve_is_a_405_with_allow_and_json(router, path):
    for method in ODD_METHODS:
        status, head, answer = yield request(router.ws_port, method, path)
        assert status < 500, (method, path, status, answer)
        if status != 405:
            continue
        allow = [line for line in head.split(b"\r\n") if line.startswith(b"allow: ")]
        assert len(allow) == 1, (method, path, head)
        allowed = allow[0][len(b"allow: "):].decode().upper().split(", ")
        assert method not in allowed and allowed, (method, path, allowed)
        if method == "HEAD":  # a HEAD answer has no body
            continue
        body = json.loads(answer)
        if path in BRIDGE_PATHS:  # Crossbar's error shape, as its clients expect (see test_http_bridge.py)
            assert body["error"] == "wamp.error.invalid_argument" and method in body["args"][0], body
        else:
            assert body == {"error": "relayrouter.error.method_not_allowed",
                            "message": f"{method} is not allowed here; use {' or '.join(allowed)}"}


@pytest_twisted.inlineCallbacks
def test_the_methods_twisted_answers_501_are_405_naming_the_allowed_ones(router):
    for method, path, allowed in [("PUT", "/health", b"GET, HEAD"), ("TRACE", "/metrics", b"GET, HEAD"),
                                  ("PATCH", "/ticket", b"OPTIONS, POST"), ("HEAD", "/ticket", b"OPTIONS, POST"),
                                  ("PUT", "/denylist", b"DELETE, GET, HEAD, OPTIONS, POST"),
                                  ("DELETE", "/console/index.html", b"GET, HEAD")]:
        status, head, _ = yield request(router.ws_port, method, path)
        assert (status, b"allow: " + allowed.lower() in head) == (405, True), (method, path, head)


@pytest_twisted.inlineCallbacks
def test_an_origin_that_is_not_utf8_is_judged_like_any_other(router):
    # No [http] origins configured: every origin is let through, this one too.
    for method, path, code in (("POST", "/ticket", 200), ("OPTIONS", "/ticket", 204), ("GET", "/denylist", 200),
                               ("POST", "/publish", 400)):
        status, _, answer = yield request(router.ws_port, method, path, b"{}",
                                          dict(admin_headers(), Origin=b"https://\xff.example"))
        assert status == code, (method, path, status, answer)


@pytest_twisted.inlineCallbacks
def test_a_jwt_whose_claims_are_nested_thousands_deep_is_refused_not_a_crash(router):
    # The failed-login limits read a JWT's claims, unverified, to pick its budget.
    body = base64.urlsafe_b64encode(b"[" * 5000).rstrip(b"=").decode()
    forged = f"eyJhbGciOiJIUzI1NiJ9.{body}.c2ln"
    status, _, answer = yield request(router.ws_port, "POST", "/ticket", b"",
                                      {"Authorization": f"Bearer {forged}"})
    assert status == 401, answer
    with pytest.raises(LeftBeforeJoining) as e:
        yield connect_ws(router, realm="management", authmethods=["ticket"], ticket=forged)
    assert "authentication_failed" in str(e.value)
