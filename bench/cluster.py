"""RPC and publish/subscribe through one, two and three router nodes joined by NATS.

    python bench/cluster.py [--nodes 1,2,3] [--loops thread,reactor] [--scenarios ...]
                            [--reps 3] [--duration 5] [--warmup 1] [--json FILE] [--prefer-local]

Starts its own ``nats-server`` (loopback, free ports) and ``twistd relayrouter``
nodes from this checkout, and drives them with bench/run.py's Node load
generator (bench/gen/loadgen.js), so a node without ``[cluster]`` is measured
exactly as bench/run.py measures the router. Topologies, for each loop mode:

- ``alone``: one node without ``[cluster]`` (today's router);
- ``N nodes, same node``: N clustered nodes, every end on node A;
- ``N nodes, across``: the publisher (caller) on A, the subscribers (callee)
  on the other nodes, round-robin (1 -> 100 through 3 nodes: 50 on B, 50 on C).
- ``N nodes, callee on every node`` (RPC only): the caller on A, one
  ``roundrobin`` registration with a callee on each node; with
  ``--prefer-local`` the nodes run ``[cluster] prefer_local_callees = true``,
  so A's calls stay on A, else two calls in three cross (with 3 nodes).

Scenarios (``--scenarios``, loadgen's names): ``pubsub_1to1`` (256
publications in flight end to end, 200-byte msgpack payload),
``pubsub_fanout`` (1 -> 100, 64 in flight), ``pubsub_latency`` and
``fanout_latency`` (one publication at a time, the next when all its events
arrived: p50/p99 from writing the PUBLISH to reading each EVENT, one clock,
one process), ``rpc_throughput`` (64 calls in flight) and ``rpc_latency`` (one
at a time, p50/p99 of the round trip). RPC across nodes needs calls across
nodes: where a build has none, the row says so.

Figures: delivered events (or calls) per second in the measured window, and
the CPU time (utime + stime from /proc/<pid>/stat at the generator's marks)
each node, the nats-server and the generator spent per delivered event (per
call), in µs. ``--loops reactor`` runs every node (the alone one too) on
Twisted's asyncio reactor with ``cluster.loop = "reactor"``; ``thread`` on
twistd's default reactor with nats-py on its own thread. Median of
``--reps`` rounds; each round runs every topology of every loop mode once,
on nodes started for it, the loop modes alternating. Nodes are pinned to CPU 0, the generator and nats-server to
CPU 1 (``--no-pin`` to let them float): throughput is what one core gives all
the nodes together; the CPU columns are the figures to read.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/cluster.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procstat import CLOCK_TICKS, all_pids, cpu_ticks  # noqa: E402
from bench.targets import BENCH, REPO  # noqa: E402

GENERATOR = BENCH / "gen" / "loadgen.js"
NODE_CORE, OTHER_CORE = 0, 1
# name -> (loadgen scenario, extra loadgen options, headline figure, per what)
SCENARIOS = {
    "rpc_throughput": ("rpc_throughput", [], "calls_per_s", "call"),
    "rpc_latency": ("rpc_latency", [], "p50_us", "call"),
    "pubsub_1to1": ("pubsub_1to1", [], "events_per_s", "event"),
    "pubsub_fanout": ("pubsub_fanout", ["--subscribers", "100"], "events_per_s", "event"),
    "pubsub_latency": ("pubsub_latency", ["--subscribers", "1"], "p50_us", "event"),
    "fanout_latency": ("pubsub_latency", ["--subscribers", "100"], "p50_us", "event"),
}
NODE_NAMES = "abc"


def log(*parts) -> None:
    print("[cluster-bench]", *parts, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A child process with its output in a file; stopped by its PID."""

    def __init__(self, argv, log_path: Path, core: int | None) -> None:
        self.log = log_path
        pin = ["taskset", "-c", str(core)] if core is not None else []
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(pin + [str(a) for a in argv], stdout=open(log_path, "w"),
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, text: str, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"{self.log}: no {text!r}\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)


def start_nats(tmp: Path, core: int | None) -> tuple[Proc, str]:
    port = free_port()
    nats = Proc([shutil.which("nats-server") or "/usr/sbin/nats-server", "-js", "-sd", tmp / "js",
                 "-a", "127.0.0.1", "-p", port],
                tmp / "nats.log", core)
    nats.wait_for("Server is ready")
    return nats, f"nats://127.0.0.1:{port}"


def start_node(tmp: Path, name: str, nats_url: str | None, loop: str, core: int | None,
               prefer_local: bool = False) -> tuple[Proc, str]:
    port = free_port()
    home = tmp / name
    home.mkdir()
    toml = (f'state_dir = "{home / "state"}"\n[[listeners]]\ntype = "websocket"\n'
            f'endpoint = "tcp:{port}:interface=127.0.0.1"\n')
    if nats_url:
        toml += f'[cluster]\nnats = ["{nats_url}"]\nnode = "{name}"\nloop = "{loop}"\n'
        if prefer_local:
            toml += "prefer_local_callees = true\n"
    (home / "router.toml").write_text(toml)
    reactor = ["--reactor=asyncio"] if loop == "reactor" else []
    node = Proc([sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                 *reactor, "relayrouter", "--config", home / "router.toml"], home / "log", core)
    node.wait_for("relayrouter listening")
    if nats_url:
        node.wait_for(f"cluster: node {name} connected to NATS")
    return node, f"ws://127.0.0.1:{port}/ws"


def others_ticks(mine: set) -> dict:
    return {p: cpu_ticks(p) for p in all_pids() if p not in mine}


def drive(scenario: str, pub_url: str, sub_urls: list[str], pids: dict, args, each: bool = False) -> dict:
    """One loadgen run; its figures plus µs of CPU per delivered event (call) per process.
    ``each``: RPC with a callee on every one of ``sub_urls`` (one roundrobin registration)."""
    name, extra, _, _ = SCENARIOS[scenario]
    if each:
        extra = [*extra, "--callees", "each"]
    command = ["node", str(GENERATOR), "--scenario", name, "--ser", "msgpack", "--url", pub_url,
               "--sub-urls", ",".join(sub_urls), "--warmup", str(args.warmup), "--duration", str(args.duration),
               *extra]
    if args.pin:
        command = ["taskset", "-c", str(OTHER_CORE), *command]
    generator = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=BENCH)
    pids = {**pids, "gen": generator.pid}
    mine = set(pids.values()) | {os.getpid()}
    marks, result = {}, None
    try:
        for line in generator.stdout:
            message = json.loads(line)
            if "mark" in message:
                marks[message["mark"]] = ({n: cpu_ticks(p) for n, p in pids.items()}, others_ticks(mine),
                                          time.monotonic())
            elif "result" in message:
                result = message["result"]
        generator.wait(args.warmup + args.duration + 120)
    finally:
        if generator.poll() is None:
            generator.kill()
    out = dict(result or {"error": "the generator printed no result"})
    if "start" not in marks or "end" not in marks or "error" in out:
        out.setdefault("error", "no measured window")
        return out
    (before, others0, t0), (after, others1, t1) = marks["start"], marks["end"]
    count = out.get("calls_per_s", out.get("events_per_s", 0)) * out.get("seconds", t1 - t0)
    if not count:
        out["error"] = f"nothing delivered ({out.get('errors', 0)} errors)"
        return out
    for n in pids:
        out[f"us_{n}"] = 1e6 * (after[n] - before[n]) / CLOCK_TICKS / count
    # Every other process of the machine (CPU%, 100 = one core): the noise of the run.
    out["others_cpu"] = 100.0 * sum(t - others0.get(p, 0) for p, t in others1.items()) / CLOCK_TICKS / (t1 - t0)
    return out


