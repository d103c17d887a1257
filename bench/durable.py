"""Durable mailbox throughput end to end, with RabbitMQ as the anchor in the same run.

    python bench/durable.py [--seconds 10] [--warmup 2] [--publishers 16] [--window 8] [--size 1024]
                            [--against rabbitmq|none] [--rabbitmq amqp://guest:guest@127.0.0.1:5672/%2F]
                            [--synchronous full|normal] [--postgresql postgresql://postgres@127.0.0.1:5432]

Workload (the same on both): ``--publishers`` publishers, each with
``--window`` acknowledged publishes of ``--size`` bytes in flight; one
consumer that takes continuously and acknowledges in batches (every 64
messages or 5 ms).  A message counts once the consumer's acknowledgement of
it is confirmed.  Figures: messages/s end to end, and the acknowledgement
latency seen by publishers (publish -> PUBLISHED / publisher confirm,
p50 / p99), plus publish -> consumer acknowledged (p50 / p99).

relayrouter: ``twistd relayrouter`` started fresh from this checkout with a
SQLite store in a temporary state directory (``synchronous = full``), or with
``--postgresql SERVER`` on a database of its own there (created, dropped at
the end; the server's own settings, so ``synchronous_commit`` as it is), pinned
to CPU 0; PUBLISH with ``acknowledge: true`` to ``mailbox.bench``, take with
``max_inflight = 512``, ``ack(upto=)``; clients are Autobahn-Python on
Twisted (msgpack) in this process, pinned to CPU 1.

RabbitMQ (the machine's broker, 127.0.0.1:5672): a durable queue,
persistent messages, publisher confirms awaited per message (pika, one
blocking connection per message in flight: ``publishers x window``
threads), one consumer with manual acks (``multiple=True``) and prefetch 512.

Everything is bounded: each side stops itself after warm-up + measurement;
the router is stopped by PID.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

SECRET = "bench-secret-0123456789"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process and its children so far, in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15])


def log(*parts) -> None:
    print("[durable]", *parts, file=sys.stderr, flush=True)


def pct(values, q) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Window:
    """What one side measured between the marks."""

    def __init__(self) -> None:
        self.start = self.end = None
        self.done = 0
        self.ack_latency: list = []  # publish -> PUBLISHED / confirm
        self.e2e_latency: list = []  # publish -> consumer ack confirmed
        self.cpu: dict = {}  # process -> % of one core during the window

    def measuring(self, now: float) -> bool:
        return self.start is not None and self.start <= now and (self.end is None or now < self.end)

    def figures(self) -> dict:
        seconds = (self.end - self.start) if self.end else 0
        return {"msgs_per_s": self.done / seconds if seconds else 0.0,
                "ack_p50_ms": pct(self.ack_latency, 0.50), "ack_p99_ms": pct(self.ack_latency, 0.99),
                "e2e_p50_ms": pct(self.e2e_latency, 0.50), "e2e_p99_ms": pct(self.e2e_latency, 0.99),
                "messages": self.done, "cpu": self.cpu}


# ------------------------------------------------------------------ relayrouter

CONFIG = """
[[listeners]]
type = "websocket"
endpoint = "tcp:{port}:interface=127.0.0.1"

[storage]
{storage}

[[realms]]
name = "bench"
[realms.auth.ticket]
[[realms.auth.ticket.principals]]
authid = "bench"
role = "user"
secret_env = "RR_BENCH_SECRET"

