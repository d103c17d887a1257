"""IoT agent benchmark: devices -> Mosquitto -> iot-agent -> stored + published
-> a WAMP subscriber, and the same over HTTP, with Mosquitto's own
pass-through rate measured in the same run as the ceiling.

    python bench/iot.py [--messages 20000] [--publishers 4] [--workers 2] [--http-clients 8]

Everything runs on 127.0.0.1: our own Mosquitto (free port, dynamic-security
plugin), ``twistd relayrouter``, ``twistd iot-agent`` (SQLite in a fresh state
directory), and worker processes: paho-mqtt publishers (QoS 1, 200-byte JSON,
up to 100 messages in flight each), HTTP posters (keep-alive, one message per
POST, written on a plain socket), and one Autobahn-Python subscriber of
``device-data`` that timestamps arrivals.  Each message carries its send time, so the latency is device ->
subscriber through everything.  "stored" is read from the agent's counters
and checked against the history API (``/tss/v1``): the run fails when it
holds fewer messages than the devices were told were stored.  Every phase is
bounded and every child is stopped by its PID; the run's directory is removed
after a run that finished, kept after one that failed or with ``--keep``.
"""

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.procstat import CLOCK_TICKS, cpu_ticks  # noqa: E402
from tests.connectors.iot_agent.clients import http_sync  # noqa: E402
from tests.connectors.iot_agent.harness import ROUTER_ENV, ROUTER_TOML, Agent, Mosquitto, free_port, token  # noqa: E402
from tests.connectors.processes import RouterProcess  # noqa: E402

PAD = "x" * 120  # makes the JSON about 200 bytes

# The tenant realms may hold up to 200,000 events (128 MiB) for a subscriber
# that is behind: the agent stores and publishes a backlog in batches of
# hundreds, faster than one Python subscriber on a loaded machine reads
# them, and the router's default (10,000 events, 4 MiB, then the oldest are
# dropped) would lose events of a burst no real subscriber is sent.
BENCH_OUTBOUND = """
[realm_templates.outbound]
max_messages = 200000
max_bytes = 134217728
"""


# ----------------------------------------------------------------- workers

def _publisher(port, username, password, client_id, topic, count, start_at, out):
    import paho.mqtt.client as paho
    import threading

    done = threading.Semaphore(0)
    window = threading.BoundedSemaphore(100)
    acked = [0]

    def on_publish(client, userdata, mid, rc, props):
        acked[0] += 1
        window.release()
        if acked[0] == count:
            done.release()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    client.max_inflight_messages_set(100)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port, 60)
    client.loop_start()
    while time.time() < start_at:
        time.sleep(0.001)
    began = time.time()
    for i in range(count):
        window.acquire()
        payload = json.dumps({"seq": i, "sent": time.time(), "pad": PAD})
        client.publish(topic, payload, qos=1)
    done.acquire(timeout=120)
    out.put({"sent": count, "acked": acked[0], "seconds": time.time() - began})
    client.disconnect()
    client.loop_stop()


def _c_publisher(port, username, password, client_id, topic, count, start_at, out):
    """mosquitto_pub -l (C, QoS 1): one message per line written to its stdin,
    each stamped when written (the pipe holds at most 64 KiB, a few hundred
    messages, so the stamp is at most that early)."""
    import subprocess

    proc = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", username, "-P", password,
                             "-i", client_id, "-t", topic, "-q", "1", "-l", "-V", "mqttv5"], stdin=subprocess.PIPE)
    while time.time() < start_at:
        time.sleep(0.001)
    began = time.time()
    for i in range(count):
        proc.stdin.write(json.dumps({"seq": i, "sent": time.time(), "pad": PAD}).encode() + b"\n")
    proc.stdin.close()
    proc.wait(120)
    out.put({"sent": count, "acked": count if proc.returncode == 0 else 0, "seconds": time.time() - began})


def _raw_subscriber(port, username, password, topic, expected, ready, out, seconds):
    """Mosquitto's own pass-through: one paho subscriber, QoS 1."""
    import paho.mqtt.client as paho

    got = []
    cpu_at_first = []

    def on_message(c, u, m):
        if not got:
            cpu_at_first.append(time.process_time())
        got.append((time.time(), json.loads(m.payload)["sent"]))

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.username_pw_set(username, password)
    client.on_message = on_message
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", port, 60)
    client.subscribe(topic, qos=1)
    client.loop_start()
    deadline = time.time() + seconds
    while len(got) < expected and time.time() < deadline:
        time.sleep(0.01)
    client.loop_stop()
    out.put(dict(_summary(got), cpu=time.process_time() - cpu_at_first[0] if got else 0))


