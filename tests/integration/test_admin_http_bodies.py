"""/ticket, /denylist and /realms take small JSON bodies: a larger one is
refused with 413 while it arrives, before the router reads it, and the
endpoint still answers normal requests afterwards."""

import pytest
import pytest_twisted
import treq
from twisted.internet import threads

from relayrouter.transport.tickets import MAX_BODY

from ..security_support import HS_SECRET, ISSUER, http, start, stop, token
from .test_mailboxes import raw_http, refused_413

JWT = {"algorithms": ["HS256"], "audience": "relayrouter", "issuer": ISSUER, "as_ticket": True,
       "authrole_claim": "role", "authrole": "user", "keys": [{"secret_env": "JWT_SECRET"}]}
ADMIN = dict(role="admin", sub="ops")


@pytest.fixture
def router(monkeypatch, tmp_path):
    monkeypatch.setenv("JWT_SECRET", HS_SECRET)
    data = {
        "realms": [{"name": "management", "auth": {"jwt": JWT, "one_time_tickets": {"lifetime": 30}}}],
        "realm_templates": [{"name": "tenant", "auth": {"jwt": dict(JWT, realm_claim="service")}}],
        "tenants": {"admin_roles": ["admin"]},
        "revocation": {"admin_roles": ["admin"], "admin_realm": "management"},
    }
    running = pytest_twisted.blockon(start(data, tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


@pytest.mark.parametrize("path", ["ticket", "denylist", "realms"])
@pytest_twisted.inlineCallbacks
def test_an_oversized_body_is_refused_while_it_arrives(router, path):
    port = router.ws_port
    auth = b"Authorization: Bearer " + token(**ADMIN).encode() + b"\r\n"
    # Announced: 413 at once, not one body byte sent (no 100 Continue either).
    for expect in (b"", b"Expect: 100-continue\r\n"):
        head = (b"POST /" + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + auth + expect + b"Content-Length: 1073741824\r\n\r\n")
        refusal = refused_413((yield threads.deferToThread(raw_http, port, head)))
        assert refusal == {"error": "relayrouter.error.body_too_large",
                           "message": f"the body is 1073741824 bytes; the limit of /{path} is {MAX_BODY} bytes"}
    # Chunked: refused once past the bound, the body never finished.
    head = b"POST /" + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth + b"Transfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (40000, b" " * 40000)
    refusal = refused_413((yield threads.deferToThread(raw_http, port, head, chunk * 2)))
    assert refusal["message"] == f"the chunked body went past {MAX_BODY} bytes; the limit of /{path} is {MAX_BODY} bytes"
    # A real HTTP client sending 16 MiB hears 413 too.
    response = yield treq.post(f"{router.http_url}/{path}", data=b" " * (16 * 1024 * 1024),
                               headers={"Authorization": "Bearer " + token(**ADMIN)})
    assert response.code == 413
    assert (yield response.json())["error"] == "relayrouter.error.body_too_large"
    # Within the bound: the endpoint answers as before.
    body = {"ticket": {"realm": "management"}, "denylist": {"claim": "sub", "value": "x" * 100, "ttl": 60},
            "realms": {"name": "acme"}}[path]
    code, _, answer = yield http("POST", f"{router.http_url}/{path}", bearer=token(**ADMIN), body=body)
    assert code == 200, answer
