"""`twistd relayrouter` as users run it: a real process, real options."""

import os
import re
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import pytest_twisted

from twisted.internet import threads

from ..connectors.processes import waiting_with_the_reactor
from ..support import connect_rawsocket, connect_ws, within

ROOT = Path(__file__).resolve().parents[2]
URL = re.compile(r"WebSocket at (ws://127\.0\.0\.1:(\d+)/(\S+))")
RAW = re.compile(r"rawsocket on IPv4Address\(type='TCP', host='127\.0\.0\.1', port=(\d+)\)")


def twistd(*args, cwd=ROOT, **kwargs):
    """``cwd``: where a router without --state-dir keeps its state (./relayrouter-state): a test's own
    directory, so that routers run side by side (pytest-xdist) never share one."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "relayrouter", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd, **kwargs)


def _lines(proc):
    """The process's output lines, read by a thread so that waiting has a deadline."""
    if not hasattr(proc, "lines"):
        proc.lines = queue.Queue()
        proc.seen = []

        def pump():
            for line in proc.stdout:
                proc.lines.put(line)
            proc.lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
    return proc.lines


def read_until(proc, pattern, seconds=20):
    lines = _lines(proc)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        proc.seen.append(line)
        match = pattern.search(line)
        if match:
            return match, "".join(proc.seen)
    raise AssertionError("router did not print the expected line:\n" + "".join(proc.seen))


class Address:
    def __init__(self, ws_port=None, rawsocket_port=None):
        self.ws_port = ws_port
        self.rawsocket_port = rawsocket_port
        self.ws_url = f"ws://127.0.0.1:{ws_port}/ws"


FAULT = re.compile(r"Unhandled error|Traceback \(most recent call last\)")


def all_output(proc, seconds=20) -> str:
    """Everything the (stopped) process printed."""
    lines = _lines(proc)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        line = lines.get(timeout=left)
        if line is None:
            break
        proc.seen.append(line)
    return "".join(proc.seen)


def assert_no_fault(proc) -> None:
    output = all_output(proc)
    assert not FAULT.search(output), f"the router printed an unhandled error or a traceback:\n{output}"


def stop(proc, seconds=15):
    """SIGTERM; SIGKILL after ``seconds``. The test's reactor runs meanwhile where it can, so its
    sessions answer the router's GOODBYE (see ``waiting_with_the_reactor``)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            waiting_with_the_reactor(proc.wait, seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest_twisted.inlineCallbacks
def test_twistd_runs_listeners_and_realms_from_options(tmp_path):
    proc = twistd("--websocket", "tcp:0:interface=127.0.0.1", "--rawsocket", "tcp:0:interface=127.0.0.1",
                  "--realm", "lab", "--realm", "home", "--state-dir", str(tmp_path / "state"))
    try:
        match, _ = read_until(proc, URL)
        raw, _ = read_until(proc, RAW)
        address = Address(int(match.group(2)), int(raw.group(1)))
        ws = yield connect_ws(address, "msgpack", realm="lab")
        rs = yield connect_rawsocket(address, "cbor", realm="lab")
        yield rs.register(lambda: "pong", "com.example.ping")
        assert (yield ws.call("com.example.ping")) == "pong"
        home = yield connect_ws(address, realm="home")
        assert home.details.realm == "home"
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert_no_fault(proc)


@pytest.mark.xdist_group("port-8080")  # one user of the default port at a time (tests/parallel.py)
def test_default_command_line_prints_the_url(tmp_path):
    # The default listener is port 8080; run it only if that port is free here.
    import socket

    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8080)) == 0:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail("port 8080 is in use: CI must be able to run the default command line", pytrace=False)
            pytest.skip("port 8080 is in use on this machine")
    proc = twistd(cwd=tmp_path)
    try:
        match, output = read_until(proc, URL)
        assert match.group(1) == "ws://127.0.0.1:8080/ws"
        assert "realm1" in output
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_invalid_config_names_the_key(tmp_path):
    config = tmp_path / "router.toml"
    config.write_text('[[realms]]\nname = "ok"\n\n[[realms]]\nname = "bad"\nanonymus = true\n')
    proc = twistd("--config", str(config))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "realms[1].anonymus: unknown key" in out


def test_help_documents_every_option():
    proc = twistd("--help")
    out, _ = proc.communicate(timeout=30)
    for option in ("--websocket", "--rawsocket", "--realm", "--config", "--state-dir", "--max-message-size",
                   "--log-format"):
        assert option in out


@pytest_twisted.inlineCallbacks
def test_sigterm_says_goodbye_to_every_session_and_exits_0(tmp_path):
    proc = twistd("--websocket", "tcp:0:interface=127.0.0.1", "--rawsocket", "tcp:0:interface=127.0.0.1", cwd=tmp_path)
    try:
        match, _ = read_until(proc, URL)
        raw, _ = read_until(proc, RAW)
        address = Address(int(match.group(2)), int(raw.group(1)))
        clients = [(yield connect_ws(address, "json")), (yield connect_rawsocket(address, "msgpack"))]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for client in clients:
            details = yield within(client.left)
            assert details.reason == "wamp.close.system_shutdown"
        code = yield threads.deferToThread(proc.wait, 20)
        assert code == 0
        assert time.monotonic() - started < 10
    finally:
        stop(proc)
    assert_no_fault(proc)
