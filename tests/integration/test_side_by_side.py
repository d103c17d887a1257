"""The router and every connector started from one directory, as the documentation's commands do.

Nothing names a pid file or a state directory: each twistd plugin writes
``<plugin>.pid`` and keeps ``<plugin>-state`` (relayrouter/runfiles.py), so
none of them stops with twistd's "Another twistd server is running"; a
second process given a state directory already in use stops with one line.
"""

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from ..connectors.processes import HTTP_LINE, WS_LINE, Child

PLUGINS = ("relayrouter", "iot-agent", "mediator-proxy", "pairing-agent", "decrypt-search")
DECRYPT_SEARCH_TOML = """\
[organisation]
name = "acme"
key_file = "acme.key"

[[topics]]
uri = "com.orders."
match = "prefix"
"""


def twistd(*args) -> list:
    """twistd exactly as typed, with no --pidfile."""
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", *args]


def _wait_file(path: Path, what: str, seconds: float = 30.0) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{what}: {path} never written")


@pytest.fixture
def workdir(tmp_path):
    subprocess_run([sys.executable, "-m", "relayrouter.cli", "keys", "new", "--org", "acme", "--out", "."],
                   tmp_path)
    (tmp_path / "ds.toml").write_text(DECRYPT_SEARCH_TOML)
    return tmp_path


def subprocess_run(argv, cwd) -> None:
    import subprocess

    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2])))
    assert result.returncode == 0, result.stderr


def test_router_and_every_connector_run_from_one_directory(workdir):
    router = Child("router", twistd("relayrouter", "--websocket", "tcp:0:interface=127.0.0.1",
                                    "--realm", "realm1", "--realm", "management"), cwd=workdir)
    started = [router]
    try:
        router.start()
        url = f"ws://127.0.0.1:{router.wait_for(WS_LINE).group(1)}/ws"
        connectors = {
            "iot-agent": ["--mqtt-host", "", "--listen", "tcp:0:interface=127.0.0.1"],
            "mediator-proxy": ["--agent-endpoint", "http://127.0.0.1:9/inbox", "--listen",
                               "tcp:0:interface=127.0.0.1"],
            "pairing-agent": ["--local-service", "http://127.0.0.1:9", "--listen", "tcp:0:interface=127.0.0.1",
                              "--control", "tcp:0:interface=127.0.0.1"],
            "decrypt-search": ["--config", "ds.toml"],
        }
        for name, args in connectors.items():
            child = Child(name, twistd(name, "--router", url, *args), cwd=workdir)
            started.append(child)
            child.start()
            if name != "decrypt-search":  # it serves no HTTP without [http]
                child.wait_for(HTTP_LINE)
        for child, plugin in zip(started, PLUGINS):
            assert _wait_file(workdir / f"{plugin}.pid", plugin) == str(child.proc.pid)
            assert child.running, child.describe()
        for plugin in ("relayrouter", "iot-agent", "mediator-proxy", "decrypt-search"):
            lock = workdir / f"{plugin}-state" / ".lock"
            assert _wait_file(lock, plugin) == str(started[PLUGINS.index(plugin)].proc.pid)

        # A second router in the same directory: its own pid file, the same state directory.
        second = Child("second router", twistd("--pidfile", "second.pid", "relayrouter", "--websocket",
                                               "tcp:0:interface=127.0.0.1"), cwd=workdir)
        second.start()
        assert second.proc.wait(60) == 1
        out = second.output()
        assert f"relayrouter-state is in use by another process (pid {router.proc.pid}); give each process its own" \
               f" --state-dir" in out, out
        assert "Traceback" not in out
        assert not (workdir / "second.pid").exists()
    finally:
        codes = [child.stop() for child in reversed(started)]
    # The router exits 0 on SIGTERM; a connector, as twistd does, by the signal (which systemd counts as clean).
    assert codes[-1] == 0 and set(codes[:-1]) <= {0, -signal.SIGTERM}, [c.describe() for c in started]
    assert not list(workdir.glob("*.pid"))  # each removed its own on the way out


