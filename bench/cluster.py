"""Publish/subscribe through one and two router nodes joined by NATS.

    python bench/cluster.py [--events 20000] [--fanout 20] [--reps 3]

Starts its own ``nats-server`` (loopback, free ports) and ``twistd relayrouter``
nodes from this checkout, and Autobahn clients in this process: one publisher
sends ``--events`` events (no acknowledgement, bursts of 500) to subscribers
on its own node or on the other one. Scenarios:

- ``alone``: one node without ``[cluster]`` (today's router), 1 -> 1;
- ``clustered, same node``: two clustered nodes, publisher and subscriber on A;
- ``across nodes 1->1``: publisher on A, subscriber on B;
- ``across nodes 1->N``: publisher on A, ``--fanout`` subscribers on B.

For each: delivered events/s (the clients share this one Python process and
are usually the limit: compare the CPU columns) and the CPU time each node
spent per 1,000 delivered events (utime+stime from /proc). Median of
``--reps`` runs.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import txaio  # noqa: E402

txaio.use_twisted()
from autobahn.twisted.wamp import ApplicationSession  # noqa: E402
from autobahn.twisted.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp.serializer import MsgPackSerializer  # noqa: E402
from autobahn.wamp.types import ComponentConfig  # noqa: E402
from twisted.internet import defer, endpoints, reactor, task  # noqa: E402

from bench.procstat import CLOCK_TICKS, cpu_ticks  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, argv, log: Path, env=None) -> None:
        self.log = log
        self.proc = subprocess.Popen([str(a) for a in argv], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})), cwd=ROOT)

    def wait_for(self, text: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit(f"{self.log.name}: no {text!r}\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


def start_node(tmp: Path, name: str, nats_url: str | None) -> tuple[Proc, int]:
    port = free_port()
    home = tmp / name
    home.mkdir()
    toml = (f'state_dir = "{home / "state"}"\n[[listeners]]\ntype = "websocket"\n'
            f'endpoint = "tcp:{port}:interface=127.0.0.1"\n')
    if nats_url:
        toml += f'[cluster]\nnats = ["{nats_url}"]\nnode = "{name}"\n'
    (home / "router.toml").write_text(toml)
    node = Proc([sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                 "relayrouter", "--config", home / "router.toml"], home / "log")
    node.wait_for("relayrouter listening")
    if nats_url:
        node.wait_for(f"cluster: node {name} connected to NATS")
    return node, port


class Client(ApplicationSession):
    def onJoin(self, details):
        self.config.extra["joined"].callback(self)


@defer.inlineCallbacks
def connect(port: int):
    joined = defer.Deferred()
    session = Client(ComponentConfig("realm1", {"joined": joined}))
    factory = WampWebSocketClientFactory(lambda: session, url=f"ws://127.0.0.1:{port}/ws",
                                         serializers=[MsgPackSerializer()])
    yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    yield joined
    return session


@defer.inlineCallbacks
def run_once(pub_port, sub_port, subscribers: int, events: int, pids: dict, topic: str):
    publisher = yield connect(pub_port)
    got = [0]
    done = defer.Deferred()
    want = events * subscribers

    def on_event(i):
        got[0] += 1
        if got[0] == want and not done.called:
            done.callback(None)

    sessions = []
    for _ in range(subscribers):
        s = yield connect(sub_port)
        yield s.subscribe(on_event, topic)
        sessions.append(s)
    if pub_port != sub_port:  # the subscriber node's interest must have reached NATS
        probe = defer.Deferred()
        probe_sub = yield sessions[0].subscribe(lambda: probe.called or probe.callback(None), topic + ".probe")
        while not probe.called:
            publisher.publish(topic + ".probe")
            yield task.deferLater(reactor, 0.05, lambda: None)
        yield probe_sub.unsubscribe()
    before = {name: cpu_ticks(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    for i in range(events):
        publisher.publish(topic, i)
        if i % 500 == 499:
            yield task.deferLater(reactor, 0, lambda: None)
    # Until all arrived, or nothing more for 3 s (events are at most once: an
    # overloaded receiver's outbound policy, or NATS's slow-consumer cut, may drop).
    last, last_change = -1, time.perf_counter()
    while not done.called and time.perf_counter() - last_change < 3:
        if got[0] != last:
            last, last_change = got[0], time.perf_counter()
        yield task.deferLater(reactor, 0.05, lambda: None)
    elapsed = (time.perf_counter() if done.called else last_change) - started
    want = got[0]
    cpu = {name: (cpu_ticks(pid) - before[name]) / CLOCK_TICKS for name, pid in pids.items()}
    for s in [publisher, *sessions]:
        s.leave()
    yield task.deferLater(reactor, 0.2, lambda: None)
    return {"rate": want / elapsed, "delivered": got[0] / (events * subscribers), **{f"cpu_ms_per_1k_{n}": 1e6 * c / want for n, c in cpu.items()}}


@defer.inlineCallbacks
def main(args):
    tmp = Path(tempfile.mkdtemp(prefix="rr-bench-cluster-"))
    procs = []
    results = {}
    try:
        alone, alone_port = start_node(tmp, "alone", None)
        procs.append(alone)
        nats_port = free_port()
        nats = Proc([shutil.which("nats-server") or "/usr/sbin/nats-server", "-js", "-sd", tmp / "js",
                     "-a", "127.0.0.1", "-p", nats_port], tmp / "nats.log")
        procs.append(nats)
        nats.wait_for("Server is ready")
        a, a_port = start_node(tmp, "a", f"nats://127.0.0.1:{nats_port}")
        b, b_port = start_node(tmp, "b", f"nats://127.0.0.1:{nats_port}")
        procs += [a, b]
        scenarios = [
            ("alone (no [cluster]), 1->1", alone_port, alone_port, 1, {"A": alone.proc.pid}),
            ("clustered, same node, 1->1", a_port, a_port, 1, {"A": a.proc.pid, "B": b.proc.pid}),
            ("across nodes, 1->1", a_port, b_port, 1, {"A": a.proc.pid, "B": b.proc.pid}),
            (f"across nodes, 1->{args.fanout}", a_port, b_port, args.fanout, {"A": a.proc.pid, "B": b.proc.pid}),
        ]
        for n, (name, pub, sub, subs, pids) in enumerate(scenarios):
            runs = []
            for rep in range(args.reps):
                events = args.events if subs == 1 else max(1000, args.events // subs)
                runs.append((yield run_once(pub, sub, subs, events, pids, f"bench.s{n}.r{rep}")))
            results[name] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'scenario':<32} {'delivered/s':>12} {'delivered':>10} {'node A ms/1k':>13} {'node B ms/1k':>13}")
    for name, r in results.items():
        b = r.get("cpu_ms_per_1k_B")
        print(f"{name:<32} {r['rate']:>12,.0f} {r['delivered']:>10.1%} {r['cpu_ms_per_1k_A']:>13.1f} "
              f"{'-' if b is None else f'{b:.1f}':>13}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--fanout", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    failures = []
    reactor.callWhenRunning(lambda: main(args).addErrback(failures.append).addBoth(lambda _: reactor.stop()))
    reactor.run()
    if failures:
        failures[0].printTraceback()
        raise SystemExit(1)