def _poster(url, auth, count, start_at, out):
    """One keep-alive HTTP/1.1 connection posting one message at a time,
    written on a plain socket: http.client spends more CPU per request than
    the agent does, and on a shared machine the clients' CPU is taken from
    the agent.  Each response is read whole (status line, headers, a body of
    its Content-Length) before the next request goes."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: {auth}\r\nContent-Length: ").encode()
    while time.time() < start_at:
        time.sleep(0.001)
    began, cpu = time.time(), time.process_time()
    ok = 0
    buffered = b""
    for i in range(count):
        body = json.dumps({"data": {"seq": i, "sent": time.time(), "pad": PAD}}).encode()
        sock.sendall(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status, buffered = _response(sock, buffered)
        ok += status == 204
    sock.close()
    out.put({"sent": count, "acked": ok, "seconds": time.time() - began, "cpu": time.process_time() - cpu})


def _response(sock, buffered: bytes) -> tuple[int, bytes]:
    """(status, what was read past this response) of one HTTP/1.1 response."""
    while b"\r\n\r\n" not in buffered:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the agent closed the connection")
        buffered += chunk
    head, _, rest = buffered.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise ValueError("the bench reads no chunked responses")
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the agent closed the connection")
        rest += chunk
    return status, rest[length:]


def _summary(arrivals):
    if not arrivals:
        return {"received": 0}
    arrivals.sort()
    first, last = arrivals[0][0], arrivals[-1][0]
    latencies = sorted((got - sent) * 1000 for got, sent in arrivals)
    return {"received": len(arrivals), "seconds": max(last - first, 1e-6),
            "rate": len(arrivals) / max(last - first, 1e-6),
            "p50_ms": latencies[len(latencies) // 2], "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
            "max_ms": latencies[-1]}


WAMP_SUBSCRIBER = r"""
import json, sys, time
import txaio
txaio.use_twisted()
from autobahn.twisted.component import Component, run
from twisted.internet import defer, reactor
cfg = json.loads(sys.argv[1])
got = []
cpu_at_first = []
component = Component(transports=[{"url": cfg["url"], "serializers": ["msgpack"]}], realm=cfg["realm"],
                      authentication={"ticket": {"authid": "bench", "ticket": cfg["ticket"]}})
finished = []

def finish(session):
    if finished:
        return
    finished.append(True)
    out = {"got": got, "cpu": time.process_time() - cpu_at_first[0] if got else 0}
    sys.__stdout__.write(json.dumps(out) + "\n")  # run() sends print() to its log
    sys.__stdout__.flush()
    session.leave()
    reactor.callLater(0.2, reactor.stop)

@component.on_join
@defer.inlineCallbacks
def joined(session, details):
    def on_event(message):
        if not got:
            cpu_at_first.append(time.process_time())
        got.append((time.time(), message["attrs"]["sent"]))
        if len(got) >= cfg["expected"]:
            finish(session)
    yield session.subscribe(on_event, "device-data")
    sys.__stdout__.write("ready\n")
    sys.__stdout__.flush()
    reactor.callLater(cfg["seconds"], finish, session)