def placements(count: int) -> list[tuple[str, list[int]]]:
    """(label, indexes of the nodes the subscribers/callee are on); the publisher is on node 0.
    "callee on every node": RPC only, one roundrobin registration with a callee on each node."""
    out = [("same node", [0])]
    if count > 1:
        out.append(("across", list(range(1, count))))
        out.append(("callee on every node", list(range(count))))
    return out


def measure(topology: str, scenario: str, pub_url: str, sub_urls: list[str], pids: dict, args,
            runs: dict) -> None:
    """One run, kept under (topology, scenario) with the other rounds' runs."""
    each = topology.endswith("callee on every node")
    if each and not scenario.startswith("rpc"):
        return
    if scenario.startswith("rpc") and not each:
        sub_urls = sub_urls[:1]  # one callee
    earlier = runs.setdefault((topology, scenario), [])
    if earlier and all("error" in r for r in earlier):
        return  # e.g. calls do not cross nodes in this build: repeating says nothing new
    run = drive(scenario, pub_url, sub_urls, pids, args, each)
    log(f"  {topology} | {scenario} | round {len(earlier) + 1}: " + (run.get("error") or ", ".join(
        f"{k}={run[k]:,.1f}" for k in run if k.startswith("us_") or k in (SCENARIOS[scenario][2], "p99_us"))))
    earlier.append(run)


