"""Fixtures for the autobahn-js (Node) and headless-browser tests.

The router runs as a real subprocess (``twistd -n relayrouter``) on
127.0.0.1 port 0; the tests drive it with Node scripts (wamp/*.js), a Python
Autobahn peer (py_peer.py, its own process) and headless Chromium through
playwright-core (browser/drive.js). Every child speaks JSON lines on stdout and
is read by a thread into a queue, so the tests wait on output with a deadline,
never on a sleep; every child is stopped by its PID at teardown.

Missing tools (node, tests/js/node_modules, chromium) skip the tests locally
and fail them when CI=true, so CI never passes by skipping.
"""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections import deque
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parent
REPO_ROOT = JS_DIR.parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"

STARTUP_TIMEOUT = 30.0
SCRIPT_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

WS_LINE = re.compile(r"relayrouter listening: WebSocket at (ws://\S+)")
RAWSOCKET_LINE = re.compile(r"relayrouter listening: rawsocket on .*?port=(\d+)")
ROUTER_FAULT = re.compile(r"Unhandled error|Traceback \(most recent call last\)")

_EOF = object()


def missing_tool(message: str):
    """Fail in CI (a green run must not hide a missing install), skip locally."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: missing tools are an error)", pytrace=False)
    pytest.skip(message)


class ChildProcess:
    """A child whose stdout lines can be awaited with a deadline.

    One reader thread per pipe; stdout lines go to a queue (and a bounded
    history), stderr lines to a bounded history only.
    """

    def __init__(self, argv, *, name: str, env=None, cwd=None, merge_stderr=False, keep=400):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.lines: queue.Queue = queue.Queue()
        self.stdout_tail: deque = deque(maxlen=keep)
        self.stderr_tail: deque = deque(maxlen=keep)
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", bufsize=1,
        )
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True)]
        if not merge_stderr:
            self._readers.append(threading.Thread(target=self._read_stderr, daemon=True))
        for t in self._readers:
            t.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.stdout_tail.append(line)
            self.lines.put(line)
        self.lines.put(_EOF)

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip("\n"))

    def describe(self, last: int = 40) -> str:
        out = "\n".join(list(self.stdout_tail)[-last:])
        err = "\n".join(list(self.stderr_tail)[-last:])
        return (f"{self.name} (pid {self.pid}, exit {self.proc.poll()})\n"
                f"--- stdout (last lines)\n{out}\n--- stderr (last lines)\n{err}")

    def wait_for(self, match, timeout: float, what: str):
        """Return the first truthy match(line) among the coming stdout lines."""
        try:
            while True:
                line = self.lines.get(timeout=timeout)
                if line is _EOF:
                    self.proc.wait(timeout=STOP_TIMEOUT)
                    raise AssertionError(f"{self.name} exited while waiting for {what}\n{self.describe()}")
                found = match(line)
                if found:
                    return found
        except queue.Empty:
            raise AssertionError(
                f"{self.name}: no {what} within {timeout:.0f} s\n{self.describe()}") from None

    def wait_event(self, event: str, timeout: float = STARTUP_TIMEOUT) -> dict:
        return self.wait_for(lambda l: _json_line(l, "event", event), timeout, f'{{"event": "{event}"}}')

    def result(self, timeout: float = SCRIPT_TIMEOUT) -> dict:
        """Wait for the child to exit 0 and return its {"result": ...} line."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.name} did not finish within {timeout:.0f} s\n{self.describe()}") from None
        for t in self._readers:
            t.join(timeout=STOP_TIMEOUT)
        if code != 0:
            raise AssertionError(f"{self.name} failed with exit code {code}\n{self.describe()}")
        for line in reversed(self.stdout_tail):
            found = _json_line(line, "result")
            if found is not None:
                return found["result"]
        raise AssertionError(f"{self.name} printed no result line\n{self.describe()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; only this child's PID."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT)


def _json_line(line: str, key: str, value=None):
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or key not in obj:
        return None
    if value is not None and obj[key] != value:
        return None
    return obj


# ------------------------------------------------------------------ tools

@pytest.fixture(scope="session")
def node_bin() -> str:
    node = shutil.which("node")
    if node is None:
        missing_tool("node is not on PATH (install Node.js >= 20)")
    if not (JS_DIR / "node_modules" / "autobahn").is_dir():
        missing_tool(f"npm packages are not installed: run `npm ci --prefix {JS_DIR}`")
    return node


