"""relayrouter's benchmark suite: one command, side by side, bounded in time.

    python bench/run.py [--against crossbar|ceiling|none] [--scenarios a,b] [--sers json,msgpack]
                        [--reps N] [--quick] [--duration S] [--warmup S]
    python bench/run.py --report bench/results/FILE.json [FILE2.json ...] [--chart FILE.png]

For every repetition, scenario and serializer it runs relayrouter, then the
other router (A B A B ...), each freshly started and pinned to CPU 0, driven
by the Node load generator pinned to CPU 1.  CPU of both, of every other
process (noise), and the router's memory come from /proc at the generator's
marks.  Results are saved as JSON under bench/results/ after every run, and
a table per scenario is printed at the end; ``--chart FILE.png`` draws the
comparison too (bench/chart.py, matplotlib).  See bench/README.md.
"""

import argparse
import datetime
import json
import platform
import resource
import statistics
import subprocess
import sys
import threading
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import procstat, profile  # noqa: E402
from bench.targets import BENCH, CROSSBAR_VERSION, REPO, Target, ensure_crossbar  # noqa: E402

ROUTER_CORE, GENERATOR_CORE = 0, 1
GENERATOR = BENCH / "gen" / "loadgen.js"
RESULTS = BENCH / "results"

# scenario -> (figures shown, the first is the headline; "high"/"low" = which is better; unit)
SCENARIOS = {
    "rpc_latency": ([("p50_us", "low"), ("p99_us", "low")], "µs round trip, 1 call at a time"),
    "rpc_throughput": ([("calls_per_s", "high")], "calls/s, 64 in flight"),
    "rawsocket_rpc_throughput": ([("calls_per_s", "high")], "calls/s over RawSocket, 64 in flight"),
    "pubsub_1to1": ([("events_per_s", "high")], "events/s, 200 B, 1 -> 1"),
    "pubsub_fanout": ([("events_per_s", "high")], "events delivered/s, 200 B, 1 -> 100"),
    "binary_stream": ([("mb_per_s", "high")], "MB/s, 64 KiB binary, 1 -> 1"),
    "pattern_subscriptions": ([("events_per_s", "high")], "events/s 1 -> 1 with 10,000 pattern subscriptions"),
    "idle_sessions": ([("kb_per_session", "low"), ("establish_s", "low")], "router RSS KB per session, 5,000 sessions"),
}
BUSY = 90.0  # a process at or above this CPU% is the bottleneck
NOISY = 20.0  # other processes together above this CPU% make a run suspect


def log(*parts) -> None:
    print("[bench]", *parts, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ one run

def run_once(name: str, scenario: str, ser: str, args, log_path: Path) -> dict:
    target = Target(name, ROUTER_CORE, log_path, args.relayrouter_cmd if name == "relayrouter" else None,
                    args.reactor)
    target.start()
    profile_to = None
    if args.profile and name == "relayrouter":
        profile_to = log_path.with_name(log_path.name.replace("routers.log", f"profile-{scenario}-{ser}.txt"))
    try:
        return drive(target, scenario, ser, args, profile_to)
    finally:
        target.stop()


def drive(target: Target, scenario: str, ser: str, args, profile_to: Path | None = None) -> dict:
    command = ["taskset", "-c", str(GENERATOR_CORE), "node", str(GENERATOR), "--scenario", scenario,
               "--ser", ser, "--url", target.ports.ws_url, "--raw", target.ports.raw_url,
               "--warmup", str(args.warmup), "--duration", str(args.duration)]
    if args.quick:
        command += ["--settle", "1"]
    router_pids = target.pids()
    generator = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=BENCH)
    limit = args.warmup + args.duration + 180 + (300 if scenario == "idle_sessions" else 0)
    watchdog = threading.Timer(limit, generator.kill)  # the generator stops itself; this is the backstop
    watchdog.start()
    marks, result, sampler = {}, None, None
    try:
        for line in generator.stdout:
            message = json.loads(line)
            if "mark" in message:
                marks[message["mark"]] = procstat.snapshot(router_pids, generator.pid)
                if message["mark"] == "start" and profile_to is not None:
                    sampler = profile.start(router_pids[0], args.duration, profile_to, GENERATOR_CORE)
            elif "result" in message:
                result = message["result"]
        generator.wait()
    finally:
        watchdog.cancel()
        if sampler is not None:
            sampler.wait(30)
    out = figures(result, marks, scenario, generator.returncode)
    if sampler is not None and profile_to.exists():
        out["profile"] = str(profile_to)
        log(profile.summarize(profile_to))
    return out


