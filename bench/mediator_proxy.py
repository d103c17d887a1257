"""Delivery rate of ``twistd mediator-proxy``: router mailbox -> proxy -> agent.

    python bench/mediator_proxy.py [--messages 3000] [--size 1024] [--rate 100] [--seconds 10]

Starts, on 127.0.0.1, a router with a mailbox (``twistd relayrouter``), a
minimal twisted.web agent answering 200, and the proxy, each its own process.

* **drain**: ``--messages`` messages of ``--size`` bytes are put
  (``POST /mailbox/{name}``, 8 senders) while the proxy is stopped; then the
  proxy starts and we time from its first delivery to the agent's last
  receipt: messages/s delivered, each acknowledged before the next is posted.
* **live**: with the proxy running, one sender puts ``--rate`` messages/s
  for ``--seconds``; latency is from the sender's 202 to the agent's receipt
  (one clock, one machine): p50 / p99 ms.

CPU of each process over the drain is reported too (100% = one core), to
show which one is the bottleneck. Everything stops by PID at the end.
"""

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.procstat import CLOCK_TICKS, cpu_ticks  # noqa: E402

SECRET = "bench-mailbox-secret-0123456789"
TICKET = "bench-agent-ticket-0123456789"
API_TOKEN = "bench-local-api-token-0123456789"
ROUTER_TOML = """
state_dir = "{state}"
[[listeners]]
type = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"
[[realms]]
name = "bench"
[realms.auth.ticket]
[[realms.auth.ticket.principals]]
authid = "agent"
role = "agent"
secret_env = "BENCH_TICKET"
[[realms.mailboxes]]
uri = "mailbox.{{authid}}"
max_messages = 1000000
max_bytes = 1073741824
max_messages_per_sender = 1000000   # the backlog comes from one address
max_bytes_per_sender = 1073741824
http = "token"
token_secret_env = "BENCH_MAILBOX_SECRET"
"""
AGENT = r"""
import sys, time
from twisted.internet import reactor
from twisted.web import resource, server
class Inbox(resource.Resource):
    isLeaf = True
    def render_POST(self, request):
        request.content.read()
        sys.stdout.write("%s %.6f\n" % (request.getHeader("x-message-id"), time.time()))
        return b""
site = server.Site(Inbox())
site.log = lambda request: None
port = reactor.listenTCP(0, site, interface="127.0.0.1")
sys.stdout.write("listening %d\n" % port.getHost().port)
sys.stdout.flush()
reactor.run()
"""


class Proc:
    def __init__(self, name, argv, env=None):
        self.name = name
        self.lines = queue.Queue()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **(env or {})),
                                     cwd=ROOT, bufsize=1)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, text, seconds=60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if text in line:
                return line
        raise SystemExit(f"{self.name} never printed {text!r}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def twistd(*args):
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=", *args]


def post(url, body):
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/didcomm-envelope-enc"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202, response.status
        return json.loads(response.read())["id"]


class Arrivals:
    """The agent's receipts: message id -> time, read by a thread."""

    def __init__(self, agent):
        self.at = {}
        self.changed = threading.Condition()
        self.agent = agent
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while (line := self.agent.lines.get()) is not None:
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit():
                with self.changed:
                    self.at.setdefault(int(parts[0]), float(parts[1]))
                    self.changed.notify_all()

    def wait(self, ids, seconds):
        deadline = time.monotonic() + seconds
        with self.changed:
            while not all(i in self.at for i in ids):
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {sum(i in self.at for i in ids)} of {len(ids)} arrived in {seconds} s")
                self.changed.wait(1.0)


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-inflight", type=int, default=32)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-mediator-"))
    (work / "router.toml").write_text(ROUTER_TOML.format(state=work / "router-state"))
    env = {"BENCH_TICKET": TICKET, "BENCH_MAILBOX_SECRET": SECRET}
    started = []
    try:
        router = Proc("router", twistd("relayrouter", "--config", work / "router.toml"), env)
        started.append(router)
        ws = router.wait_for("WebSocket at ").split("WebSocket at ")[1].split()[0]
        agent = Proc("agent", [sys.executable, "-c", AGENT])
        started.append(agent)
        agent_port = int(agent.wait_for("listening").split()[1])
        arrivals = Arrivals(agent)
        proxy_args = twistd("mediator-proxy", "--router", ws, "--realm", "bench", "--authid", "agent",
                            "--agent-endpoint", f"http://127.0.0.1:{agent_port}/", "--state-dir", work / "proxy",
                            "--listen", "tcp:0:interface=127.0.0.1", "--max-inflight", str(args.max_inflight))
        proxy_env = {"MEDIATOR_PROXY_TICKET": TICKET, "MEDIATOR_PROXY_API_TOKEN": API_TOKEN}

        # learn the public endpoint once, then stop the proxy for the backlog
        proxy = Proc("proxy", proxy_args, proxy_env)
        started.append(proxy)
        http = proxy.wait_for("mediator-proxy listening: ").split("listening: ")[1].rstrip("/")
        deadline = time.monotonic() + 30
        while True:
            try:
                asked = urllib.request.Request(http + "/endpoint", headers={"Authorization": f"Bearer {API_TOKEN}"})
                with urllib.request.urlopen(asked, timeout=5) as r:
                    endpoint = json.loads(r.read())["endpoint"]
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the proxy never learnt its endpoint")
                time.sleep(0.1)
        proxy.stop()
        started.remove(proxy)

        body = os.urandom(args.size // 2).hex().encode()[:args.size]
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda _: post(endpoint, body), range(args.messages)))
        fill = time.monotonic() - t0

        procs = {"router": router.proc.pid, "agent": agent.proc.pid}
        before = {k: cpu_ticks(p) for k, p in procs.items()}
        proxy = Proc("proxy", proxy_args, proxy_env)
        started.append(proxy)
        procs["proxy"] = proxy.proc.pid
        before["proxy"] = 0
        arrivals.wait(ids, 600)
        first = min(arrivals.at[i] for i in ids)
        last = max(arrivals.at[i] for i in ids)
        after = {k: cpu_ticks(p) for k, p in procs.items()}
        drain = last - first
        cpu = {k: 100.0 * (after[k] - before[k]) / CLOCK_TICKS / max(drain, 1e-9) for k in procs}
        in_order = [i for i in sorted(arrivals.at, key=arrivals.at.get) if i in set(ids)] == sorted(ids)

        latencies = []
        interval = 1.0 / args.rate
        next_at = time.monotonic()
        end = next_at + args.seconds
        live = []
        while time.monotonic() < end:
            message_id = post(endpoint, body)
            live.append((message_id, time.time()))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        arrivals.wait([i for i, _ in live], 120)
        latencies = [(arrivals.at[i] - sent) * 1000 for i, sent in live]

        print(f"fill: {args.messages} puts of {args.size} B over HTTP in {fill:.1f} s ({args.messages / fill:,.0f}/s)")
        print(f"drain: {args.messages / drain:,.0f} messages/s delivered and acknowledged"
              f" (max_inflight {args.max_inflight}; in order: {in_order});"
              f" CPU router {cpu['router']:.0f}%, proxy {cpu['proxy']:.0f}%, agent {cpu['agent']:.0f}%")
        print(f"live: {len(live)} messages at {args.rate:g}/s: put (202) -> agent p50 {percentile(latencies, 50):.1f} ms,"
              f" p99 {percentile(latencies, 99):.1f} ms")
    finally:
        for proc in reversed(started):
            proc.stop()


if __name__ == "__main__":
    main()