MAILBOX_TOML = """\
[[listeners]]
type = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"

[[realms]]
name = "agents"

[[realms.mailboxes]]
uri = "mailbox.{authid}"
http = "open"
"""


def _http(method: str, url: str, body: bytes | None = None, token: str | None = None) -> tuple[int, dict]:
    import json
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_daemonized_router_keeps_its_durable_store(tmp_path):
    """``twistd relayrouter`` without -n forks after making the service: the store's writer thread,
    started while the service was made, must run in the daemon (it did not: /ready said 503 and
    nothing could be stored)."""
    import re
    import subprocess

    (tmp_path / "router.toml").write_text(MAILBOX_TOML)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    started = subprocess.run([sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                              "relayrouter", "--config", "router.toml"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    pid = int(_wait_file(tmp_path / "relayrouter.pid", "the daemon"))
    try:
        deadline = time.monotonic() + 30
        while not (port := re.search(r"WebSocket at ws://127\.0\.0\.1:(\d+)/",
                                     (tmp_path / "relayrouter.log").read_text())):
            assert time.monotonic() < deadline, (tmp_path / "relayrouter.log").read_text()
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port.group(1)}"
        assert _http("GET", f"{base}/ready") == (200, {"problems": [], "ready": True})
        assert _http("POST", f"{base}/mailbox/mailbox.b?realm=agents", b"kept") == (
            202, {"id": 1, "mailbox": "mailbox.b"})
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while (tmp_path / "relayrouter.pid").exists():
            assert time.monotonic() < deadline, "the daemon did not stop"
            time.sleep(0.05)
    import sqlite3

    with sqlite3.connect(tmp_path / "relayrouter-state" / "relayrouter.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM mailbox_messages").fetchone() == (1,)
    assert "Traceback" not in (tmp_path / "relayrouter.log").read_text()


def test_a_daemonized_connector_keeps_its_state_store(tmp_path):
    """``twistd mediator-proxy`` without -n: its state store, opened while the service was made,
    must write in the daemon (it did not: the proxy never took its mailbox, /endpoint stayed 503)."""
    import subprocess

    router = Child("router", twistd("--pidfile=", "relayrouter", "--config", "router.toml"), cwd=tmp_path)
    (tmp_path / "router.toml").write_text(MAILBOX_TOML.replace('http = "open"', 'http = "open"\n\n'
                                                               '[realms.auth.anonymous]\nrole = "agent"'))
    router.start()
    try:
        url = f"ws://127.0.0.1:{router.wait_for(WS_LINE).group(1)}/ws"
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
        started = subprocess.run([sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                                  "mediator-proxy", "--router", url, "--realm", "agents",
                                  "--agent-endpoint", "http://127.0.0.1:9/", "--listen",
                                  "tcp:0:interface=127.0.0.1"], cwd=tmp_path, env=env, capture_output=True,
                                 text=True, timeout=60)
        assert started.returncode == 0, started.stderr
        pid = int(_wait_file(tmp_path / "mediator-proxy.pid", "the daemon"))
        try:
            log = tmp_path / "mediator-proxy.log"
            deadline = time.monotonic() + 30
            while not (port := re.search(r"listening: http://127\.0\.0\.1:(\d+)/", log.read_text())):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            token = _wait_file(tmp_path / "mediator-proxy-state" / "api-token", "the local API token")
            while (answer := _http("GET", f"http://127.0.0.1:{port.group(1)}/endpoint", token=token))[0] != 200:
                assert time.monotonic() < deadline + 90, (answer, log.read_text())
                time.sleep(0.1)
            assert answer[1]["mailbox"].startswith("mailbox.anonymous-")  # an anonymous session's authid
        finally:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while (tmp_path / "mediator-proxy.pid").exists():
                assert time.monotonic() < deadline, "the daemon did not stop"
                time.sleep(0.05)
    finally:
        router.stop()
    import sqlite3

    with sqlite3.connect(tmp_path / "mediator-proxy-state" / "state.sqlite3") as db:
        assert dict(db.execute("SELECT key, 1 FROM kv"))["options"] == 1  # remembered in the daemon
