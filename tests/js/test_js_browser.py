"""A real browser: headless Chromium (playwright-core) runs autobahn-browser against the router.

The page (browser/index.html + app.js, served from tests/js on 127.0.0.1)
joins, subscribes, publishes to itself, registers and calls its own
procedures, then calls and publishes to a Node or Python peer the test started.
"""

import pytest

# (browser serializer, peer kind, peer serializer)
CASES = [("json", "node", "msgpack"), ("msgpack", "python", "cbor"), ("cbor", "python", "json")]


@pytest.mark.parametrize(("serializer", "peer_kind", "peer_ser"), CASES)
def test_browser_basic_profile(router, static_server, chromium_bin, node_script, py_peer, tmp_path,
                               serializer, peer_kind, peer_ser):
    prefix = f"com.example.{peer_kind}.browser.{serializer}"
    peer_cfg = {"mode": "serve", "url": router.ws_url, "serializer": peer_ser,
                "prefix": prefix, "expect_events": 1}
    peer = node_script("wamp/peer.js", peer_cfg) if peer_kind == "node" else py_peer(peer_cfg)
    peer.wait_event("ready")

    page_url = (f"{static_server}/browser/index.html?url={router.ws_url}"
                f"&serializer={serializer}&peer={prefix}")
    screenshot = tmp_path / f"browser-{serializer}.png"
    out = node_script("browser/drive.js", {
        "page_url": page_url, "chromium": chromium_bin, "screenshot": str(screenshot),
    }).result()

    assert out["error"] is None, f"the page failed: {out['error']}\nconsole: {out['console']}"
    assert out["page_errors"] == []
    res = out["results"]
    assert res["joined"]["protocol"] == f"wamp.2.{serializer}"
    # Excluded by default, then delivered with exclude_me: false.
    assert res["pubsub"]["seen"] == [{"args": [1, "two", {"three": 3}], "kwargs": {"k": "v", "self": True}}]
    rpc = res["rpc"]
    assert rpc["add2"] == 5
    assert rpc["echo"] == {"args": ["a", 2], "kwargs": {"b": [True, None]}}
    assert rpc["app_error"] == {"error": "com.example.error", "args": ["it failed", 7], "kwargs": {"code": 42}}
    assert rpc["no_such_procedure"]["error"] == "wamp.error.no_such_procedure"
    assert res["peer"] == {"add2": 42, "published": True}
    assert res["leave"]["details"]["reason"] == "wamp.close.goodbye_and_out"

    served = peer.result()
    assert served["events"] == [{"args": ["from", "browser", 42], "kwargs": {"lang": "browser"}}]
    assert screenshot.stat().st_size > 0
