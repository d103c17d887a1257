"""The remote-lab relay: raw fan-out and tunnel throughput.

    python bench/relay.py [--seconds 5] [--readers 100] [--only fanout,tunnel]

Fan-out: one raw writer and ``--readers`` raw readers on one topic, all through
the seed's access flow (POST for a code, then the WebSocket), from a Node load
generator (bench/gen/relay_fanout.js with ``ws``) pinned to CPU 1, the router
(twistd, a [relay] config) pinned to CPU 0. The writer runs a closed loop: at
most 128 frames per reader not yet received (so the figure is what the relay
delivers, not what slow readers lose); readers count what they get; drops for
slow readers are read from ``/status`` and printed. Reports frames/s and MB/s delivered to
all readers together, for 1 KiB and 64 KiB frames, and the router's CPU.

Tunnel: 256 MB pushed through ``relayrouter tunnel host`` + ``client``
(three processes: router, host, client) into a TCP sink, against the floor of
the same copy over a direct loopback TCP connection.

Everything on 127.0.0.1; every process is stopped by its PID.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jwt as pyjwt  # noqa: E402

from bench.mediator_proxy import Proc, twistd  # noqa: E402
from bench.procstat import CLOCK_TICKS, cpu_ticks  # noqa: E402

SECRET = "bench-relay-secret-0123456789abcdef-0123456789abcdef"
AUDIENCE = "relayrouter-bench"
CONFIG = """
state_dir = "{state}"
[[listeners]]
type = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"
[[realms]]
name = "lab"
[realms.auth.jwt]
algorithms = ["HS256"]
audience = "{aud}"
authrole_claim = "role"
authrole = "relay"
[[realms.auth.jwt.keys]]
secret_env = "RELAY_SECRET"
[[realms.roles]]
name = "relay"
[[realms.roles.rules]]
uri = "relay.session.{{topic}}"
scopes = {{ read = ["subscribe"], write = ["publish"] }}
[[realms.roles]]
name = "tunnel-host"
[[realms.roles.rules]]
uri = "tunnel.bench."
match = "prefix"
allow = ["register"]
[[realms.roles]]
name = "user"
[[realms.roles.rules]]
uri = "tunnel.bench."
match = "prefix"
allow = ["call"]
[relay]
realm = "lab"
stats_interval = 0
"""


def token(**claims) -> str:
    now = int(time.time())
    return pyjwt.encode({"aud": AUDIENCE, "iat": now, "exp": now + 3600, **claims}, SECRET, algorithm="HS256")


def practable(scopes, bid) -> str:
    return token(topic="bench", prefix="session", scopes=scopes, booking_id=bid)


def pinned(cpu: int, argv: list) -> list:
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") and os.cpu_count() >= 2 else argv


def start_router(tmp: Path) -> tuple[Proc, int]:
    (tmp / "relay.toml").write_text(CONFIG.format(state=tmp / "state", aud=AUDIENCE))
    router = Proc("router", pinned(0, twistd("relayrouter", "--config", str(tmp / "relay.toml"))),
                  env={"RELAY_SECRET": SECRET})
    line = router.wait_for("relayrouter listening: WebSocket at")
    port = int(re.search(r"ws://127\.0\.0\.1:(\d+)/", line).group(1))
    return router, port


def fanout(port: int, router: Proc, readers: int, size: int, seconds: float) -> dict:
    cfg = {"access": f"http://127.0.0.1:{port}/session/bench", "writer_token": practable(["write"], "w"),
           "reader_token": practable(["read"], "r"), "readers": readers,
           "stats_token": token(scopes=["relay:stats"]), "size": size,
           "warmup": 2, "seconds": seconds, "max_buffered": 1024 * 1024}
    import resource

    before = cpu_ticks(router.proc.pid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    out = subprocess.run(pinned(1, ["node", str(ROOT / "bench/gen/relay_fanout.js"), json.dumps(cfg)]),
                         capture_output=True, text=True, timeout=seconds + 120, cwd=ROOT / "bench")
    elapsed = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"load generator failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])["result"]
    result["router_cpu"] = (cpu_ticks(router.proc.pid) - before) / CLOCK_TICKS / elapsed
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["loadgen_cpu"] = (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / elapsed
    return result


# ------------------------------------------------------------------ tunnel

TOTAL = 256 * 1024 * 1024
BLOCK = 256 * 1024


def sink() -> tuple[socket.socket, dict]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    state = {"bytes": 0, "done": threading.Event()}

    def serve():
        conn, _ = server.accept()
        conn.sendall(b"SSH-2.0-sink\r\n")  # servers speak first
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            state["bytes"] += len(data)
            if state["bytes"] >= TOTAL:
                break
        conn.close()
        state["done"].set()

    threading.Thread(target=serve, daemon=True).start()
    return server, state


def push(port: int) -> float:
    """Seconds to send TOTAL bytes to 127.0.0.1:port and have the sink count them all."""
    block = os.urandom(BLOCK)
    conn = socket.create_connection(("127.0.0.1", port))
    conn.recv(64)  # the server's greeting
    started = time.monotonic()
    for _ in range(TOTAL // BLOCK):
        conn.sendall(block)
    return started, conn


def copy_rate(target_port: int, server_state: dict, through_port: int) -> float:
    started, conn = push(through_port)
    if not server_state["done"].wait(300):
        raise SystemExit("the sink did not get everything")
    elapsed = time.monotonic() - started
    conn.close()
    return TOTAL / elapsed / 1e6


def tunnel(port: int) -> dict:
    server, state = sink()
    direct = copy_rate(server.getsockname()[1], state, server.getsockname()[1])
    server.close()
    server, state = sink()
    target = server.getsockname()[1]
    listen = free_port()
    common = ["--router", f"ws://127.0.0.1:{port}/ws", "--realm", "lab", "--name", "bench"]
    host = Proc("tunnel host", pinned(1, [sys.executable, "-m", "relayrouter.cli", "tunnel", "host", *common,
                                          "--target", f"127.0.0.1:{target}"]),
                env={"RELAYROUTER_TOKEN": token(sub="host", role="tunnel-host")})
    client = Proc("tunnel client", pinned(1, [sys.executable, "-m", "relayrouter.cli", "tunnel", "client",
                                              *common, "--listen", f"tcp:{listen}:interface=127.0.0.1"]),
                  env={"RELAYROUTER_TOKEN": token(sub="user", role="user")})
    try:
        host.wait_for("Tunnel bench ready")
        client.wait_for("listening on")
        through = copy_rate(target, state, listen)
    finally:
        client.stop()
        host.stop()
        server.close()
    return {"direct_mb_s": direct, "tunnel_mb_s": through}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--readers", type=int, default=100)
    parser.add_argument("--only", default="fanout,tunnel")
    args = parser.parse_args()
    if not (ROOT / "bench/node_modules/ws").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=ROOT / "bench", check=True)
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        router, port = start_router(Path(tmp))
        try:
            if "fanout" in args.only:
                for size in (1024, 65536):
                    r = fanout(port, router, args.readers, size, args.seconds)
                    print(f"fan-out 1 -> {r['readers']} raw readers, {size // 1024} KiB: "
                          f"{r['frames_per_s']:,.0f} frames/s delivered, {r['mb_per_s']:,.1f} MB/s, "
                          f"writer {r['sent_per_s']:,.0f} frames/s ({r['frames_per_s'] / max(1, r['sent_per_s'] * r['readers']):.0%} "
                          f"of what it sent reached every reader), router CPU {r['router_cpu']:.0%}, "
                          f"load generator CPU {r['loadgen_cpu']:.0%}, frames dropped for slow readers {r['dropped_total']:,}",
                          flush=True)
            if "tunnel" in args.only:
                t = tunnel(port)
                print(f"tunnel: {t['tunnel_mb_s']:,.1f} MB/s through relayrouter tunnel; "
                      f"direct TCP copy {t['direct_mb_s']:,.1f} MB/s "
                      f"({t['tunnel_mb_s'] / t['direct_mb_s']:.1%} of the floor)", flush=True)
        finally:
            router.stop()


if __name__ == "__main__":
    main()
