"""decrypt-search: replication rate and search latency, with real processes.

    python bench/decrypt_search.py                      # 100,000 records, SQLite
    python bench/decrypt_search.py --records 20000 --queries 300        # a quick look
    python bench/decrypt_search.py --backend postgresql # a database of its own on 127.0.0.1:5432, dropped after
    python bench/decrypt_search.py --fill --records 1000000 --live 0    # search at 1,000,000 records

1. Seals ``--records`` order documents (about 400 bytes of JSON each, text
   from a 2,000-word vocabulary) for the organisation, signed by a supplier.
2. Starts the router (``twistd relayrouter``, history on ``com.orders.``) and
   publishes them all while the connector is *down*: they wait in the
   router's event history.
3. Starts ``twistd decrypt-search`` and lets it catch up: every event is read
   from the history, decrypted, its signature verified, validated against
   the JSON Schema, indexed and committed.  The rate is what the connector
   reports for its catch-up (first history read to last commit).
4. Follows the live feed (``GET /feed``) and publishes ``--live`` more while
   it runs: the first 100 one at a time (the feed's commit-to-socket time
   without load), the rest as fast as acknowledged (the live path, end to end).
5. Runs ``--queries`` searches over HTTP (bearer token, keep-alive), one at
   a time, each text + filter + order (shapes below), and the same queries
   against the store directly, and prints p50 / p99 (wall clock, and for the
   store the CPU time of the searching thread: SQLite's work, without the
   wait for a core on a loaded machine).

With ``--fill`` steps 1-3 are replaced: the store is filled through the
store's own code from the same documents (no sealing, no router history:
what a catch-up would have committed), then the connector is started on it
(its start refreshes the planner's statistics and merges the full-text index,
as it does whenever the store has doubled).  That is how 1,000,000 records
fit in minutes; there is no catch-up figure then.  ``--deadline`` bounds the
whole run (default 45 minutes): past it, everything is stopped and it exits
non-zero.

Everything listens on 127.0.0.1; every process started is stopped by PID.  The
run's directory (a temporary one) is removed after a run that finished, kept
after one that failed or with ``--keep``.
It reuses the process helpers of the test suite (tests/connectors).
"""

import argparse
import http.client
import itertools
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATTERN = "prefix:com.orders."
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task  # noqa: E402

from connectors.decrypt_search import config as cfg  # noqa: E402
from connectors.decrypt_search import query  # noqa: E402
from connectors.decrypt_search.store import open_store  # noqa: E402
from relayrouter import e2e  # noqa: E402
from relayrouter.e2e.wamp import publish_envelope  # noqa: E402
from tests.connectors.processes import HTTP_LINE  # noqa: E402
from tests.connectors.decrypt_search.support import (SUPPLIER, Connector, World, connect_publisher,  # noqa: E402
                                                     router_process, token)

CITIES = ["Lyon", "Paris", "Nice", "Lille", "Nantes", "Bordeaux", "Toulouse", "Rennes", "Brest", "Dijon",
          "Metz", "Reims", "Tours", "Angers", "Caen", "Rouen", "Nancy", "Pau", "Annecy", "Grenoble"]
STATUSES = ["new", "paid", "shipped"]
REGIONS = [f"r{i}" for i in range(10)]


def vocabulary(rng, size=2000):
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 9))))
    return sorted(words)


def documents(n: int, words: list, seed: int = 7):
    rng = random.Random(seed)
    weights = [1 / (i + 1) for i in range(len(words))]  # Zipf-like: a few common words, a long tail
    for i in range(1, n + 1):
        note = " ".join(rng.choices(words, weights, k=12))
        yield {"order": i, "amount": round(rng.uniform(1, 500), 2), "status": rng.choice(STATUSES),
               "placed": f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z",
               "ship": {"city": rng.choice(CITIES)}, "note": note,
               "customer": f"{rng.choice(words).title()} {rng.choice(words).title()}"}, rng.choice(REGIONS)


