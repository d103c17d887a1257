"""Real processes for connector tests: the router (``twistd -n relayrouter``)
and connectors (``twistd -n <name>``), each on loopback, read line by line by a
thread so that every wait has a deadline, stopped by their own PID.

The router starts on a port of tests/ports.py (below the range the system gives
out, so no connection's source port takes it while the router is down) and keeps
it across restarts, so a connector's configured URL stays right after ``kill -9``.
"""

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

from ..ports import free_port

ROOT = Path(__file__).resolve().parents[2]
WS_LINE = re.compile(r"relayrouter listening: WebSocket at wss?://127\.0\.0\.1:(\d+)/")
HTTP_LINE = re.compile(r"listening: http://127\.0\.0\.1:(\d+)/")
_EOF = object()


def twistd(*args) -> list:
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", *args]


# Every router started, for the fault check of tests/connectors/conftest.py
# (connectors log their own retries with tracebacks at debug level: only the
# router's output is held to "no traceback").
STARTED: list = []
# What a Twisted process prints when something went wrong that nobody handled.
FAULT = re.compile(r"Unhandled error|Traceback \(most recent call last\)")


class Child:
    """A child process (``twistd -n ...`` by default) whose output lines can be awaited."""

    def __init__(self, name: str, argv, env=None, cwd=None) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(env or {}))
        self.cwd = cwd or ROOT
        self.proc = None
        self.tail: deque = deque(maxlen=600)
        self.all_output: list[str] = []

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        self.lines: queue.Queue = queue.Queue()
        self.proc = subprocess.Popen(
            [str(a) for a in self.argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, encoding="utf-8", errors="replace", env=self.env, cwd=self.cwd, bufsize=1)
        threading.Thread(target=self._pump, args=(self.proc, self.lines), daemon=True).start()

    def _pump(self, proc, lines) -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            self.all_output.append(line)
            lines.put(line)
        lines.put(_EOF)

    def wait_for(self, pattern, seconds: float = 30.0):
        """The match of the first coming line that matches ``pattern`` (a regex or string)."""
        pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is _EOF:
                raise AssertionError(f"{self.name} exited (code {self.proc.wait()}) while waiting for"
                                     f" {pattern.pattern!r}\n{self.describe()}")
            match = pattern.search(line)
            if match:
                return match
        raise AssertionError(f"{self.name}: no line matching {pattern.pattern!r} within {seconds:.0f} s\n"
                             f"{self.describe()}")

    def output(self) -> str:
        return "\n".join(self.all_output)

    def new_faults(self) -> list[str]:
        """Unhandled errors and tracebacks (with the lines after them) printed
        since the last call."""
        lines = list(self.all_output)
        start, self.checked = getattr(self, "checked", 0), len(lines)
        return ["\n".join(lines[i:i + 12]) for i in range(start, len(lines)) if FAULT.search(lines[i])]

    def describe(self) -> str:
        return f"--- {self.name} (pid {self.proc.pid if self.proc else None}), last lines:\n" + "\n".join(self.tail)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, seconds: float = 15.0) -> int | None:
        """SIGTERM, SIGKILL after ``seconds``; the exit code."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_stopped(seconds)

    def wait_stopped(self, seconds: float = 15.0) -> int | None:
        """The exit code once it exited, SIGKILL after ``seconds``.  The test's reactor runs
        meanwhile (see ``waiting_with_the_reactor``): a router stopping says GOODBYE to every
        session and waits for each to close, the test's client sessions included."""
        if self.proc is None:
            return None
        try:
            waiting_with_the_reactor(self.proc.wait, seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(seconds)
        return self.proc.returncode


def stop_together(children, seconds: float = 15.0) -> None:
    """Stop several children at once: SIGTERM to each, then wait for each (SIGKILL after ``seconds``)."""
    for child in children:
        if child.running:
            child.proc.send_signal(signal.SIGTERM)
    for child in children:
        child.wait_stopped(seconds)


def waiting_with_the_reactor(wait, seconds: float):
    """``wait(seconds)``, with this process's reactor running meanwhile when a test runs it
    (pytest-twisted's greenlet) and this is the test's own greenlet: the test's client sessions
    then answer a stopping router's GOODBYE, as a client does, instead of keeping it waiting its
    whole shutdown timeout for them. Elsewhere (a thread, the reactor's greenlet, no reactor) a
    plain wait."""
    pytest_twisted = sys.modules.get("pytest_twisted")
    reactor_greenlet = getattr(getattr(pytest_twisted, "_instances", None), "gr_twisted", None)
    if reactor_greenlet is None or reactor_greenlet.dead or threading.current_thread() is not threading.main_thread():
        return wait(seconds)
    import greenlet
    from twisted.internet import reactor, threads

    if greenlet.getcurrent() is reactor_greenlet or not reactor.running:
        return wait(seconds)
    return pytest_twisted.blockon(threads.deferToThread(wait, seconds))


class RouterProcess(Child):
    """``twistd relayrouter --config`` from a TOML text with ``{port}`` where the
    WebSocket listener's port goes."""

    def __init__(self, tmp_path: Path, toml: str, env=None) -> None:
        super().__init__("router", [], env=env)
        self.dir = tmp_path / "router"
        self.dir.mkdir(exist_ok=True)
        self.toml = toml
        self.port = free_port()
        self.twistd_options: list[str] = []  # before the subcommand, e.g. --reactor=asyncio

    def start(self) -> None:
        config = self.dir / "router.toml"
        config.write_text(self.toml.replace("{port}", str(self.port)).replace("{state}", str(self.dir / "state")))
        self.argv = twistd(*self.twistd_options, "relayrouter", "--config", config)
        super().start()
        STARTED.append(self)
        self.port = int(self.wait_for(WS_LINE).group(1))

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def listener(port_placeholder: str = "{port}") -> str:
    return f'state_dir = "{{state}}"\n\n[[listeners]]\ntype = "websocket"\nendpoint = "tcp:{port_placeholder}:interface=127.0.0.1"\n'


class JsonLines(Child):
    """A child that prints JSON event lines; ``events`` collects them across restarts."""

    def __init__(self, name: str, argv, env=None) -> None:
        super().__init__(name, argv, env=env)
        self.events: list[dict] = []
        self._changed = threading.Condition()

    def _pump(self, proc, lines) -> None:
        for line in proc.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            self.all_output.append(line)
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                if isinstance(event, dict):
                    with self._changed:
                        self.events.append(event)
                        self._changed.notify_all()
            lines.put(line)
        lines.put(_EOF)

    def wait_events(self, predicate, seconds: float = 30.0, what: str = "events"):
        """Block until ``predicate(events)`` is true; returns the events."""
        deadline = time.monotonic() + seconds
        with self._changed:
            while not predicate(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: no {what} within {seconds:.0f} s; got"
                                         f" {self.events[-20:]}\n{self.describe()}")
                self._changed.wait(min(left, 1.0))
            return list(self.events)


class AgentProcess(JsonLines):
    """tests/connectors/agent.py: the twisted.web agent; keeps its port across restarts."""

    def __init__(self) -> None:
        super().__init__("agent", [])
        self.port = free_port()

    def start(self) -> None:
        self.argv = [sys.executable, str(Path(__file__).with_name("agent.py")), str(self.port)]
        super().start()
        self.port = self.wait_events(lambda es: any(e.get("event") == "listening" for e in es[-1:]),
                                     what="listening line")[-1]["port"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/inbox"

    def messages(self) -> list[dict]:
        return [e for e in self.events if e.get("event") == "message"]

    def wait_messages(self, predicate, seconds: float = 30.0, what: str = "messages") -> list[dict]:
        self.wait_events(lambda es: predicate([e for e in es if e.get("event") == "message"]), seconds, what)
        return self.messages()


API_TOKEN = "local-api-token-of-the-tests-0123456789"


class ProxyProcess(Child):
    """``twistd mediator-proxy``; its HTTP port is learnt from the log and kept across restarts.
    Its local API's token is :data:`API_TOKEN` unless ``env`` says otherwise."""

    def __init__(self, tmp_path: Path, args=(), env=None) -> None:
        super().__init__("mediator-proxy", [], env=dict({"MEDIATOR_PROXY_API_TOKEN": API_TOKEN}, **(env or {})))
        self.state_dir = tmp_path / "proxy-state"
        self.args = list(args)
        self.http_port = 0
        self.api_token = self.env["MEDIATOR_PROXY_API_TOKEN"]

    def start(self, args=None, with_state_dir=True) -> None:
        args = self.args if args is None else list(args)
        if with_state_dir:
            args += ["--state-dir", self.state_dir]
        if "--listen" not in args and self.env.get("MEDIATOR_PROXY_LISTEN") is None:
            args += ["--listen", f"tcp:{self.http_port}:interface=127.0.0.1"]
        self.argv = twistd("mediator-proxy", *args)
        super().start()
        self.http_port = int(self.wait_for(HTTP_LINE).group(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def request(self, method: str, path: str, body: bytes | None = None, headers=None):
        """The local API, with the token."""
        headers = dict({"Authorization": f"Bearer {self.api_token}"}, **(headers or {}))
        return http_json(method, self.url + path, body, headers)

    def get(self, path: str):
        return self.request("GET", path)

    def status(self) -> dict:
        return self.get("/status")[1]

    def wait_status(self, predicate, seconds: float = 30.0, what: str = "status"):
        deadline = time.monotonic() + seconds
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"proxy status never showed {what}: {json.dumps(status, indent=1)}\n"
                                     f"{self.describe()}")
            time.sleep(0.05)


def http_json(method: str, url: str, body: bytes | None = None, headers=None):
    """(status, parsed JSON body or None, headers) with urllib, whatever the status."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            code, data, hdrs = response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        code, data, hdrs = e.code, e.read(), e.headers
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = data
    return code, parsed, hdrs
