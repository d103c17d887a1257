"""The router and every connector started from one directory, as the documentation's commands do.

Nothing names a pid file or a state directory: each twistd plugin writes
``<plugin>.pid`` and keeps ``<plugin>-state`` (relayrouter/runfiles.py), so
none of them stops with twistd's "Another twistd server is running"; a
second process given a state directory already in use stops with one line.
"""

import os
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