def query_shapes(words):
    common, middling = words[:20], words[50:400]
    return {
        "word, newest first": lambda r: {"q": r.choice(middling), "limit": "20"},
        "status + city, newest first": lambda r: {
            "status": r.choice(STATUSES), "city": r.choice(CITIES), "limit": "20"},
        "amount range, order by amount": lambda r: {
            "amount.gte": str(r.randint(440, 495)), "order": "amount", "limit": "20"},
        "placed before, latest placed first": lambda r: {
            "placed.lt": f"2026-{r.randint(2, 12):02d}-01", "order": "-placed", "limit": "20"},
        "status + amount range, order by -amount": lambda r: {
            "status": r.choice(STATUSES), "amount.gte": str(r.randint(1, 200)), "amount.lt": str(r.randint(250, 500)),
            "order": "-amount", "limit": "20"},
        "word + amount range + order by amount": lambda r: {
            "q": r.choice(middling), "amount.gte": str(r.randint(1, 200)), "amount.lt": str(r.randint(250, 500)),
            "order": "-amount", "limit": "20"},
        "common word + status + city + newest first": lambda r: {
            "q": r.choice(common), "status": r.choice(STATUSES), "city": r.choice(CITIES), "order": "-created",
            "limit": "20"},
        "prefix + date range + order by date": lambda r: {
            "q": r.choice(middling)[:3] + "*", "placed.gte": "2026-03-01", "placed.lt": "2026-09-01",
            "order": "placed", "limit": "20"},
        "phrase + status in + order by amount": lambda r: {
            "q": f'"{r.choice(common)} {r.choice(common)}"', "status.in": "new,paid", "order": "amount",
            "limit": "20"},
    }


def percentiles(samples):
    samples = sorted(samples)
    return (statistics.median(samples) * 1000, samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000)


@defer.inlineCallbacks
def publish_all(publisher, envelopes, window=500):
    pending = []
    for topic, envelope in envelopes:
        pending.append(publish_envelope(publisher, topic, envelope, acknowledge=True))
        if len(pending) >= window:
            yield defer.gatherResults(pending)
            pending = []
    yield defer.gatherResults(pending)


def status(connector):
    conn = http.client.HTTPConnection("127.0.0.1", connector.http_port, timeout=30)
    conn.request("GET", "/status", headers={"Authorization": f"Bearer {token()}"})
    response = conn.getresponse()
    body = json.loads(response.read())
    if response.status != 200:
        raise SystemExit(f"GET /status: {response.status} {body}\n{connector.describe()}")
    return body


@defer.inlineCallbacks
def wait_status(connector, done, what, seconds):
    """Poll /status until ``done(status)``; the status then."""
    from twisted.internet import reactor

    deadline = time.monotonic() + seconds
    while True:
        s = status(connector)
        if done(s):
            return s
        if time.monotonic() > deadline:
            raise SystemExit(f"not {what} within {seconds:.0f} s: {s['store']}, {s['replication'].get('catchup')}")
        yield task.deferLater(reactor, 0.1, lambda: None)


def wait_stored(connector, count, seconds):
    return wait_status(connector, lambda s: s["store"]["records"] >= count, f"{count} records stored", seconds)


def wait_caught_up(connector, count, seconds):
    """The figures of a catch-up are there once it is marked done, which comes after its last commit."""
    def done(s):
        state = s["replication"]["catchup"].get(PATTERN) or {}
        return s["store"]["records"] >= count and state.get("done")
    return wait_status(connector, done, f"caught up with {count} records", seconds)


def fill_store(config, state_dir: Path, docs) -> float:
    """The records a catch-up of ``docs`` would commit, written through the store's code; records/s."""
    from connectors.decrypt_search.ingest import Record, extract_fields, text_of

    store = open_store(config, str(state_dir))
    conn = store.connect()
    store.create_schema(conn)
    started, batch = time.perf_counter(), []
    for i, (doc, region) in enumerate(docs, 1):
        created = 1_780_000_000 + i * 0.01
        batch.append(Record(i, f"com.orders.{region}", uuid.UUID(int=i).hex, SUPPLIER, "fill", created, created,
                            doc, extract_fields(doc, config.index), text_of(doc, config.text_fields)))
        if len(batch) == 5000:
            store.write(conn, batch, {}, now=time.time())
            batch = []
            if i % 100_000 == 0:
                print(f"  filled {i:,}", flush=True)
    store.write(conn, batch, {}, now=time.time())
    conn.close()
    return i / (time.perf_counter() - started)


def http_latencies(connector, shapes, queries, rng):
    conn = http.client.HTTPConnection("127.0.0.1", connector.http_port, timeout=30)
    bearer = {"Authorization": f"Bearer {token(lifetime=3600)}"}
    by_shape = {name: [] for name in shapes}
    hits = []
    for i in range(queries):
        name = list(shapes)[i % len(shapes)]
        params = shapes[name](rng)
        started = time.perf_counter()
        conn.request("GET", "/search?" + urllib.parse.urlencode(params), headers=bearer)
        response = conn.getresponse()
        body = response.read()
        by_shape[name].append(time.perf_counter() - started)
        if response.status != 200:
            raise SystemExit(f"search failed: {response.status} {body[:300]!r}")
        hits.append(len(json.loads(body)["records"]))
    return by_shape, hits