def medians(runs: dict) -> list:
    results = []
    for (topology, scenario), done in runs.items():
        good = [r for r in done if "error" not in r]
        row = {"topology": topology, "scenario": scenario, "runs": len(good)}
        if not good:
            row["error"] = done[0]["error"]
        else:
            keys = {k for r in good for k, v in r.items() if isinstance(v, (int, float))}
            row.update({k: statistics.median(r[k] for r in good if k in r) for k in sorted(keys)})
        results.append(row)
    return results


def run_round(loop: str, nats_url: str, tmp: Path, args, runs: dict) -> None:
    """Every topology of one loop mode once, on nodes started for it."""
    core = NODE_CORE if args.pin else None
    stamp = f"{loop}-{len(list(tmp.iterdir()))}"  # node directories are fresh every round
    if args.alone:
        node, url = start_node(tmp, f"alone-{stamp}", None, loop, core)
        try:
            for scenario in args.scenarios:
                measure(f"{loop}: alone (no [cluster])", scenario, url, [url], {"A": node.pid}, args, runs)
        finally:
            node.stop()
    for count in args.nodes:
        nodes = []
        try:
            for i in range(count):
                nodes.append(start_node(tmp, f"{stamp}-{count}{NODE_NAMES[i]}", nats_url, loop, core,
                                        args.prefer_local))
            time.sleep(2)  # heartbeats: every node has heard the others
            pids = {NODE_NAMES[i].upper(): proc.pid for i, (proc, _) in enumerate(nodes)}
            pids["nats"] = args.nats_pid
            for label, where in placements(count):
                for scenario in args.scenarios:
                    measure(f"{loop}: {count} node{'s' if count > 1 else ''}, {label}", scenario, nodes[0][1],
                            [nodes[i][1] for i in where], pids, args, runs)
        finally:
            for proc, _ in nodes:
                proc.stop()


def table(results: list) -> str:
    lines = [f"{'topology':<34} {'scenario':<15} {'figure':>16} {'p99 µs':>8}  "
             f"{'µs CPU per event/call: A':>25} {'B':>6} {'C':>6} {'nats':>6} {'gen':>6} {'others%':>8}"]
    for r in results:
        if "error" in r:
            lines.append(f"{r['topology']:<34} {r['scenario']:<15} {'n/a: ' + r['error'][:90]}")
            continue
        head = SCENARIOS[r["scenario"]][2]
        figure = f"{r[head]:,.0f} {'p50 µs' if head == 'p50_us' else '/s'}"
        cells = [f"{r[k]:.1f}" if k in r else "-" for k in ("us_A", "us_B", "us_C", "us_nats", "us_gen")]
        p99 = f"{r['p99_us']:,.0f}" if "p99_us" in r else "-"
        lines.append(f"{r['topology']:<34} {r['scenario']:<15} {figure:>16} {p99:>8}  {cells[0]:>25} "
                     f"{cells[1]:>6} {cells[2]:>6} {cells[3]:>6} {cells[4]:>6} {r.get('others_cpu', 0):>8.0f}")
    return "\n".join(lines)