[[realms.mailboxes]]
uri = "mailbox.{{authid}}"
max_messages = 10000000
max_bytes = 4000000000
max_message_bytes = 65536
http = "open"
"""


def start_router(state_dir: Path, port: int, storage: str) -> subprocess.Popen:
    config = state_dir / "bench.toml"
    config.write_text(CONFIG.format(port=port, storage=storage))
    env = dict(os.environ, PYTHONPATH=str(REPO), RR_BENCH_SECRET=SECRET)
    log_file = open(state_dir / "router.log", "wb")
    proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c",
                             "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                             "relayrouter", "--config", str(config), "--state-dir", str(state_dir / "state")],
                            cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"relayrouter exited at start; see {state_dir / 'router.log'}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("relayrouter did not listen within 60 s")


def run_relayrouter(args) -> dict:
    """Runs the Twisted clients in a child process pinned to CPU 1 (the reactor runs once per process)."""
    tmp = Path(tempfile.mkdtemp(prefix="relayrouter-durable-bench-"))
    port = free_port()
    database = None
    if args.postgresql:
        database = f"relayrouter_bench_{os.getpid()}"
        _pg_admin(args.postgresql, f'CREATE DATABASE "{database}"')
        storage = f'dsn = "{args.postgresql.rstrip("/")}/{database}"'
    else:
        storage = f'synchronous = "{args.synchronous}"'
    try:
        proc = start_router(tmp, port, storage)
    except BaseException:
        if database:
            _pg_admin(args.postgresql, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        raise
    try:
        out = subprocess.run(["taskset", "-c", "1", sys.executable, __file__, "--client", str(port),
                              "--router-pid", str(proc.pid),
                              "--seconds", str(args.seconds), "--warmup", str(args.warmup),
                              "--publishers", str(args.publishers), "--window", str(args.window),
                              "--size", str(args.size)],
                             capture_output=True, text=True, timeout=args.warmup + args.seconds + 90)
        if out.returncode != 0:
            raise RuntimeError("client failed:\n" + out.stderr[-3000:])
        import json

        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        if database:
            _pg_admin(args.postgresql, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _pg_admin(server: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(f"{server.rstrip('/')}/postgres", autocommit=True) as admin:
        admin.execute(statement)


def relayrouter_client(args) -> None:
    import json

    import txaio

    txaio.use_twisted()
    from autobahn.twisted.wamp import ApplicationSession
    from autobahn.twisted.websocket import WampWebSocketClientFactory
    from autobahn.wamp import serializer
    from autobahn.wamp.types import CallOptions, ComponentConfig, PublishOptions
    from twisted.internet import defer, endpoints, reactor

    window = Window()
    sent_at: dict = {}  # seq -> time sent
    payload = b"x" * args.size
    stop_at = [None]

    class Session(ApplicationSession):
        def onConnect(self):
            self.join("bench", authmethods=["ticket"], authid="bench")

        def onChallenge(self, challenge):
            return SECRET

        def onJoin(self, details):
            self.config.extra["joined"].callback(self)

    @defer.inlineCallbacks
    def session():
        joined = defer.Deferred()
        s = Session(ComponentConfig("bench", {"joined": joined}))
        factory = WampWebSocketClientFactory(lambda: s, url=f"ws://127.0.0.1:{args.client}/ws",
                                             serializers=[serializer.MsgPackSerializer()])
        yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", args.client).connect(factory)
        result = yield joined
        return result

    counter = [0]
    options = PublishOptions(acknowledge=True)

    def publisher(s):
        def one():
            if stop_at[0] is not None and reactor.seconds() >= stop_at[0]:
                return
            counter[0] += 1
            seq = counter[0]
            t0 = time.perf_counter()
            sent_at[seq] = t0
            d = s.publish("mailbox.bench", seq, payload, options=options)

            def published(_):
                now = time.perf_counter()
                if window.measuring(reactor.seconds()):
                    window.ack_latency.append(now - t0)
                one()
            d.addCallbacks(published, lambda f: None)

        for _ in range(args.window):
            one()

    pending_ack = []
    last_flush = [time.perf_counter()]

    def flush(consumer):
        if not pending_ack:
            return
        batch = list(pending_ack)
        pending_ack.clear()
        last_flush[0] = time.perf_counter()
        d = consumer.call("relayrouter.mailbox.ack", "mailbox.bench", upto=batch[-1][0])

        def acked(_):
            now = time.perf_counter()
            measuring = window.measuring(reactor.seconds())
            for _id, seq in batch:
                t0 = sent_at.pop(seq, None)
                if measuring:
                    window.done += 1
                    if t0 is not None:
                        window.e2e_latency.append(now - t0)
        d.addCallbacks(acked, lambda f: None)

    @defer.inlineCallbacks
    def main():
        consumer = yield session()

        def on_message(message):
            pending_ack.append((message["id"], message["args"][0]))
            if len(pending_ack) >= 64 or time.perf_counter() - last_flush[0] > 0.005:
                flush(consumer)

        ticker = reactor.callLater(0.005, lambda: None)
        ticker.cancel()

        def tick():
            flush(consumer)
            if stop_at[0] is None or reactor.seconds() < stop_at[0] + 2:
                reactor.callLater(0.005, tick)

        consumer.call("relayrouter.mailbox.take", "mailbox.bench", max_inflight=512,
                      options=CallOptions(on_progress=on_message)).addErrback(lambda f: None)
        tick()
        publishers = []
        for _ in range(args.publishers):
            publishers.append((yield session()))
        now = reactor.seconds()
        window.start = now + args.warmup
        window.end = window.start + args.seconds
        stop_at[0] = window.end
        for s in publishers:
            publisher(s)
        marks = {}

        def mark(name):
            marks[name] = (time.monotonic(), time.process_time(), cpu_ticks(args.router_pid))
        reactor.callLater(args.warmup, mark, "start")
        reactor.callLater(args.warmup + args.seconds, mark, "end")
        yield defer.Deferred().addTimeout(args.warmup + args.seconds + 1.5, reactor).addErrback(lambda f: None)
        (t0, c0, r0), (t1, c1, r1) = marks["start"], marks["end"]
        window.cpu = {"router": round(100 * (r1 - r0) / TICKS / (t1 - t0)),
                      "clients": round(100 * (c1 - c0) / (t1 - t0))}
        print(json.dumps(window.figures()))
        reactor.stop()

    main().addErrback(lambda f: (print(f.getTraceback(), file=sys.stderr), reactor.stop()))
    reactor.run()


# --------------------------------------------------------------------- RabbitMQ

def run_rabbitmq(args) -> dict:
    import pika

    params = pika.URLParameters(args.rabbitmq)
    queue = f"relayrouter-bench-{os.getpid()}"
    setup = pika.BlockingConnection(params)
    channel = setup.channel()
    channel.queue_declare(queue=queue, durable=True)
    channel.queue_purge(queue)
    window = Window()
    sent_at: dict = {}
    lock = threading.Lock()
    start = time.monotonic()
    window.start = start + args.warmup
    window.end = window.start + args.seconds
    body_pad = b"x" * max(0, args.size - 16)
    counter = [0]

    def publisher():
        conn = pika.BlockingConnection(params)
        ch = conn.channel()
        ch.confirm_delivery()
        props = pika.BasicProperties(delivery_mode=2)
        while time.monotonic() < window.end:
            with lock:
                counter[0] += 1
                seq = counter[0]
            t0 = time.perf_counter()
            sent_at[seq] = t0
            ch.basic_publish("", queue, seq.to_bytes(16, "big") + body_pad, props, mandatory=False)
            if window.measuring(time.monotonic()):
                with lock:
                    window.ack_latency.append(time.perf_counter() - t0)
        conn.close()

    def consumer():
        conn = pika.BlockingConnection(params)
        ch = conn.channel()
        ch.basic_qos(prefetch_count=512)
        batch = []
        last = [time.perf_counter()]

        def flush():
            if not batch:
                return
            ch.basic_ack(batch[-1][0], multiple=True)
            now = time.perf_counter()
            measuring = window.measuring(time.monotonic())
            with lock:
                for _tag, seq in batch:
                    t0 = sent_at.pop(seq, None)
                    if measuring:
                        window.done += 1
                        if t0 is not None:
                            window.e2e_latency.append(now - t0)
            batch.clear()
            last[0] = now

        for method, _props, body in ch.consume(queue, inactivity_timeout=0.005):
            if method is not None:
                batch.append((method.delivery_tag, int.from_bytes(body[:16], "big")))
            if len(batch) >= 64 or time.perf_counter() - last[0] > 0.005:
                flush()
            if time.monotonic() > window.end + 1:
                break
        flush()
        ch.cancel()
        conn.close()

    broker = _beam_pid()
    marks = {}

    def mark(name):
        marks[name] = (time.monotonic(), time.process_time(), cpu_ticks(broker) if broker else 0)
    timers = [threading.Timer(args.warmup, mark, ("start",)),
              threading.Timer(args.warmup + args.seconds, mark, ("end",))]
    for t in timers:
        t.start()
    threads = [threading.Thread(target=consumer, daemon=True)]
    # pika's blocking channel awaits each confirm: one publisher per message in flight.
    threads += [threading.Thread(target=publisher, daemon=True) for _ in range(args.publishers * args.window)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.warmup + args.seconds + 30)
    channel.queue_delete(queue)
    setup.close()
    (t0, c0, r0), (t1, c1, r1) = marks["start"], marks["end"]
    window.cpu = {"router": round(100 * (r1 - r0) / TICKS / (t1 - t0)) if broker else "-",
                  "clients": round(100 * (c1 - c0) / (t1 - t0))}
    return window.figures()


def _beam_pid() -> int | None:
    """The RabbitMQ server process (Erlang's beam.smp), for its CPU."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "beam.smp":
                    return int(entry.name)
            except OSError:
                continue
    return None


# ----------------------------------------------------------------------- report

def table(results: dict, args) -> str:
    rows = ["| system | msgs/s end to end | publisher ack p50 / p99 (ms) | publish -> consumer acked p50 / p99 (ms) "
            "| CPU % (server / clients) |", "|---|---|---|---|---|"]
    for name, r in results.items():
        cpu = r.get("cpu") or {}
        rows.append(f"| {name} | {r['msgs_per_s']:,.0f} | {r['ack_p50_ms']:.1f} / {r['ack_p99_ms']:.1f} | "
                    f"{r['e2e_p50_ms']:.1f} / {r['e2e_p99_ms']:.1f} | "
                    f"{cpu.get('router', '-')} / {cpu.get('clients', '-')} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--publishers", type=int, default=16)
    p.add_argument("--window", type=int, default=8, help="acknowledged publishes in flight per publisher")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--against", choices=("rabbitmq", "none"), default="rabbitmq")
    p.add_argument("--synchronous", choices=("full", "normal"), default="full", help="relayrouter's SQLite setting")
    p.add_argument("--postgresql", metavar="SERVER", help="relayrouter on PostgreSQL: a database of its own on "
                   "this server (e.g. postgresql://postgres@127.0.0.1:5432), created and dropped")
    p.add_argument("--rabbitmq", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    p.add_argument("--client", type=int, help=argparse.SUPPRESS)  # internal: run the WAMP clients
    p.add_argument("--router-pid", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.client:
        relayrouter_client(args)
        return
    results = {}
    log(f"relayrouter: {args.publishers} publishers x {args.window} in flight, {args.size} B, "
        f"{args.warmup}+{args.seconds} s")
    where = "PostgreSQL" if args.postgresql else f"SQLite, synchronous={args.synchronous}"
    results[f"relayrouter ({where})"] = run_relayrouter(args)
    if args.against == "rabbitmq":
        log("RabbitMQ: durable queue, persistent, confirms, manual batched acks")
        results["RabbitMQ (pika)"] = run_rabbitmq(args)
    print(table(results, args))


if __name__ == "__main__":
    main()
