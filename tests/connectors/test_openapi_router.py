"""The router's OpenAPI document (``GET /openapi.json``) against the real process
the fuzz net drives (every feature of the HTTP site on): a valid OpenAPI 3.1
document; every path the site's tree serves, with every method, either
answers 404/405 or is a documented operation answering as documented; each
documented operation driven with a real request, its answer matching the
documented schema; the reference the docs render lists what the site serves."""

import hashlib
import hmac
import json
import time

import jwt as pyjwt
import pytest

from .. import fuzz_net, openapi_check
from ..relay.support import AUDIENCE
from .test_fuzz_net import JWT_SECRET, SECRETS, admin_token, router  # noqa: F401 (the fixture)

pytestmark = pytest.mark.timeout(300)


def bearer(token: str) -> list:
    return [(b"Authorization", b"Bearer " + token.encode())]


@pytest.fixture(scope="module")
def spec(router):  # noqa: F811
    answer = openapi_check.request(router.port, b"GET", "/openapi.json")
    assert answer.status == 200 and answer.media == "application/json", answer
    found = openapi_check.Spec(answer.json())
    found.check("GET", "/openapi.json", answer)
    return found


def test_the_document_is_valid_openapi_31_and_names_no_configured_value(router, spec):  # noqa: F811
    text = json.dumps(spec.document)
    assert spec.document["openapi"].startswith("3.1")
    for secret in SECRETS.values():
        assert secret not in text
    for configured in ("management", "com.example.hook", "foobar", "/webhook/open", "/webhook/github",
                       "/session/", "relay.example.org", "mailbox.{authid}"):
        assert configured not in text, configured


def test_every_path_the_site_serves_is_documented_and_answers_as_documented(router, spec):  # noqa: F811
    paths = {t.path for t in router.targets} | {"/openapi.json"}
    assert openapi_check.sweep(spec, router.port, paths, bearer(admin_token())) > 40
    # Without a credential too: each documented refusal has its documented shape.
    documented = {p for p in paths if spec.template(p) is not None}
    assert openapi_check.sweep(spec, router.port, documented, [], documented_only=True) > 40
    assert not router.errors(), "\n\n".join(router.errors())


def test_the_reference_document_lists_what_the_site_serves(spec):
    """docs/reference/http.md renders http_doc.reference_document(): the same operations as
    the running router's, the configured names as parameters."""
    from relayrouter.transport import http_doc

    reference = http_doc.reference_document()
    openapi_check.validate_document(reference)
    assert spec.document == reference


def relay_token(scopes, **claims) -> str:
    now = int(time.time())
    return pyjwt.encode({"scopes": list(scopes), "aud": [AUDIENCE], "iat": now, "nbf": now, "exp": now + 600,
                         "topic": "pend00", "prefix": "session", "booking_id": "bk-1", **claims},
                        JWT_SECRET, algorithm="HS256")


def mailbox_token(realm: str, uri: str) -> str:
    return hmac.new(SECRETS["NET_MAILBOX_SECRET"].encode(), f"{realm}\n{uri}".encode(), hashlib.sha256).hexdigest()