run([component], log_level="error")
"""


def _wamp_subscriber(router, tenant, expected, seconds):
    import subprocess

    config = {"url": router.ws_url, "realm": tenant, "ticket": token(service=tenant, role="user"),
              "expected": expected, "seconds": seconds}
    proc = subprocess.Popen([sys.executable, "-c", WAMP_SUBSCRIBER, json.dumps(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
    lines = []
    for line in proc.stdout:
        if line.strip() == "ready":
            return proc
        lines.append(line)
        if len(lines) > 50:
            break
    proc.kill()
    raise RuntimeError("the WAMP subscriber did not start:\n" + "".join(lines))


def _collect(proc):
    out, _ = proc.communicate(timeout=300)
    result = json.loads(out.strip().splitlines()[-1])
    return dict(_summary([tuple(x) for x in result["got"]]), cpu=result["cpu"])


# ------------------------------------------------------------------ phases

RAW_USER, RAW_PASSWORD = "bench-raw", "bench-raw-password-0123456789"


def _raw_account(broker) -> None:
    """A plain account for the pass-through phase, through mosquitto_ctrl (dynamic security)."""
    import subprocess

    base = ["mosquitto_ctrl", "-h", "127.0.0.1", "-p", str(broker.port), "-u", "admin",
            "-P", os.environ["IOT_AGENT_MQTT_PASSWORD"], "dynsec"]
    for command in (["createRole", "bench-raw"],
                    ["addRoleACL", "bench-raw", "publishClientSend", "bench/#", "allow"],
                    ["addRoleACL", "bench-raw", "subscribePattern", "bench/#", "allow"],
                    ["createClient", RAW_USER, "-p", RAW_PASSWORD],
                    ["addClientRole", RAW_USER, "bench-raw"]):
        subprocess.run(base + command, check=True, capture_output=True, timeout=30)


def passthrough(broker, args):
    _raw_account(broker)
    ctx = multiprocessing.get_context("spawn")
    out, ready = ctx.Queue(), ctx.Event()
    total = args.messages
    sub = ctx.Process(target=_raw_subscriber, args=(broker.port, RAW_USER, RAW_PASSWORD,
                                                     "bench/raw", total, ready, out, args.seconds))
    sub.start()
    ready.wait(20)
    start_at = time.time() + 0.5
    publisher = _c_publisher if args.publisher == "mosquitto_pub" else _publisher
    pubs = [ctx.Process(target=publisher, args=(broker.port, RAW_USER, RAW_PASSWORD, f"bench-raw-{i}",
                                                  "bench/raw", total // args.publishers, start_at, out))
            for i in range(args.publishers)]
    for p in pubs:
        p.start()
    results = [out.get(timeout=300) for _ in range(args.publishers + 1)]
    for p in pubs + [sub]:
        p.join(30)
    received = next(r for r in results if "received" in r)
    return received


class StoredWatch:
    """Polls the agent's ``stored`` counter every 50 ms in a thread: the
    persisted rate, from the first poll that saw a message of the phase
    stored to the first that saw them all."""

    def __init__(self, agent, before: int, expected: int, seconds: float) -> None:
        import threading

        self.agent, self.before, self.expected, self.seconds = agent, before, expected, seconds
        self.samples: list[tuple[float, int]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.time() + self.seconds
        while time.time() < deadline:
            stored = self.agent.status()["counters"].get("stored", 0) - self.before
            self.samples.append((time.time(), stored))
            if stored >= self.expected:
                return
            time.sleep(0.05)

    def rate(self) -> float:
        self.thread.join(self.seconds)
        started = next(((t, n) for t, n in self.samples if n > 0), None)
        done = next((t for t, n in self.samples if n >= self.expected), None)
        if started is None or done is None or done <= started[0]:
            return 0.0
        return (self.expected - started[1]) / (done - started[0])


def mqtt_phase(env, devices, args):
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    per = args.messages // len(devices)
    expected = per * len(devices)
    before = env.agent.status()["counters"].get("stored", 0)
    sub = _wamp_subscriber(env.router, "bench", expected, args.seconds)
    watch = StoredWatch(env.agent, before, expected, args.seconds)
    start_at = time.time() + 0.5
    publisher = _c_publisher if args.publisher == "mosquitto_pub" else _publisher
    pubs = [ctx.Process(target=publisher, args=(env.broker.port, d["credentials"]["mqtt"]["username"],
                                                  d["credentials"]["mqtt"]["password"],
                                                  d["credentials"]["mqtt"]["client_id"],
                                                  f"bench:{d['device']['id']}/attrs", per, start_at, out))
            for d in devices]
    for p in pubs:
        p.start()
    sent = [out.get(timeout=300) for _ in pubs]
    for p in pubs:
        p.join(30)
    received = dict(_collect(sub), stored_rate=watch.rate())
    stored = env.agent.status()["counters"].get("stored", 0) - before
    return received, sent, stored, expected


def http_phase(env, devices, args):
    import base64

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    per = args.http_messages // args.http_clients
    expected = per * args.http_clients
    before = env.agent.status()["counters"].get("stored", 0)
    sub = _wamp_subscriber(env.router, "bench", expected, args.seconds)
    watch = StoredWatch(env.agent, before, expected, args.seconds)
    start_at = time.time() + 0.5
    posters = []
    for i in range(args.http_clients):
        cred = devices[i % len(devices)]["credentials"]["http"]
        auth = "Basic " + base64.b64encode(f"{cred['username']}:{cred['password']}".encode()).decode()
        posters.append(ctx.Process(target=_poster, args=(f"{env.agent.url}/http-agent/v1/incoming-messages",
                                                         auth, per, start_at, out)))
    for p in posters:
        p.start()
    sent = [out.get(timeout=300) for _ in posters]
    for p in posters:
        p.join(30)
    received = dict(_collect(sub), stored_rate=watch.rate())
    stored = env.agent.status()["counters"].get("stored", 0) - before
    return received, sent, stored, expected


def _in_history(env, devices) -> int:
    """How many messages the history API (``/tss/v1``) holds for the bench's devices."""
    user = token(service="bench", role="user")
    total = 0
    for d in devices:
        code, body = http_sync("GET", f"{env.agent.url}/tss/v1/devices/{d['device']['id']}/data?limit=1",
                               bearer=user)
        assert code == 200, body
        total += body["paging"]["totalItems"]
    return total


