"""CPU instructions per message of the router, counted by Valgrind: load-independent.

    python bench/cost.py [--scenarios rpc,pubsub_1to1,pubsub_fanout] [--sers json,msgpack]
                         [--messages N] [--batch B] [--router-cwd DIR] [--python PY] [--json FILE]

Wall-clock figures on a shared machine move with everybody else's load;
instruction counts do not.  For each scenario and serializer this starts
``twistd relayrouter`` under ``valgrind --tool=callgrind`` (from
``--router-cwd``, default this checkout, so two checkouts can be compared),
connects plain WebSocket clients written here, warms up, has callgrind zero
its counters, drives a fixed number of messages, has it dump them, and
divides.  Only the router process is counted.

Scenarios, each like bench/run.py's of the same name:

* ``rpc``: one callee, one caller; CALL -> INVOCATION -> YIELD -> RESULT,
  100-byte argument; the figure is per call (two messages in, two out).
* ``pubsub_1to1``: one publisher, one subscriber, 200-byte payload; per event.
* ``pubsub_fanout``: one publisher, 100 subscribers; per event delivered.

Clients send ``--batch`` messages in one write and wait for all of their
answers before the next batch, so the router reads and writes the same
chunks in every run: the counts repeat to a few parts in ten thousand.
Figures are instructions of this machine's CPython build; compare two
versions measured the same way, never across machines or builds.
"""

import argparse
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgpack

try:
    import orjson
except ImportError:  # pragma: no cover
    orjson = None

REPO = Path(__file__).resolve().parent.parent
HELLO, WELCOME, PUBLISH, SUBSCRIBE, SUBSCRIBED, EVENT = 1, 2, 16, 32, 33, 36
CALL, RESULT, REGISTER, REGISTERED, INVOCATION, YIELD = 48, 50, 64, 65, 68, 70
ROLES = {"caller": {}, "callee": {}, "publisher": {}, "subscriber": {}}
MASK = b"\x37\xfa\x21\x3d"  # fixed, so every run sends the same bytes
FANOUT = 100
SCENARIOS = ("rpc", "pubsub_1to1", "pubsub_fanout")