def figures(result: dict | None, marks: dict, scenario: str, returncode: int) -> dict:
    out = dict(result or {"error": "the generator printed no result"})
    if returncode not in (0, 2):
        out.setdefault("error", f"generator exited with {returncode}")
    if "start" in marks and "end" in marks:
        use = procstat.usage(marks["start"], marks["end"], ROUTER_CORE, GENERATOR_CORE)
        out.update(use.as_dict())
        out["bound"] = bound(use, scenario)
        if scenario == "idle_sessions" and out.get("sessions"):
            out["kb_per_session"] = round((use.router_rss_kb_end - use.router_rss_kb_start) / out["sessions"], 2)
    return out


def bound(use: procstat.Usage, scenario: str) -> str:
    if scenario in ("idle_sessions", "rpc_latency"):
        return "-"  # not throughput: nobody is meant to be saturated
    router, generator = use.router_cpu >= BUSY, use.generator_cpu >= BUSY
    if router and generator:
        return "both"
    return "router" if router else ("GEN" if generator else "neither")


# ------------------------------------------------------------------ the suite

def plan(args) -> list[tuple[int, str, str, str]]:
    """(rep, scenario, ser, target) in execution order: relayrouter, other, relayrouter, other ..."""
    names = ["relayrouter"] + ([] if args.against == "none" else [args.against])
    return [(rep, scenario, ser, name)
            for rep in range(args.reps) for scenario in args.scenarios for ser in args.sers for name in names]


def run_suite(args) -> dict:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{stamp}-{args.against}.json"
    log_path = RESULTS / f"{stamp}-routers.log"
    doc = {"meta": machine(args), "runs": []}
    steps = plan(args)
    for i, (rep, scenario, ser, name) in enumerate(steps, 1):
        log(f"{i}/{len(steps)} rep {rep + 1} {scenario} {ser} {name}")
        try:
            figures_ = run_once(name, scenario, ser, args, log_path)
        except Exception as e:  # one failed run must not lose the others
            figures_ = {"error": f"{type(e).__name__}: {e}"}
        doc["runs"].append({"rep": rep, "scenario": scenario, "ser": ser, "router": name, **figures_})
        log("   ", summary(doc["runs"][-1]))
        path.write_text(json.dumps(doc, indent=1))
    log(f"results: {path}")
    return doc


def summary(run: dict) -> str:
    if "error" in run:
        return f"ERROR {run['error']}"
    head = SCENARIOS[run["scenario"]][0][0][0]
    return (f"{head}={run.get(head)} router_cpu={run.get('router_cpu')}% "
            f"gen_cpu={run.get('generator_cpu')}% others={run.get('others_cpu')}% bound={run.get('bound')}")


