"""Real processes for connector tests: the router (``twistd -n relayrouter``)
and connectors (``twistd -n <name>``), each on loopback, read line by line by a
thread so that every wait has a deadline, stopped by their own PID.

The router starts on port 0 the first time and keeps the port it got across
restarts, so a connector's configured URL stays right after ``kill -9``.
"""

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

ROOT = Path(__file__).resolve().parents[2]
WS_LINE = re.compile(r"relayrouter listening: WebSocket at ws://127\.0\.0\.1:(\d+)/")
HTTP_LINE = re.compile(r"listening: http://127\.0\.0\.1:(\d+)/")
_EOF = object()


class Child:
    """A ``twistd -n`` child whose output lines can be awaited."""

    def __init__(self, name: str, args, env=None, cwd=None) -> None:
        self.name = name
        self.args = [str(a) for a in args]
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(env or {}))
        self.cwd = cwd or ROOT
        self.proc = None
        self.tail: deque = deque(maxlen=600)
        self.all_output: list[str] = []

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        self.lines: queue.Queue = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
             *self.args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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
            try:
                self.proc.wait(seconds)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(seconds)
        return self.proc.returncode if self.proc else None


class RouterProcess(Child):
    """``twistd relayrouter --config`` from a TOML text with ``{port}`` where the
    WebSocket listener's port goes."""

    def __init__(self, tmp_path: Path, toml: str, env=None) -> None:
        super().__init__("router", [], env=env)
        self.dir = tmp_path / "router"
        self.dir.mkdir(exist_ok=True)
        self.toml = toml
        self.port = 0

    def start(self) -> None:
        config = self.dir / "router.toml"
        config.write_text(self.toml.replace("{port}", str(self.port)).replace("{state}", str(self.dir / "state")))
        self.args = ["relayrouter", "--config", config]
        super().start()
        self.port = int(self.wait_for(WS_LINE).group(1))

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def listener(port_placeholder: str = "{port}") -> str:
    return f'state_dir = "{{state}}"\n\n[[listeners]]\ntype = "websocket"\nendpoint = "tcp:{port_placeholder}:interface=127.0.0.1"\n'