# ------------------------------------------------------------------ projection

def _cost(results: list, loop: str, topology: str, scenario: str, node: str) -> float | None:
    for r in results:
        if r["topology"] == f"{loop}: {topology}" and r["scenario"] == scenario and "error" not in r:
            return r.get(f"us_{node}")
    return None


def project(results: list, loop: str, sizes=(1, 2, 3, 4, 8, 16)) -> list[dict]:
    """Events/s that N nodes on N machines would deliver, from the per-node
    CPU costs measured here (README, "Scale-out", states the assumptions):
    every node has one core to itself and is the limit (not NATS, not the
    network); publishers and subscribers spread evenly over the nodes.

    1 -> 1 (and RPC, caller and callee): each pair's ends on two random
    nodes; a pair on one node costs that node ``same`` µs per event, a pair
    across costs the publisher's node ``pub`` and the subscriber's ``recv``.
    1 -> 100: the 100 subscribers of each publication spread over the N
    nodes.  The publisher's node pays P + k*e for k local deliveries, every
    other node R + k*f; P, e from the same-node and across runs, R, f from
    the 2-node and 3-node across runs (100 and 50 deliveries on B).
    ``nats_cores``: the nats-server CPU that rate needs, at its cost here
    (1 -> 100: per publication and receiving node, from the 3-node run)."""
    c = lambda topology, scenario, node: _cost(results, loop, topology, scenario, node)  # noqa: E731
    out = []
    for label, scenario in (("1->1", "pubsub_1to1"), ("rpc", "rpc_throughput")):
        same = c("2 nodes, same node", scenario, "A")
        pub, recv = c("2 nodes, across", scenario, "A"), c("2 nodes, across", scenario, "B")
        nats_1 = c("2 nodes, across", scenario, "nats")
        alone = c("alone (no [cluster])", scenario, "A")
        if None in (same, pub, recv, nats_1, alone):
            continue
        for n in sizes:
            crossing = (n - 1) / n
            per_event = (1 - crossing) * same + crossing * (pub + recv)
            rate = n * 1e6 / per_event
            out.append({"scenario": label, "nodes": n, "us_per_event": per_event, "events_per_s": rate,
                        "vs_alone": rate / (1e6 / alone), "nats_cores": rate * crossing * nats_1 / 1e6})
    fan_same = c("2 nodes, same node", "pubsub_fanout", "A")
    fan_pub = c("2 nodes, across", "pubsub_fanout", "A")
    fan_b2, fan_b3 = c("2 nodes, across", "pubsub_fanout", "B"), c("3 nodes, across", "pubsub_fanout", "B")
    nats_3 = c("3 nodes, across", "pubsub_fanout", "nats")
    fan_alone = c("alone (no [cluster])", "pubsub_fanout", "A")
    if None not in (fan_same, fan_pub, fan_b2, fan_b3, nats_3, fan_alone):
        big_p = 100 * fan_pub  # µs per publication, no local subscriber
        e = (100 * fan_same - big_p) / 100
        f = (100 * fan_b2 - 100 * fan_b3) / 50  # B: R + 100 f with 2 nodes, R + 50 f with 3
        big_r = 100 * fan_b2 - 100 * f
        nats_per_node = 100 * nats_3 / 2  # per publication and receiving node (in and out together)
        for n in sizes:
            k = 100 / n
            per_publication = big_p + k * e + (n - 1) * (big_r + k * f)
            rate = n * 1e6 * 100 / per_publication
            out.append({"scenario": "1->100", "nodes": n, "us_per_event": per_publication / 100,
                        "events_per_s": rate, "vs_alone": rate / (1e6 / fan_alone),
                        "nats_cores": (n - 1) * nats_per_node * rate / 100 / 1e6})
    return out


