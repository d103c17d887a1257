"""The HTTP bridge: ``POST /publish`` and ``POST /call`` requests/s, signed the Crossbar way.

    python bench/http_bridge.py [--seconds 5] [--clients 8]

Starts, on 127.0.0.1, each as its own process: the router with one bridge key,
and a WAMP service (Autobahn) subscribed to the topic and registering the
procedure. ``--clients`` threads, one keep-alive connection each, send
signed requests back to back (a fresh nonce and HMAC per request, as
crossbarconnect does): publish with a small JSON payload, then call
``com.example.add``. Prints requests/s and p50/p99 latency, and the CPU each
process used (100% = one core).
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import itertools
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.httpload import load  # noqa: E402
from bench.mediator_proxy import Proc, twistd  # noqa: E402
from bench.procstat import CLOCK_TICKS, cpu_ticks  # noqa: E402

SECRET = "bench-bridge-secret-0123456789"
ROUTER_TOML = """
state_dir = "{state}"
[[listeners]]
type = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"
[[realms]]
name = "realm1"
anonymous = true
[http_bridge]
[[http_bridge.keys]]
key = "bench"
secret_env = "BENCH_BRIDGE_SECRET"
realm = "realm1"
role = "anonymous"
"""
SERVICE = r"""
import os, sys
from autobahn.twisted.component import Component, run
component = Component(transports=sys.argv[1], realm="realm1")
received = [0]
@component.on_join
async def joined(session, details):
    await session.subscribe(lambda *a, **kw: received.__setitem__(0, received[0] + 1), "com.example.ticks")
    await session.register(lambda a, b: a + b, "com.example.add")
    os.write(1, b"ready\n")  # not print: Autobahn's logging takes over stdout
run([component], log_level="warn")
"""
_nonces = itertools.count(1)


def signed(path: str, event: dict):
    body = json.dumps(event).encode()
    stamp = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    nonce = str(next(_nonces))
    digest = hmac.new(SECRET.encode(), ("bench" + stamp + "1" + nonce).encode() + body, hashlib.sha256).digest()
    query = f"key=bench&timestamp={stamp}&seq=1&nonce={nonce}&signature={base64.urlsafe_b64encode(digest).decode()}"
    return "POST", f"{path}?{query}", body, {"Content-Type": "application/json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="relayrouter-bench-bridge-"))
    (tmp / "router.toml").write_text(ROUTER_TOML.format(state=tmp / "state"))
    procs = []
    try:
        router = Proc("router", twistd("relayrouter", "--config", str(tmp / "router.toml")),
                      env={"BENCH_BRIDGE_SECRET": SECRET})
        procs.append(router)
        port = int(re.search(r"ws://127\.0\.0\.1:(\d+)/", router.wait_for("WebSocket at ws://")).group(1))
        service = Proc("service", [sys.executable, "-c", SERVICE, f"ws://127.0.0.1:{port}/ws"])
        procs.append(service)
        service.wait_for("ready")
        print("| request | requests/s | p50 ms | p99 ms | CPU router / service |\n|---|---|---|---|---|")
        for label, make in (("POST /publish (signed)",
                             lambda: signed("/publish", {"topic": "com.example.ticks", "args": [1], "kwargs": {"n": 2}})),
                            ("POST /call (signed)",
                             lambda: signed("/call", {"procedure": "com.example.add", "args": [2, 3]}))):
            before = {p.name: cpu_ticks(p.proc.pid) for p in procs}
            r = load(port, make, args.seconds, args.clients)
            cpu = [(cpu_ticks(p.proc.pid) - before[p.name]) / CLOCK_TICKS / args.seconds * 100 for p in procs]
            flag = f" ({r['errors']} errors)" if r["errors"] else ""
            print(f"| {label} | {r['rps']:.0f}{flag} | {r['p50']:.2f} | {r['p99']:.2f} | "
                  f"{cpu[0]:.0f}% / {cpu[1]:.0f}% |")
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()