def machine(args) -> dict:
    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip().splitlines()[-1]
        except Exception:
            return None

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    meta = {
        "when": datetime.datetime.now().isoformat(timespec="seconds"), "host": platform.node(),
        "cpu": cpu, "cores": len(procstat.core_jiffies()) - 1, "python": platform.python_version(),
        "node": version(["node", "--version"]),
        "relayrouter_commit": version(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
        "args": {k: v for k, v in vars(args).items() if k != "report"},
    }
    for package in ("twisted", "autobahn"):
        meta[package] = version([sys.executable, "-c", f"import {package}; print({package}.__version__)"])
    if args.against == "crossbar":
        meta["crossbar"] = CROSSBAR_VERSION  # pinned in its own virtualenv
    return meta


# ------------------------------------------------------------------ tables

def median(runs: list[dict], key: str):
    values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None


def number(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if abs(value) < 1e4 or digits == 0 else f"{value:,.0f}"


def tables(doc: dict) -> str:
    runs = doc["runs"]
    names = list(dict.fromkeys(r["router"] for r in runs))
    other = next((n for n in names if n != "relayrouter"), None)
    out = []
    for scenario, (metrics, unit) in SCENARIOS.items():
        if not any(r["scenario"] == scenario for r in runs):
            continue
        out.append(f"\n== {scenario}: {unit}")
        header = f"{'ser':<8}{'figure':<15}" + "".join(f"{n:>14}" for n in names)
        header += f"{'ratio rr/' + other:>20}" if other else ""
        header += "  " + "  ".join(f"{n[:11] + ' cpu r/gen/oth':>26} {'bound':>8}" for n in names)
        out.append(header)
        for ser in dict.fromkeys(r["ser"] for r in runs):
            for metric, better in metrics:
                out.append(row(runs, scenario, ser, metric, better, names, other))
    meta = doc["meta"]
    out.append(f"\n{meta.get('cpu')} x{meta.get('cores')}; Python {meta.get('python')}, Twisted {meta.get('twisted')}, "
               f"Autobahn {meta.get('autobahn')}, node {meta.get('node')}; relayrouter {meta.get('relayrouter_commit')}"
               + (f"; Crossbar.io {meta['crossbar']}" if meta.get("crossbar") else ""))
    out.append("ratio = relayrouter / other (medians); cpu r/gen/oth = router tree / generator / all other processes "
               f"CPU% (100 = one core; 'noisy' when others > {NOISY:.0f}% in a run); bound: who was >= {BUSY:.0f}% busy.")
    return "\n".join(out)


def row(runs, scenario, ser, metric, better, names, other) -> str:
    chosen = {n: [r for r in runs if r["scenario"] == scenario and r["ser"] == ser and r["router"] == n
                  and "error" not in r] for n in names}
    values = {n: median(chosen[n], metric) for n in names}
    digits = 2 if metric in ("kb_per_session", "establish_s", "mb_per_s") else 0
    text = f"{ser:<8}{metric + (' ↓' if better == 'low' else ' ↑'):<15}"
    text += "".join(f"{number(values[n], digits):>14}" for n in names)
    if other:
        a, b = values["relayrouter"], values[other]
        text += f"{(f'{a / b:.2f}x' if a is not None and b else '-'):>20}"
    for n in names:
        cpu = "/".join(number(median(chosen[n], key)) for key in ("router_cpu", "generator_cpu", "others_cpu"))
        if any((r.get("others_cpu") or 0) > NOISY for r in chosen[n]):
            cpu = "noisy " + cpu
        bounds = ",".join(sorted({r.get('bound', '?') for r in chosen[n]})) or "error"
        text += f"  {cpu:>26} {bounds:>8}"
    return text


# ------------------------------------------------------------------ main

def chart(docs: list[dict], path: Path) -> None:
    from bench.chart import draw

    draw(docs, path, SCENARIOS, median)
    log(f"chart: {path}")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--against", choices=["crossbar", "ceiling", "none"], default="crossbar",
                   help="the router relayrouter is compared with (default crossbar)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated; default: all")
    p.add_argument("--sers", default="json,msgpack", help="serializers (default json,msgpack)")
    p.add_argument("--reps", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--quick", action="store_true", help="1 s warm-up and 3 s measured instead of 2 + 10")
    p.add_argument("--warmup", type=float)
    p.add_argument("--duration", type=float)
    p.add_argument("--reactor", help="run relayrouter on this twistd reactor (twistd --reactor, e.g. asyncio); "
                                     "default: twistd's own (epoll)")
    p.add_argument("--relayrouter-cmd", help="start relayrouter with this instead; {ws} and {raw} are its ports")
    p.add_argument("--profile", action="store_true",
                   help="sample relayrouter with py-spy during each measured window (slows it; see profile.py)")
    p.add_argument("--report", type=Path, nargs="+",
                   help="print the tables of saved result files (and --chart them together) and exit")
    p.add_argument("--chart", type=Path, metavar="FILE.png",
                   help="also draw the comparison as bar charts of ratios to relayrouter (needs matplotlib)")
    args = p.parse_args(argv)
    args.scenarios = args.scenarios.split(",")
    args.sers = args.sers.split(",")
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    return args


def ensure_node_modules() -> None:
    if not (BENCH / "node_modules" / "ws").exists():
        log("npm install (once)")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=BENCH, check=True,
                       stdout=sys.stderr)


def main(argv=None) -> int:
    args = parse(argv)
    if args.report:
        docs = [json.loads(path.read_text()) for path in args.report]
        print("\n".join(tables(doc) for doc in docs))
        if args.chart:
            chart(docs, args.chart)
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 5,000 idle sessions need the sockets
    ensure_node_modules()
    if args.against == "crossbar":
        ensure_crossbar()
    if args.profile and not profile.available():
        log("--profile needs py-spy: pip install py-spy")
        return 2
    doc = run_suite(args)
    print(tables(doc))
    if args.chart:
        chart([doc], args.chart)
    return 1 if any("error" in r for r in doc["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