@pytest.fixture(scope="session")
def chromium_bin(node_bin) -> str:
    if not (JS_DIR / "node_modules" / "playwright-core").is_dir():
        missing_tool(f"playwright-core is not installed: run `npm ci --prefix {JS_DIR}`")
    chosen = os.environ.get("RELAYROUTER_CHROMIUM")
    if chosen:
        if not os.access(chosen, os.X_OK):
            missing_tool(f"RELAYROUTER_CHROMIUM={chosen} is not an executable file")
        return chosen
    for path in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if path and os.access(path, os.X_OK):
            return path
    missing_tool("chromium is not installed (Debian: apt-get install -y chromium; "
                 "or set RELAYROUTER_CHROMIUM to a Chromium binary)")


# ------------------------------------------------------------------ router

class Router:
    def __init__(self, child: ChildProcess, ws_url: str, rawsocket_port: int | None):
        self.child = child
        self.ws_url = ws_url
        self.rawsocket_port = rawsocket_port
        self.log: deque = deque(maxlen=20000)  # router lines since the last test began

    def drain_log(self) -> list[str]:
        while True:
            try:
                line = self.child.lines.get_nowait()
            except queue.Empty:
                return list(self.log)
            if line is not _EOF:
                self.log.append(line)


@pytest.fixture(scope="session")
def router(tmp_path_factory):
    """The real router: twistd relayrouter on 127.0.0.1 port 0 (WebSocket and RawSocket)."""
    state_dir = tmp_path_factory.mktemp("relayrouter-state")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-c", "import sys; sys.argv[0] = 'twistd'; "
            "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "relayrouter", "--state-dir", state_dir,
            "--websocket", "tcp:0:interface=127.0.0.1", "--rawsocket", "tcp:0:interface=127.0.0.1"]
    child = ChildProcess(argv, name="router", env=env, cwd=state_dir, merge_stderr=True, keep=2000)
    try:
        ws_url = child.wait_for(lambda l: (m := WS_LINE.search(l)) and m.group(1), STARTUP_TIMEOUT,
                                "'relayrouter listening: WebSocket at ...' log line")
        port = child.wait_for(lambda l: (m := RAWSOCKET_LINE.search(l)) and m.group(1), STARTUP_TIMEOUT,
                              "'relayrouter listening: rawsocket ...' log line")
        yield Router(child, ws_url, int(port))
    finally:
        child.stop()


@pytest.fixture(autouse=True)
def router_stays_healthy(request):
    """After each test using the router: it still runs and logged no unhandled error."""
    if "router" not in request.fixturenames:
        yield
        return
    router = request.getfixturevalue("router")
    router.drain_log()
    router.log.clear()
    yield
    lines = router.drain_log()
    assert router.child.proc.poll() is None, f"the router exited during the test\n{router.child.describe()}"
    faults = [i for i, line in enumerate(lines) if ROUTER_FAULT.search(line)]
    if faults:
        excerpt = "\n".join(lines[faults[0]: faults[0] + 30])
        pytest.fail(f"the router logged an unhandled error during this test:\n{excerpt}", pytrace=False)


# ------------------------------------------------------------------ children

@pytest.fixture
def spawn():
    """spawn(name, argv) -> ChildProcess; every child is stopped at teardown."""
    children = []

    def start(name, argv, **kw):
        child = ChildProcess(argv, name=name, cwd=JS_DIR, **kw)
        children.append(child)
        return child

    yield start
    for child in children:
        child.stop()


@pytest.fixture
def node_script(node_bin, spawn):
    """node_script(path, config) -> ChildProcess running `node tests/js/<path> '<config JSON>'`."""
    def start(path, config):
        return spawn(f"node {path}", [node_bin, JS_DIR / path, json.dumps(config)])
    return start


@pytest.fixture
def py_peer(spawn):
    """py_peer(config) -> ChildProcess running the Autobahn-Python peer (py_peer.py)."""
    def start(config):
        return spawn(f"py_peer {config.get('mode')}", [sys.executable, JS_DIR / "py_peer.py", json.dumps(config)])
    return start


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture(scope="session")
def static_server():
    """Serves tests/js (the page and node_modules/autobahn-browser) on 127.0.0.1 port 0."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(JS_DIR)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=STOP_TIMEOUT)
