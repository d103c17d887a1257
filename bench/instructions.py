"""Instructions per delivered event of each router node, counted by callgrind:
a cost that the load of a shared machine does not change.

    python bench/instructions.py [--events 6000] [--configs alone-epoll,alone-asyncio,...]

Each configuration runs twice, with ``--events`` and with a tenth of it
published (bench/gen/loadgen.js, pubsub_1to1, msgpack, 200-byte payload, at
most 256 in flight end to end), every node under ``valgrind
--tool=callgrind`` (all its threads counted), for the same wall time; the
difference of the two counts divided by the difference of events is the
instructions per event, start-up and idle time cancelled out.  Configurations:

- ``alone-epoll``, ``alone-asyncio``: one node without ``[cluster]`` on
  twistd's default reactor, and on ``--reactor=asyncio``;
- ``same-thread``, ``same-reactor``: one clustered node (its own
  nats-server), publisher and subscriber on it, ``cluster.loop`` thread or
  reactor (the latter on the asyncio reactor);
- ``across-thread``, ``across-reactor``: two clustered nodes, the publisher
  on A, the subscriber on B.

Slow (valgrind runs Python about 50 times slower): a few minutes per configuration.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import GENERATOR, Proc, free_port, start_nats  # noqa: E402
from bench.targets import BENCH  # noqa: E402

CONFIGS = {  # name -> (twistd reactor, cluster.loop or None, nodes)
    "alone-epoll": (None, None, 1),
    "alone-asyncio": ("asyncio", None, 1),
    "same-thread": (None, "thread", 1),
    "same-reactor": ("asyncio", "reactor", 1),
    "across-thread": (None, "thread", 2),
    "across-reactor": ("asyncio", "reactor", 2),
}


def start_node(home: Path, name: str, reactor, loop, nats_url) -> tuple[Proc, str, Path]:
    port = free_port()
    home.mkdir(parents=True)
    toml = (f'state_dir = "{home / "state"}"\n[[listeners]]\ntype = "websocket"\n'
            f'endpoint = "tcp:{port}:interface=127.0.0.1"\n')
    if loop:
        toml += f'[cluster]\nnats = ["{nats_url}"]\nnode = "{name}"\nloop = "{loop}"\n'
    (home / "router.toml").write_text(toml)
    out = home / "callgrind.out"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-line=no",
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
            *([f"--reactor={reactor}"] if reactor else []), "relayrouter", "--config", home / "router.toml"]
    node = Proc(argv, home / "log", None)
    node.wait_for("relayrouter listening", 600)
    if loop:
        node.wait_for(f"cluster: node {name} connected to NATS", 120)
    return node, f"ws://127.0.0.1:{port}/ws", out


def instructions(path: Path) -> int:
    text = path.read_text(errors="replace")
    found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
    if not found:
        raise SystemExit(f"{path}: no instruction total")
    return int(found.group(1))


def one_run(tmp: Path, config: str, events: int, seconds: float) -> dict:
    reactor, loop, count = CONFIGS[config]
    procs, nodes = [], []
    nats_url = None
    try:
        if loop:
            nats, nats_url = start_nats(tmp, None)
            procs.append(nats)
        for i in range(count):
            node = start_node(tmp / f"{config}-{events}-{'ab'[i]}", f"{'ab'[i]}{events}", reactor, loop, nats_url)
            nodes.append(node)
            procs.append(node[0])
        time.sleep(3 if count > 1 else 0.5)
        command = ["node", str(GENERATOR), "--scenario", "pubsub_1to1", "--ser", "msgpack", "--url", nodes[0][1],
                   "--sub-urls", nodes[-1][1], "--warmup", "0", "--duration", str(seconds),
                   "--max-ops", str(events)]
        run = subprocess.run(command, capture_output=True, text=True, cwd=BENCH, timeout=seconds + 600)
        result = [json.loads(line)["result"] for line in run.stdout.splitlines() if '"result"' in line]
        if not result or "error" in result[0]:
            raise SystemExit(f"{config}: the generator failed: {run.stderr[-2000:]}")
        delivered = result[0]["delivered"]
    finally:
        for proc in reversed(procs):
            proc.stop()
    if delivered < events:
        raise SystemExit(f"{config}: only {delivered:.0f} of {events} events delivered in {seconds} s; "
                         "give it more --seconds")
    return {f"node_{'AB'[i]}": instructions(out) for i, (_, _, out) in enumerate(nodes)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--seconds", type=float, default=90, help="wall time of each run (long enough for all)")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rr-bench-instr-"))
    rows = {}
    try:
        for config in args.configs.split(","):
            small = one_run(tmp, config, args.events // 10, args.seconds)
            large = one_run(tmp, config, args.events, args.seconds)
            n = args.events - args.events // 10
            rows[config] = {k: (large[k] - small[k]) / n for k in large}
            print(f"{config:<16} " + "  ".join(f"{k}: {v:,.0f} instructions/event" for k, v in rows[config].items()),
                  flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