class Env:
    def cpu(self) -> dict:
        return {"agent": cpu_ticks(self.agent.proc.pid), "router": cpu_ticks(self.router.proc.pid),
                "mosquitto": cpu_ticks(self.broker.proc.pid), "machine": _machine_ticks(),
                "store": self.agent.status()["store_stats"], "at": time.time()}


def _commits(before: dict, after: dict, stored: int | None) -> str:
    """The agent's store over a phase: commits, messages per commit, the
    store thread's busy time per commit (an fsync at synchronous=full) and
    its share of the phase's time."""
    commits = after["store"]["commits"] - before["store"]["commits"]
    busy = after["store"]["busy_seconds"] - before["store"]["busy_seconds"]
    cpu = after["store"].get("cpu_seconds", 0) - before["store"].get("cpu_seconds", 0)
    if not commits or not stored:
        return "-"
    return (f"{commits} commits, {stored / commits:.1f} messages each, {busy * 1000 / commits:.2f} ms per commit "
            f"({cpu * 1000 / commits:.2f} ms of the store thread's CPU), "
            f"the store thread busy {busy:.1f} s of {after['at'] - before['at']:.1f} s")


def _machine_ticks() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    return sum(int(x) for x in fields[:3]) + sum(int(x) for x in fields[5:8])  # busy: not idle, not iowait