def test_each_documented_operation_answers_as_documented(router, spec):  # noqa: F811
    admin = bearer(admin_token())
    metrics = bearer(SECRETS["NET_METRICS_SECRET"])
    json_type = [(b"Content-Type", b"application/json")]
    relay_admin = [(b"Authorization", relay_token(["relay:admin"]).encode())]
    relay_stats = [(b"Authorization", relay_token(["relay:stats"]).encode())]
    relay_user = [(b"Authorization", relay_token(["read", "write"]).encode())]
    exp = str(int(time.time()) + 600)
    calls = [
        ("GET", "/health", [], b"", 200), ("GET", "/health", metrics, b"", 200),
        ("GET", "/ready", [], b"", 200), ("GET", "/ready", metrics, b"", 200),
        ("GET", "/metrics", metrics, b"", 200), ("GET", "/metrics", bearer("wrong"), b"", 401),
        ("GET", "/metrics", [], b"", 401),
        ("POST", "/ticket?realm=management", admin, b"", 200),
        ("POST", "/ticket", admin + json_type, b'{"realm": "lab"}', 403),
        ("POST", "/denylist", admin + json_type, b'{"claim": "sub", "value": "mallory", "ttl": 60}', 200),
        ("GET", "/denylist", admin, b"", 200),
        ("DELETE", "/denylist?claim=sub&value=mallory", admin, b"", 200),
        ("POST", "/realms", admin + json_type, b'{"name": "acme_openapi", "template": "tenant"}', 200),
        ("GET", "/realms", admin, b"", 200),
        ("POST", "/realms", admin + json_type, b'{"name": "acme_openapi", "template": "tenant"}', 409),
        ("DELETE", "/realms/acme_openapi?reason=done", admin, b"", 200),
        ("DELETE", "/realms/acme_openapi", admin, b"", 404),
        ("POST", "/publish?realm=management", admin + json_type,
         b'{"topic": "com.example.x", "args": [1], "kwargs": {"a": 1}}', 200),
        ("POST", "/call?realm=management", admin + json_type,
         b'{"procedure": "wamp.session.count", "args": []}', 200),
        ("POST", "/call?realm=management", admin + json_type, b'{"procedure": "com.example.nobody"}', 404),
        ("POST", "/webhook/open", json_type, b'{"hello": "world"}', 202),
        ("POST", "/webhook/github", json_type, b'{"hello": "world"}', 401),
        ("POST", f"/mailbox/mailbox.agentb/{mailbox_token('management', 'mailbox.agentb')}",
         [(b"Content-Type", b"text/plain")], b"hello", 202),
        ("POST", "/mailbox/mailbox.agentb?realm=management", bearer(mailbox_token("management", "mailbox.agentb"))
         + [(b"Content-Type", b"text/plain")], b"hello", 202),
        ("POST", "/mailbox/mailbox.agentb?realm=management", [], b"hello", 401),
        ("GET", "/console/", [], b"", 200), ("GET", "/console/index.html", [], b"", 200),
        ("GET", "/relay/video.html", [], b"", 200),
        ("POST", "/session/pend00", relay_user, b"", 200),
        ("GET", "/session/pend00", [], b"", 400),
        ("POST", f"/bids/deny?bid=bk-9&exp={exp}", relay_admin, b"", 204),
        ("GET", "/bids/deny", relay_admin, b"", 200),
        ("POST", f"/bids/allow?bid=bk-9&exp={exp}", relay_admin, b"", 204),
        ("GET", "/bids/allow", relay_admin, b"", 200),
        ("POST", "/bids/allow?bid=bk-9", relay_admin, b"", 422),
        ("GET", "/status", relay_stats, b"", 200), ("GET", "/status", relay_user, b"", 403),
        ("GET", "/console", [], b"", 302), ("GET", "/openapi.json", [], b"", 200),
        ("GET", "/micronets/v1/ws-proxy", [], b"", 200), ("GET", "/ws", [], b"", 200),
        ("GET", "/micronets/v1/ws-proxy/m1", [], b"", 200),
        ("OPTIONS", "/ticket", [], b"", 204),
    ]
    seen = set()
    for method, path, headers, body, status in calls:
        answer = openapi_check.request(router.port, method.encode(), path, headers, body)
        assert answer.status == status, (method, path, answer)
        spec.check(method, path, answer)
        seen.add((method.lower(), spec.template(path)))
    documented = {(method, path) for path, item in spec.document["paths"].items() for method in item
                  if method != "parameters"}
    # Every operation is driven here or by the sweep's plain requests (a refusal at least).
    assert {(m, p) for m, p in documented if m in ("get", "post", "delete")} - seen <= {
        ("post", "/webhook"), ("delete", "/realms")}, sorted(documented - seen)
    fuzz_net.still_serves(router.port, router.alive)
    assert not router.errors(), "\n\n".join(router.errors())