def log(*parts) -> None:
    print("[cost]", *parts, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ a WAMP client

class Client:
    """One blocking WebSocket WAMP session (just enough of RFC 6455 and WAMP)."""

    def __init__(self, port: int, ser: str, realm: str = "realm1") -> None:
        self.ser = ser
        self.binary = ser == "msgpack"
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Sec-WebSocket-Protocol: wamp.2.{ser}\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"WebSocket upgrade refused: {head[:200]!r}")
        self.buf = bytearray(rest)
        self.send([[HELLO, realm, {"roles": ROLES}]])
        welcome = self.recv()
        if welcome[0] != WELCOME:
            raise RuntimeError(f"no WELCOME: {welcome!r}")

    def encode(self, msg: list) -> bytes:
        if self.binary:
            return msgpack.packb(msg)
        return orjson.dumps(msg) if orjson else json.dumps(msg, separators=(",", ":")).encode()

    def frames(self, messages: list) -> bytes:
        out = bytearray()
        first = 0x82 if self.binary else 0x81
        for msg in messages:
            data = self.encode(msg)
            size = len(data)
            if size < 126:
                out += bytes((first, 0x80 | size))
            elif size < 65536:
                out += bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
            else:
                out += bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
            out += MASK
            mask = int.from_bytes((MASK * (size // 4 + 1))[:size], "big")
            out += (int.from_bytes(data, "big") ^ mask).to_bytes(size, "big")
        return bytes(out)

    def send(self, messages: list) -> None:
        """Several messages in one write."""
        self.sock.sendall(self.frames(messages))

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("the router closed the connection")
        self.buf += chunk

    def recv(self) -> list:
        while True:
            buf = self.buf
            while len(buf) < 2:
                self._fill()
                buf = self.buf
            opcode, size, start = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if size == 126:
                while len(self.buf) < 4:
                    self._fill()
                size, start = int.from_bytes(self.buf[2:4], "big"), 4
            elif size == 127:
                while len(self.buf) < 10:
                    self._fill()
                size, start = int.from_bytes(self.buf[2:10], "big"), 10
            while len(self.buf) < start + size:
                self._fill()
            data = bytes(self.buf[start:start + size])
            del self.buf[:start + size]
            if opcode in (1, 2):
                return msgpack.unpackb(data) if self.binary else json.loads(data)
            if opcode == 8:
                raise RuntimeError(f"the router closed the WebSocket: {data!r}")

    def expect(self, kind: int) -> list:
        msg = self.recv()
        if msg[0] != kind:
            raise RuntimeError(f"expected message type {kind}, got {msg!r}")
        return msg


# ------------------------------------------------------------------ scenarios

class Rpc:
    """Per call: CALL in, INVOCATION out, YIELD in, RESULT out."""

    unit = "call"

    def __init__(self, port: int, ser: str) -> None:
        self.callee, self.caller = Client(port, ser), Client(port, ser)
        self.callee.send([[REGISTER, 1, {}, "bench.cost.echo"]])
        self.callee.expect(REGISTERED)
        self.arg = "x" * 100
        self.request = 0

    def batch(self, size: int) -> int:
        calls = []
        for _ in range(size):
            self.request += 1
            calls.append([CALL, self.request, {}, "bench.cost.echo", [self.arg]])
        self.caller.send(calls)
        yields = [[YIELD, self.callee.expect(INVOCATION)[1], {}, [self.arg]] for _ in range(size)]
        self.callee.send(yields)
        for _ in range(size):
            self.caller.expect(RESULT)
        return size


class PubSub:
    """Per event delivered: PUBLISH in (shared by the receivers), EVENT out."""

    unit = "event"

    def __init__(self, port: int, ser: str, subscribers: int) -> None:
        self.subscribers = [Client(port, ser) for _ in range(subscribers)]
        for sub in self.subscribers:
            sub.send([[SUBSCRIBE, 1, {}, "bench.cost.topic"]])
            sub.expect(SUBSCRIBED)
        self.publisher = Client(port, ser)
        self.payload = "e" * 200
        self.request = 0

    def batch(self, size: int) -> int:
        publications = []
        for _ in range(size):
            self.request += 1
            publications.append([PUBLISH, self.request, {}, "bench.cost.topic", [self.payload]])
        self.publisher.send(publications)
        for sub in self.subscribers:
            for _ in range(size):
                sub.expect(EVENT)
        return size * len(self.subscribers)


def scenario(name: str, port: int, ser: str):
    if name == "rpc":
        return Rpc(port, ser)
    return PubSub(port, ser, 1 if name == "pubsub_1to1" else FANOUT)


# ------------------------------------------------------------------ the router under callgrind

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_router(python: str, cwd: Path, port: int, out_dir: Path, layout: int = 0) -> subprocess.Popen:
    # ``layout`` objects of assorted sizes allocated first move everything the
    # router allocates after them, attribute-cache and dict collisions with it.
    twistd = (f"import sys; _layout = [b'x' * (i % 509) for i in range({layout} * 997)]; "
              "from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()")
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/callgrind.out.%p",
               python, "-c", twistd, "-n", "--pidfile=", "relayrouter",
               "--state-dir", str(out_dir / "state"), "--websocket", f"tcp:{port}:interface=127.0.0.1"]
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    log_file = open(out_dir / "router.log", "wb")
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the router exited ({proc.returncode}); see {out_dir / 'router.log'}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError("the router did not listen within 600 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def control(pid: int, what: str) -> None:
    subprocess.run(["callgrind_control", what, str(pid)], check=True, capture_output=True, timeout=300)


def instructions(dump: Path) -> int:
    for line in dump.read_text().splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {dump}")


def measure(name: str, ser: str, args, layout: int) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="relayrouter-cost-") as tmp:
        out_dir = Path(tmp)
        proc = start_router(args.python, args.router_cwd, port, out_dir, layout)
        try:
            driver = scenario(name, port, ser)
            warmed = 0
            while warmed < args.warmup:
                warmed += driver.batch(args.batch)
            pid = proc.pid
            control(pid, "--zero")
            messages = 0
            while messages < args.messages:
                messages += driver.batch(args.batch)
            control(pid, "--dump")
            dumps = sorted(out_dir.glob(f"callgrind.out.{pid}.*"))
            if not dumps:
                raise RuntimeError("callgrind wrote no dump")
            total = instructions(dumps[-1])
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                (args.keep / f"callgrind.{name}.{ser}.{layout}").write_bytes(dumps[-1].read_bytes())
        finally:
            stop(proc)
    unit = driver.unit
    return {"scenario": name, "ser": ser, "unit": unit, "messages": messages, "instructions": total,
            "per_message": round(total / messages), "batch": args.batch, "layout": layout}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", default=",".join(SCENARIOS))
    p.add_argument("--sers", default="json,msgpack")
    p.add_argument("--messages", type=int, default=4000, help="messages counted per scenario (default 4000)")
    p.add_argument("--warmup", type=int, default=1000, help="calls or events delivered before counting (default 1000)")
    p.add_argument("--batch", type=int, default=16, help="messages per client write (default 16)")
    p.add_argument("--layouts", type=int, default=3,
                   help="runs per scenario, each with the router's memory laid out differently (default 3)")
    p.add_argument("--router-cwd", type=Path, default=REPO, help="the checkout to run (default this one)")
    p.add_argument("--python", default=sys.executable, help="the interpreter that runs the router")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="keep each scenario's callgrind dump there (for callgrind_annotate)")
    args = p.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    results, rows = [], []
    for name in args.scenarios.split(","):
        for ser in args.sers.split(","):
            runs = []
            for layout in range(args.layouts):
                log(f"{name} {ser} layout {layout} ({args.router_cwd})")
                result = measure(name, ser, args, layout)
                log(f"    {result['per_message']:,} instructions per {result['unit']}")
                runs.append(result)
            results += runs
            counts = [r["per_message"] for r in runs]
            rows.append((name, ser, runs[0]["unit"], statistics.mean(counts), min(counts), max(counts)))
    print(f"{'scenario':<16}{'ser':<9}{'instructions per message (mean, min-max of layouts)':>52}")
    for name, ser, unit, mean, low, high in rows:
        print(f"{name:<16}{ser:<9}{mean:>20,.0f} /{unit:<6} {low:,}-{high:,}")
    if args.json:
        args.json.write_text(json.dumps({"router_cwd": str(args.router_cwd), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