def store_latencies(store, config, shapes, queries, rng):
    """Per shape: the wall-clock times, and the CPU times of this thread (SQLite works in it; on a
    loaded machine the wall clock mostly measures the wait for a core)."""
    conn = store.connect(reader=True)
    by_shape = {name: [] for name in shapes}
    cpu = {name: [] for name in shapes}
    for i in range(queries):
        name = list(shapes)[i % len(shapes)]
        search = query.parse_search(shapes[name](rng), config)
        started, cpu_started = time.perf_counter(), time.thread_time()
        store.search(conn, search)
        by_shape[name].append(time.perf_counter() - started)
        cpu[name].append(time.thread_time() - cpu_started)
    conn.close()
    return by_shape, cpu


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its threads."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_database():
    import psycopg

    name = f"ds_bench_{uuid.uuid4().hex[:10]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    return f"postgresql://postgres@127.0.0.1:5432/{name}", drop


class Follower:
    """A GET /feed stream, counting the events it reads."""

    def __init__(self) -> None:
        self.events = 0
        self.response = None
        self.buffer = b""

    def received(self, data: bytes) -> None:
        *blocks, self.buffer = (self.buffer + data).split(b"\n\n")  # an event may straddle two reads
        self.events += sum(1 for block in blocks if b"\nevent: record\n" in block)

    def stop(self) -> None:
        self.response.original._transport.loseConnection()


@defer.inlineCallbacks
def follow(connector):
    import treq

    follower = Follower()
    follower.response = yield treq.get(f"http://127.0.0.1:{connector.http_port}/feed", unbuffered=True,
                                       headers={"Authorization": f"Bearer {token(lifetime=3600)}"})
    treq.collect(follower.response, follower.received).addErrback(lambda _: None)
    return follower


def seal_all(world, docs) -> list:
    supplier, acme = world.keys[SUPPLIER], world.public("acme")
    started = time.perf_counter()
    envelopes = [(f"com.orders.{region}", e2e.seal(d, f"com.orders.{region}", supplier, [acme])) for d, region in docs]
    if envelopes:
        print(f"sealed {len(envelopes):,} envelopes ({len(envelopes) / (time.perf_counter() - started):,.0f}/s), "
              f"{sum(len(e) for _, e in envelopes) / len(envelopes):.0f} bytes each", flush=True)
    return envelopes


@defer.inlineCallbacks
def catch_up(connector, publisher, envelopes, records):
    """Publish while the connector is down, start it, and report its catch-up."""
    started = time.perf_counter()
    yield publish_all(publisher, envelopes)
    print(f"published {records:,} while the connector was down "
          f"({records / (time.perf_counter() - started):,.0f}/s)", flush=True)
    connector.start(ready=False)  # "joined" is logged once the catch-up is over
    connector.http_port = int(connector.wait_for(HTTP_LINE).group(1))
    s = yield wait_caught_up(connector, records, seconds=records / 200 + 60)
    cpu = cpu_seconds(connector.proc.pid)
    state = s["replication"]["catchup"][PATTERN]
    rate = state["events"] / state["seconds"]
    print(f"catch-up: {state['events']:,} events in {state['seconds']:.1f} s = {rate:,.0f} records/s "
          "(history read, decrypt, verify, validate, index, commit); "
          f"{state['events'] / cpu:,.0f} records per CPU-second of the connector "
          f"(its {cpu:.1f} s of CPU include its start)", flush=True)
    return rate


def start_on_filled_store(connector, records, words):
    config = cfg.load(connector.dir / "decrypt-search.toml")
    state = connector.dir / "state"
    state.mkdir(mode=0o700, exist_ok=True)
    rate = fill_store(config, state, documents(records, words))
    print(f"filled the store with {records:,} records through its own code ({rate:,.0f}/s: no crypto, no router)",
          flush=True)
    started = time.perf_counter()
    connector.start(ready=False)
    connector.http_port = int(connector.wait_for(HTTP_LINE, seconds=600).group(1))
    connector.wait_for(r"joined realm trade", seconds=600)
    print(f"connector started on it in {time.perf_counter() - started:.1f} s (statistics and full-text merge "
          "included)", flush=True)