def _cpu_per_message(before: dict, after: dict, received: dict) -> str:
    """Each process's CPU over the phase per message received; the
    subscriber's own from its first message to its last."""
    messages = received.get("received", 0)
    if not messages:
        return "-"
    parts = [f"{name} {(after[name] - before[name]) / CLOCK_TICKS * 1e6 / messages:.0f}"
             for name in ("agent", "router", "mosquitto")]
    parts.append(f"subscriber {received['cpu'] * 1e6 / messages:.0f}")
    parts.append(f"machine {(after['machine'] - before['machine']) / CLOCK_TICKS * 1e6 / messages:.0f}")
    return ", ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000, help="MQTT messages per phase (default 20000)")
    parser.add_argument("--http-messages", type=int, default=8000, help="HTTP messages (default 8000)")
    parser.add_argument("--publishers", type=int, default=4, help="MQTT publisher processes (default 4)")
    parser.add_argument("--workers", type=int, default=4, help="the agent's MQTT connections (default 4, the agent's)")
    parser.add_argument("--http-clients", type=int, default=8, help="HTTP posting processes (default 8)")
    parser.add_argument("--seconds", type=float, default=120, help="most seconds a phase may take")
    parser.add_argument("--publisher", choices=("paho", "mosquitto_pub"), default="mosquitto_pub",
                        help="MQTT publishers: mosquitto_pub -l (C, default) or paho-mqtt (Python)")
    parser.add_argument("--worker-protocol", default="3.1.1", help="the agent's --mqtt-worker-protocol (default 3.1.1)")
    parser.add_argument("--synchronous", default="full", help="the agent's --sqlite-synchronous (default full)")
    parser.add_argument("--phases", default="passthrough,mqtt,http", help="which phases (default all three)")
    parser.add_argument("--agent-router", choices=("websocket", "rawsocket"), default="websocket",
                        help="how the agent connects to the router (default websocket, the harness's ws://)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run's directory (Mosquitto, router, agent and its store; a failed run keeps it)")
    parser.add_argument("--agent-serializer", choices=("cbor", "msgpack", "json"), default="cbor",
                        help="the agent's WAMP serializer (default cbor, the agent's default)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="iot-bench-"))
    finished = False
    env = Env()
    env.broker = Mosquitto(tmp / "mosquitto")
    env.broker.start()
    env.router = env.agent = None
    os.environ.setdefault("IOT_AGENT_MQTT_PASSWORD", "dynsec-admin-secret-for-tests")
    try:
        toml, agent_router = ROUTER_TOML + BENCH_OUTBOUND, []
        if args.agent_router == "rawsocket":
            rs_port = free_port()
            toml += f'\n[[listeners]]\ntype = "rawsocket"\nendpoint = "tcp:{rs_port}:interface=127.0.0.1"\n'
            agent_router = ["--router", f"rs://127.0.0.1:{rs_port}"]  # the later --router wins
        env.router = RouterProcess(tmp, toml, env=ROUTER_ENV)
        env.router.start()
        http_sync("POST", f"{env.router.http_url}/realms", {"name": "bench"}, bearer=token(role="admin"))
        env.agent = Agent(tmp, env.router, env.broker, "--mqtt-workers", args.workers,
                          "--sqlite-synchronous", args.synchronous, "--mqtt-worker-protocol", args.worker_protocol,
                          "--serializer", args.agent_serializer, *agent_router)
        env.agent.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            status = env.agent.status()
            if status["router"]["tenants"].get("bench") == "ready" and status["mqtt"]["provisioned"]:
                break
            time.sleep(0.1)
        user = token(service="bench", role="user")
        devices = []
        for i in range(args.publishers):
            code, body = http_sync("POST", f"{env.agent.url}/device", {"id": f"d{i}", "label": f"bench {i}"},
                                   bearer=user)
            assert code == 200, body
            devices.append(body)
        print(f"IoT agent benchmark: {args.publishers} MQTT publishers ({args.publisher}, QoS 1, ~200 B JSON), agent with "
              f"{args.workers} MQTT {args.worker_protocol} connections, SQLite synchronous={args.synchronous}, "
              f"{args.agent_router} {args.agent_serializer} to the router; {args.http_clients} HTTP clients; "
              f"load average {open('/proc/loadavg').read().split()[0]} on {os.cpu_count()} cores", flush=True)
        phases = set(args.phases.split(","))
        nothing = ({}, [], None, 0)
        cpu = {}
        c0 = env.cpu()
        raw = passthrough(env.broker, args) if "passthrough" in phases else {}
        c1 = env.cpu()
        mqtt, mqtt_sent, mqtt_stored, mqtt_expected = mqtt_phase(env, devices, args) if "mqtt" in phases else nothing
        c2 = env.cpu()
        http, http_sent, http_stored, http_expected = http_phase(env, devices, args) if "http" in phases else nothing
        c3 = env.cpu()
        cpu = {"raw": _cpu_per_message(c0, c1, raw),
               "mqtt": _cpu_per_message(c1, c2, mqtt),
               "http": _cpu_per_message(c2, c3, http)}
        if http.get("received"):
            cpu["http"] += f" (the HTTP clients {sum(s['cpu'] for s in http_sent) * 1e6 / http['received']:.0f})"
        dropped = env.agent.status()["mqtt"]["broker_dropped"]
        rows = [
            ("Mosquitto pass-through, 1 paho subscriber (ceiling)", raw, args.messages, None),
            ("MQTT -> agent -> stored -> WAMP subscriber", mqtt, mqtt_expected, mqtt_stored),
            ("HTTP POST -> agent -> stored -> WAMP subscriber", http, http_expected, http_stored),
        ]
        print("\n| path | received / sent | stored | stored msgs/s | received msgs/s | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|---|")
        for name, r, sent, stored in rows:
            stored_rate = f"{r['stored_rate']:,.0f}" if r.get("stored_rate") else "-"
            print(f"| {name} | {r.get('received', 0)} / {sent} | {stored if stored is not None else '-'} | "
                  f"{stored_rate} | {r.get('rate', 0):,.0f} | {r.get('p50_ms', 0):.1f} | {r.get('p99_ms', 0):.1f} |")
        print("\nCPU µs per message (agent, router, mosquitto, the subscriber, whole machine incl. clients):")
        for phase, text in cpu.items():
            print(f"  {phase}: {text}")
        print("\nThe agent's store (group commits) per phase:")
        print(f"  mqtt: {_commits(c1, c2, mqtt_stored)}")
        print(f"  http: {_commits(c2, c3, http_stored)}")
        acknowledged = sum(s["acked"] for s in mqtt_sent + http_sent)
        in_history = _in_history(env, devices)
        print(f"\nin the history API: {in_history} messages of the bench's devices; acknowledged to the devices "
              f"(PUBACK, 204): {acknowledged}" + ("" if in_history >= acknowledged else " - MESSAGES ARE MISSING"))
        print(f"\nbroker-side drops ($SYS/broker/publish/messages/dropped): {dropped}")
        print(f"agent counters: {json.dumps(env.agent.status()['counters'])}")
        print(f"agent store: {json.dumps(env.agent.status()['store_stats'])}")
        finished = in_history >= acknowledged
        return 0 if finished else 1
    finally:
        for part in (env.agent, env.router):
            if part is not None:
                part.stop()
        env.broker.stop()
        if finished and not args.keep:  # a failed run keeps its logs and store for a look
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
