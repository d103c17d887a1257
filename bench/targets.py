"""The routers the suite can measure, and how to start and stop each one.

A target is started fresh for every run, pinned to one core with ``taskset``,
listening on 127.0.0.1 only: a WebSocket port (path ``/ws``) and a RawSocket
port.  It is stopped with SIGTERM to the PIDs it started, then SIGKILL to
whichever of them is left.
"""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import procstat

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CACHE = Path(os.environ.get("RELAYROUTER_BENCH_CACHE", Path.home() / ".cache" / "relayrouter-bench"))
CROSSBAR_VERSION = "26.10.1"
CROSSBAR_VENV = CACHE / "venv-crossbar"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Ports:
    websocket: int
    rawsocket: int

    @classmethod
    def pick(cls) -> "Ports":
        return cls(free_port(), free_port())

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.websocket}/ws"

    @property
    def raw_url(self) -> str:
        return f"tcp://127.0.0.1:{self.rawsocket}"


# ------------------------------------------------------------------ commands

def relayrouter_command(ports: Ports, reactor: str | None = None) -> list[str]:
    """``twistd relayrouter`` from this checkout, with the interpreter running the suite;
    ``reactor``: twistd's ``--reactor`` (e.g. ``asyncio``), else its default."""
    twistd = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
    chosen = [f"--reactor={reactor}"] if reactor else []
    return [sys.executable, "-c", twistd, "-n", "--pidfile=", *chosen, "relayrouter",
            "--state-dir", str(CACHE / "relayrouter-state"),
            "--websocket", f"tcp:{ports.websocket}:interface=127.0.0.1",
            "--rawsocket", f"tcp:{ports.rawsocket}:interface=127.0.0.1"]


def ceiling_command(ports: Ports) -> list[str]:
    return [sys.executable, str(BENCH / "ceiling.py"),
            "--websocket", str(ports.websocket), "--rawsocket", str(ports.rawsocket)]


def crossbar_command(ports: Ports) -> list[str]:
    node = CACHE / "crossbar-node" / str(ports.websocket)
    node.mkdir(parents=True, exist_ok=True)
    (node / "config.json").write_text(json.dumps(crossbar_config(ports), indent=2))
    return [str(CROSSBAR_VENV / "bin" / "crossbar"), "start", "--cbdir", str(node),
            "--config", "config.json", "--loglevel", "warn"]


def crossbar_config(ports: Ports) -> dict:
    """A minimal node: realm1, anonymous may do anything, JSON and msgpack."""
    everything = {"call": True, "register": True, "publish": True, "subscribe": True}
    anonymous = {"name": "anonymous", "permissions": [
        {"uri": "", "match": "prefix", "allow": everything,
         "disclose": {"caller": False, "publisher": False}, "cache": True}]}
    auth = {"anonymous": {"type": "static", "role": "anonymous"}}
    sizes = {"max_message_size": 16 * 1024 * 1024}
    websocket = {
        "type": "websocket",  # a plain WebSocket transport accepts any path, /ws included
        "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": ports.websocket, "backlog": 4096},
        "serializers": ["json", "msgpack"],
        "options": {"auto_ping_interval": 0, "open_handshake_timeout": 60000,
                    "max_frame_size": 16 * 1024 * 1024, "auto_fragment_size": 0, **sizes},
        "auth": auth,
    }
    rawsocket = {
        "type": "rawsocket",
        "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": ports.rawsocket, "backlog": 4096},
        "serializers": ["json", "msgpack"],
        "options": sizes,
        "auth": auth,
    }
    worker = {"type": "router", "realms": [{"name": "realm1", "roles": [anonymous]}],
              "transports": [websocket, rawsocket]}
    return {"version": 2, "controller": {}, "workers": [worker]}


def ensure_crossbar() -> None:
    """Install Crossbar.io in its own virtualenv, once."""
    if (CROSSBAR_VENV / "bin" / "crossbar").exists():
        return
    print(f"[bench] installing crossbar=={CROSSBAR_VERSION} into {CROSSBAR_VENV} (once)", file=sys.stderr)
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(CROSSBAR_VENV)], check=True)
    subprocess.run([str(CROSSBAR_VENV / "bin" / "pip"), "install", "-q", f"crossbar=={CROSSBAR_VERSION}"],
                   check=True)


COMMANDS = {"relayrouter": relayrouter_command, "crossbar": crossbar_command, "ceiling": ceiling_command}


# ------------------------------------------------------------------ processes

class Target:
    """One router process (tree) started for one run."""

    def __init__(self, name: str, core: int, log_path: Path, command_template: str | None = None,
                 reactor: str | None = None) -> None:
        self.name = name
        self.reactor = reactor  # relayrouter only: twistd --reactor
        self.core = core
        self.log_path = log_path
        self.command_template = command_template  # from --relayrouter-cmd, with {ws} and {raw}
        self.ports = Ports.pick()
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        if self.command_template:
            return shlex.split(self.command_template.format(ws=self.ports.websocket, raw=self.ports.rawsocket))
        if self.name == "relayrouter":
            return relayrouter_command(self.ports, self.reactor)
        return COMMANDS[self.name](self.ports)

    def start(self, timeout: float = 90.0) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["taskset", "-c", str(self.core), *self.command()], cwd=REPO, env=env,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not (port_open(self.ports.websocket) and port_open(self.ports.rawsocket)):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} at start; see {self.log_path}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not listen within {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.1)
        time.sleep(0.5)  # let it finish starting (Crossbar attaches its realm after listening)

    def pids(self) -> list[int]:
        return procstat.process_tree(self.proc.pid) if self.proc else []

    def stop(self, grace: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # Ours: the process we started and its children, each known by (pid, start time)
        # so that a PID reused after they exit is never signalled.
        started = [(pid, procstat.start_time(pid)) for pid in self.pids()]
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        for pid, start in started:
            if start is not None and procstat.start_time(pid) == start:
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(5)
