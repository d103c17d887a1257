"""A page opened from a file: headless Chromium loads browser/index.html from
file://, so its origin is opaque and its WebSocket upgrade carries
`Origin: null`.

With the default `http.allowed_origins = ["*"]` it joins and does everything
the served page does (pub/sub, RPC, a Python peer). An explicit list admits it
only when it names "null"; otherwise the upgrade is refused with 403 and the
router says which origin it refused.
"""

import os
import sys

import pytest

from conftest import JS_DIR, REPO_ROOT, STARTUP_TIMEOUT, WS_LINE, ChildProcess

APP = "https://app.example.com"


def file_page(ws_url: str, serializer: str = "json", peer: str | None = None) -> str:
    query = f"url={ws_url}&serializer={serializer}" + (f"&peer={peer}" if peer else "")
    return (JS_DIR / "browser" / "index.html").as_uri() + "?" + query


@pytest.fixture
def router_allowing(tmp_path):
    """router_allowing([origins]) -> (ws_url, router child): a router with that http.allowed_origins."""
    children = []

    def start(origins):
        config = tmp_path / f"router-{len(children)}.toml"
        listed = ", ".join(f'"{o}"' for o in origins)
        config.write_text(f'state_dir = "{tmp_path / f"state-{len(children)}"}"\n\n'
                          f'[http]\nallowed_origins = [{listed}]\n\n'
                          '[[listeners]]\ntype = "websocket"\nendpoint = "tcp:0:interface=127.0.0.1"\n\n'
                          '[[realms]]\nname = "realm1"\n')
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        argv = [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; "
                "from twisted.scripts.twistd import run; run()",
                "-n", "--pidfile=", "relayrouter", "--config", str(config)]
        child = ChildProcess(argv, name="router", env=env, cwd=tmp_path, merge_stderr=True, keep=2000)
        children.append(child)
        ws_url = child.wait_for(lambda l: (m := WS_LINE.search(l)) and m.group(1), STARTUP_TIMEOUT,
                                "'relayrouter listening: WebSocket at ...' log line")
        return ws_url, child

    yield start
    for child in children:
        child.stop()


def open_page(node_script, chromium_bin, page_url: str) -> dict:
    assert page_url.startswith("file:///")
    return node_script("browser/drive.js", {"page_url": page_url, "chromium": chromium_bin}).result()


def assert_page_worked(out: dict) -> None:
    assert out["error"] is None, f"the page failed: {out['error']}\nconsole: {out['console']}"
    assert out["page_errors"] == []
    res = out["results"]
    assert res["page_origin"] == "null"
    assert res["pubsub"]["seen"] == [{"args": [1, "two", {"three": 3}], "kwargs": {"k": "v", "self": True}}]
    assert res["rpc"]["add2"] == 5
    assert res["leave"]["details"]["reason"] == "wamp.close.goodbye_and_out"


def test_a_file_page_joins_with_the_default_origins(router, chromium_bin, node_script, py_peer):
    prefix = "com.example.python.file_page"
    peer = py_peer({"mode": "serve", "url": router.ws_url, "serializer": "cbor", "prefix": prefix,
                    "expect_events": 1})
    peer.wait_event("ready")
    out = open_page(node_script, chromium_bin, file_page(router.ws_url, "msgpack", prefix))
    assert_page_worked(out)
    assert out["results"]["joined"]["protocol"] == "wamp.2.msgpack"
    assert out["results"]["peer"] == {"add2": 42, "published": True}
    assert peer.result()["events"] == [{"args": ["from", "browser", 42], "kwargs": {"lang": "browser"}}]


def test_an_explicit_list_without_null_refuses_a_file_page(router_allowing, chromium_bin, node_script):
    ws_url, child = router_allowing([APP])
    out = open_page(node_script, chromium_bin, file_page(ws_url))
    assert out["results"]["page_origin"] == "null"
    assert "joined" not in out["results"]
    assert out["error"] is not None and "connection ended before the join" in out["error"]
    assert any("Unexpected response code: 403" in line for line in out["console"]), out["console"]
    child.wait_for(lambda l: "origin 'null' not allowed (http.allowed_origins)" in l, STARTUP_TIMEOUT,
                   "the router's log line refusing origin 'null'")


def test_an_explicit_list_naming_null_admits_a_file_page(router_allowing, chromium_bin, node_script):
    ws_url, _ = router_allowing([APP, "null"])
    assert_page_worked(open_page(node_script, chromium_bin, file_page(ws_url, "cbor")))