def report(connector, args, words) -> list:
    """Per shape: (name, HTTP p50, p99, store p50, p99), printed as a table."""
    shapes = query_shapes(words)
    rng = random.Random(11)
    for _ in range(50):  # warm the page cache
        http_latencies(connector, shapes, len(shapes), rng)
    by_shape, hits = http_latencies(connector, shapes, args.queries, rng)
    config = cfg.load(connector.dir / "decrypt-search.toml")
    store = open_store(config, str(connector.dir / "state"))
    direct, cpu = store_latencies(store, config, shapes, args.queries, random.Random(11))
    goal = 25 if args.records <= 100_000 else 50
    print(f"\nsearch on {args.records + args.live:,} records ({args.backend}), {args.queries} queries, "
          f"median {statistics.median(hits):.0f} hits returned (limit 20); goal p99 <= {goal} ms:")
    print("| query | HTTP p50 ms | HTTP p99 ms | store p50 ms | store p99 ms | store CPU p50 ms | store CPU p99 ms |"
          "\n|---|---|---|---|---|---|---|")
    rows = [(name, *percentiles(by_shape[name]), *percentiles(direct[name]), *percentiles(cpu[name]))
            for name in shapes]
    rows.append(("all", *percentiles([x for v in by_shape.values() for x in v]),
                 *percentiles([x for v in direct.values() for x in v]),
                 *percentiles([x for v in cpu.values() for x in v])))
    for name, *figures in rows:
        print(f"| {name} | " + " | ".join(f"{x:.1f}" for x in figures) + " |")
    return rows


@defer.inlineCallbacks
def main(reactor, args):
    tmp = Path(tempfile.mkdtemp(prefix="ds-bench-"))
    world = World(tmp)
    words = vocabulary(random.Random(3))
    live_docs = itertools.islice(documents(args.records + args.live, words), args.records, None)
    envelopes = seal_all(world, ([] if args.fill else list(documents(args.records, words))) + list(live_docs))
    extra, drop = "", None
    if args.backend == "postgresql":
        dsn, drop = postgres_database()
        extra = f'\n[store]\nbackend = "postgresql"\ndsn = "{dsn}"\n'
    router = router_process(tmp)
    router.toml = router.toml.replace("limit = 5000", f"limit = {len(envelopes) or 1}")
    connector = None

    def stop_everything():
        if connector is not None:
            connector.stop()
        router.stop()
        if drop:
            drop()

    def overdue():
        print(f"stopped: the run took longer than --deadline {args.deadline:.0f} s", flush=True)
        stop_everything()
        os._exit(2)

    watchdog = reactor.callLater(args.deadline, overdue)
    finished = False
    try:
        router.start()
        connector = Connector(tmp, world, "acme", router, extra=extra)
        rate = None
        if args.fill:  # before the publisher joins: filling holds this process's reactor for minutes
            start_on_filled_store(connector, args.records, words)
        publisher = yield connect_publisher(router)
        if not args.fill:
            rate = yield catch_up(connector, publisher, envelopes[:args.records], args.records)
        live_rate = None
        if args.live:
            follower = yield follow(connector)
            single = min(100, args.live // 2)
            for i, (topic, envelope) in enumerate(envelopes[-args.live:][:single]):  # one at a time
                yield publish_envelope(publisher, topic, envelope, acknowledge=True)
                while follower.events <= i:
                    yield task.deferLater(reactor, 0.001, lambda: None)
            feed = status(connector)["feed"]
            print(f"live feed, {single} records published one at a time: commit to the event written to the "
                  f"follower's socket, p50 {feed['commit_to_write_ms_p50']} ms", flush=True)
            started = time.perf_counter()
            yield publish_all(publisher, envelopes[-args.live:][single:], window=200)
            yield wait_stored(connector, args.records + args.live, seconds=300)
            bulk = args.live - single
            live_rate = bulk / (time.perf_counter() - started)
            print(f"live: {bulk:,} published and stored in {bulk / live_rate:.1f} s = "
                  f"{live_rate:,.0f} records/s end to end", flush=True)
            feed = status(connector)["feed"]
            print(f"live feed: {follower.events:,} events to one follower (GET /feed; closed "
                  f"{feed['closed_for_not_reading']} times for not reading); commit to the event "
                  f"written to its socket, p50 {feed['commit_to_write_ms_p50']} ms per batch (the last 1,000 "
                  "batches, one at a time and under the live load)", flush=True)
            follower.stop()
        report(connector, args, words)
        print("\nreplication: " + (f"catch-up {rate:,.0f} records/s" if rate else "store filled directly")
              + (f", live {live_rate:,.0f} records/s" if live_rate else ""))
        publisher.leave()
        finished = True
    finally:
        if watchdog.active():
            watchdog.cancel()
        stop_everything()
    if finished and not args.keep:  # a failed run keeps its logs and store for a look
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--live", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--fill", action="store_true",
                        help="fill the store directly instead of a catch-up (for 1,000,000 records)")
    parser.add_argument("--deadline", type=float, default=2700, help="seconds the whole run may take")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run's directory (router, connector, store; 1 GB at 1,000,000 records)")
    options = parser.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    task.react(main, [options])