def projection_table(results: list, loops) -> str:
    lines = [f"{'loop':<8} {'scenario':<8} {'N nodes':>7} {'µs CPU/event':>13} {'events/s':>12} "
             f"{'x one node alone':>17} {'nats-server cores':>18}"]
    for loop in loops:
        for p in project(results, loop):
            lines.append(f"{loop:<8} {p['scenario']:<8} {p['nodes']:>7} {p['us_per_event']:>13.1f} "
                         f"{p['events_per_s']:>12,.0f} {p['vs_alone']:>17.2f} {p['nats_cores']:>18.2f}")
    return "\n".join(lines)


def markdown(results: list) -> str:
    """The README's table: one row per topology and scenario."""
    lines = ["| topology | scenario | figure | p99 µs | µs CPU per event (call): A | B | C | nats-server |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['topology']} | {r['scenario']} | n/a | | | | | |")
            continue
        head = SCENARIOS[r["scenario"]][2]
        figure = f"{r[head]:,.0f} µs p50" if head == "p50_us" else f"{r[head]:,.0f}/s"
        cells = [f"{r[k]:.1f}" if k in r else "—" for k in ("us_A", "us_B", "us_C", "us_nats")]
        p99 = f"{r['p99_us']:,.0f}" if "p99_us" in r else ""
        lines.append(f"| {r['topology']} | {r['scenario']} | {figure} | {p99} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="1,2,3", help="cluster sizes (default 1,2,3)")
    parser.add_argument("--loops", default="thread", help="thread and/or reactor (default thread)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated; default: all")
    parser.add_argument("--no-alone", dest="alone", action="store_false", help="skip the node without [cluster]")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--prefer-local", action="store_true",
                        help="clustered nodes with [cluster] prefer_local_callees = true")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--report", help="print the table of a --json file and exit")
    parser.add_argument("--markdown", action="store_true", help="with --report: as a Markdown table")
    args = parser.parse_args()
    if args.report:
        results = json.loads(Path(args.report).read_text())["results"]
        if args.markdown:
            print(markdown(results))
            return 0
        print(table(results) + "\n\nProjected, N nodes on N machines (see project()):\n"
              + projection_table(results, dict.fromkeys(r["topology"].split(":")[0] for r in results)))
        return 0
    args.nodes = [int(n) for n in args.nodes.split(",")]
    args.loops = args.loops.split(",")
    args.scenarios = args.scenarios.split(",")
    if set(args.scenarios) - set(SCENARIOS) or set(args.loops) - {"thread", "reactor"} \
            or not set(args.nodes) <= {1, 2, 3}:
        parser.error(f"scenarios: {', '.join(SCENARIOS)}; loops: thread, reactor; nodes: 1, 2, 3")
    if not (BENCH / "node_modules" / "ws").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=BENCH, check=True, stdout=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))  # the finally blocks stop our processes
    tmp = Path(tempfile.mkdtemp(prefix="rr-bench-cluster-"))
    runs: dict = {}
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    nats, nats_url = start_nats(tmp, OTHER_CORE if args.pin else None)
    args.nats_pid = nats.pid
    try:
        for rep in range(args.reps):  # rounds alternate the loop modes, so both see the same noise
            for loop in args.loops:
                log(f"round {rep + 1}/{args.reps}, {loop}")
                run_round(loop, nats_url, tmp, args, runs)
    finally:
        nats.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results = medians(runs)
    print(table(results) + "\n\nProjected, N nodes on N machines (see project()):\n"
          + projection_table(results, args.loops))
    if args.json:
        meta = {"started": started, "load": os.getloadavg(), "reps": args.reps, "duration": args.duration,
                "pinned": args.pin, "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                                             capture_output=True, text=True).stdout.strip()}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    return 1 if any("error" in r and not r["scenario"].startswith("rpc") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
