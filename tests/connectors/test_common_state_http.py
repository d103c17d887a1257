"""connectors.common's state dir (SQLite key/value and spools, written off the
reactor thread, durable across kill -9) and its JSON HTTP helpers."""

import json
import os
import stat
import subprocess
import sys

import pytest
import pytest_twisted
import treq
from twisted.internet import defer

from connectors.common import (ConfigError, HttpError, HttpService, JsonResource, JsonRoot, StateStore,
                               StatusResource, read_body)


def test_state_dir_is_created_0700_and_a_loose_one_is_refused(tmp_path):
    store = StateStore(str(tmp_path / "state"))
    store.close()
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "state.sqlite3").st_mode) == 0o600
    (tmp_path / "open").mkdir(mode=0o755)
    os.chmod(tmp_path / "open", 0o755)
    with pytest.raises(ConfigError, match=r"--state-dir: .* accessible by group or others \(mode 0755\); run chmod 700"):
        StateStore(str(tmp_path / "open"))


@pytest_twisted.inlineCallbacks
def test_key_values_and_spools_survive_reopening(tmp_path):
    store = StateStore(str(tmp_path / "s"))
    yield store.put("options", {"router": "ws://x/ws", "n": 1})
    spool = store.spool("outbound")
    seqs = yield defer.gatherResults([spool.append(b"m%d" % i, {"i": i}) for i in range(50)])
    assert seqs == sorted(seqs) and len(spool) == 50
    assert (yield spool.remove(seqs[0])) == 1 and (yield spool.remove(seqs[0])) == 0
    store.close()

    again = StateStore(str(tmp_path / "s"))
    try:
        assert again.get("options") == {"router": "ws://x/ws", "n": 1}
        spool = again.spool("outbound")
        assert len(spool) == 49 and len(again.spool("other")) == 0
        items = yield spool.first(10)
        assert [i.body for i in items] == [b"m%d" % i for i in range(1, 11)] and items[0].meta == {"i": 1}
        later = yield spool.first(100, after=items[-1].seq)
        assert [i.body for i in later] == [b"m%d" % i for i in range(11, 50)]
    finally:
        again.close()


WRITER = """
import sys
from twisted.internet import reactor
from connectors.common import StateStore
store = StateStore(sys.argv[1], reactor)
spool = store.spool("q")
def written(seq):
    print(seq, flush=True)
    go(seq)
def go(_=None):
    spool.append(b"x" * 100, {"n": 1}).addCallback(written)
reactor.callWhenRunning(go)
reactor.run()
"""


def test_what_a_write_confirmed_survives_kill_9(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "s")], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.getcwd()))
    confirmed = []
    try:
        for line in proc.stdout:
            confirmed.append(int(line))
            if len(confirmed) == 200:
                proc.kill()
                break
    finally:
        proc.kill()
        proc.wait()
    store = StateStore(str(tmp_path / "s"))
    try:
        assert len(store.spool("q")) >= 200
    finally:
        store.close()


class Echo(JsonResource):
    def render_POST(self, request):
        body = read_body(request, 16)
        if body == b"teapot":
            raise HttpError(418, "short and stout", error="teapot")
        if body == b"boom":
            raise RuntimeError("secret internal detail")
        return 202, {"got": body.decode()}

    def render_GET(self, request):
        return defer.succeed({"ok": True})


@pytest.fixture
def site():
    root = JsonRoot()
    root.putChild(b"status", StatusResource(lambda: {"status": "ready", "depth": 3}))
    root.putChild(b"echo", Echo())
    http = HttpService("tcp:0:interface=127.0.0.1", root, name="test")
    http.startService()
    port = pytest_twisted.blockon(http.listening)
    yield f"http://127.0.0.1:{port.getHost().port}"
    pytest_twisted.blockon(defer.maybeDeferred(http.stopService))


@pytest_twisted.inlineCallbacks
def get(method, url, data=None):
    response = yield treq.request(method, url, data=data)
    body = yield response.content()
    return response.code, response.headers, json.loads(body)


@pytest_twisted.inlineCallbacks
def test_status_and_json_errors(site, logged_errors):
    # the resource that raises is logged with its traceback; the client is not told
    logged_errors.expect(r"RuntimeError: secret internal detail")
    code, headers, body = yield get("GET", site + "/status")
    assert (code, body) == (200, {"status": "ready", "depth": 3})
    assert headers.getRawHeaders("content-type") == ["application/json"]
    assert (yield get("POST", site + "/echo", b"hi"))[::2] == (202, {"got": "hi"})
    assert (yield get("GET", site + "/echo"))[::2] == (200, {"ok": True})
    assert (yield get("POST", site + "/echo", b"teapot"))[::2] == (418, {"error": "teapot",
                                                                          "message": "short and stout"})
    code, _, body = yield get("POST", site + "/echo", b"x" * 17)
    assert code == 413 and body["error"] == "too_large" and "16 bytes" in body["message"]
    code, _, body = yield get("POST", site + "/echo", b"boom")
    assert code == 500 and "secret" not in body["message"]
    code, headers, body = yield get("DELETE", site + "/echo")
    assert code == 405 and body["error"] == "method_not_allowed"
    assert headers.getRawHeaders("allow") == ["GET, HEAD, POST"]  # HEAD is served wherever GET is
    response = yield treq.request("HEAD", site + "/echo")
    assert response.code == 200
    for method in ("PUT", "PATCH", "OPTIONS", "TRACE"):  # twisted.web would say 501, in HTML
        code, headers, body = yield get(method, site + "/status")
        assert (code, body["error"]) == (405, "method_not_allowed")
        assert headers.getRawHeaders("allow") == ["GET, HEAD"]
        assert body["message"] == f"{method} is not allowed here; use GET or HEAD"
    code, _, body = yield get("GET", site + "/nowhere/at/all")
    assert (code, body["error"]) == (404, "not_found")
    code, _, body = yield get("POST", site + "/status")
    assert code == 405
