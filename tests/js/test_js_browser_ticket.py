"""The browser-safe ticket flow in headless Chromium: autobahn-browser fetches
a one-time ticket with a JWT (cross-origin, CORS preflight), joins with it,
gets the token's claim rights, and cannot replay it."""

import os
import sys
import time

import jwt as pyjwt
import pytest

from conftest import REPO_ROOT, STARTUP_TIMEOUT, WS_LINE, ChildProcess

SECRET = "browser-test-jwt-secret-0123456789abcdef-012345"


@pytest.fixture
def ticket_router(tmp_path, static_server):
    config = tmp_path / "router.toml"
    config.write_text(f"""
state_dir = "{tmp_path / 'state'}"

[http]
allowed_origins = ["{static_server}"]

[[listeners]]
type = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"

[[realms]]
name = "realm1"

[realms.auth.jwt]
algorithms = ["HS256"]
audience = "relayrouter"
authrole = "viewer"
keys = [{{ secret_env = "BROWSER_JWT_SECRET" }}]

[realms.auth.one_time_tickets]
lifetime = 30

[[realms.roles]]
name = "viewer"

[[realms.roles.rules]]
uri = "relay.session.{{topic}}"
scopes = {{ read = ["subscribe"], write = ["publish"] }}
""")
    env = dict(os.environ, BROWSER_JWT_SECRET=SECRET)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; "
            "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "relayrouter", "--config", str(config)]
    child = ChildProcess(argv, name="router", env=env, cwd=tmp_path, merge_stderr=True, keep=2000)
    try:
        ws_url = child.wait_for(lambda l: (m := WS_LINE.search(l)) and m.group(1), STARTUP_TIMEOUT,
                                "'relayrouter listening: WebSocket at ...' log line")
        yield ws_url.rsplit("/", 1)[0].replace("ws://", "http://")
    finally:
        child.stop()


def test_browser_fetches_a_one_time_ticket_and_joins(ticket_router, static_server, chromium_bin, node_script):
    now = int(time.time())
    token = pyjwt.encode({"sub": "viewer-1", "aud": "relayrouter", "exp": now + 300,
                          "topic": "lab42", "scopes": ["read"]}, SECRET, algorithm="HS256")
    page_url = f"{static_server}/browser/ticket.html?http={ticket_router}&token={token}"
    out = node_script("browser/drive.js", {"page_url": page_url, "chromium": chromium_bin}).result()
    assert out["error"] is None, f"the page failed: {out['error']}\nconsole: {out['console']}"
    res = out["results"]
    assert res["minted"] == {"expires_in": 30, "realm": "realm1", "has_ticket": True}
    assert res["joined"] == {"authid": "viewer-1", "authrole": "viewer", "authmethod": "ticket"}
    assert res["subscribed"] is True
    assert res["publish"] == "wamp.error.not_authorized"
    assert res["replay"] == "wamp.error.authentication_failed"
    assert res["via_url"] == "viewer-1"
