"""Three router nodes on a real three-server NATS cluster (JetStream, routes
between the servers), each node on its own server: the shared state is
replicated on every server, and each server killed in turn under traffic costs
no call to a procedure that stayed registered, no denial and no ticket, and
/ready says the truth on every node."""

import json
import subprocess
import sys
import time
import urllib.request

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions
from twisted.internet import defer

from ..security_support import HS_SECRET, http, token
from ..support import LeftBeforeJoining, connect_ws, within
from .harness import PATIENCE, NatsCluster, NatsServer, Node, ready, sleep, stop_all
from .test_cluster_state import REALMS as STATE_REALMS

# No node dies here, only NATS servers: a TTL of a second would let a reactor that a loaded
# machine stalls for that long declare a live node gone (and its callees with it).
BEATS = "heartbeat_interval = 0.25\nheartbeat_ttl = 5.0\n"
# test_cluster_state's realm (JWT tickets, one-time tickets, admin and device roles) without its
# tenant templates; devices here also call and register.
REALMS = STATE_REALMS.split("[[realm_templates]]")[0].replace(
    'allow = ["subscribe", "publish"]', 'allow = ["call", "register", "subscribe", "publish"]')
BUCKETS = ("reg", "deny", "tickets", "retained", "tenants", "testaments")
CALLS_PER_SECOND = 20
# Calls are at most once inside NATS: one in flight to a node that is moving to another server
# can be lost there, and ends with its timeout (wamp.error.canceled), as the docs say.
CALL_TIMEOUT_MS = 10_000
LOST_IN_FLIGHT_PER_KILL = 2
# A denial made while a server is down ends its session elsewhere within this: it is written
# again every 0.5 s until the deny list's bucket has a leader on a live server, and a node that
# moved to another server applies it once its resync gets through (nats-server 2.9 takes
# 3-20 s on a quiet machine of this kind to elect leaders for every bucket after losing a server,
# and up to about a minute when the machine is loaded well beyond its two cores).
DENIAL_BOUND = 60.0
DENIAL_TIMES: list[float] = []
# Every node says ready again within this after a server's death or return: a node that moved
# to another server is ready once its resync gets through the buckets' leader elections.
READY_BOUND = 120.0


def streams(server) -> dict[str, dict]:
    """JetStream's streams as one server's monitoring port lists them: name -> detail."""
    url = f"http://127.0.0.1:{server.monitor}/jsz?streams=true&config=true"
    with urllib.request.urlopen(url, timeout=5) as r:
        found = json.load(r)
    return {s["name"]: s for account in found.get("account_details") or ()
            for s in account.get("stream_detail") or ()}


def make_bucket(url: str, bucket: str, replicas: int) -> None:
    """A key-value bucket made beforehand, as an operator (or an older release) would."""
    script = (
        "import asyncio, nats\n"
        "from nats.js import api\n"
        "async def main():\n"
        f"    nc = await nats.connect({url!r})\n"
        f"    await nc.jetstream().create_key_value(api.KeyValueConfig(bucket={bucket!r}, replicas={replicas}))\n"
        "    await nc.close()\n"
        "asyncio.run(main())\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def start_node(tmp, name, url, extra=BEATS):
    node = Node(tmp, name, url, REALMS, env={"JWT_SECRET": HS_SECRET}, extra=extra)
    node.start()
    return node


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nats-cluster")
    nats = NatsCluster(tmp)
    nats.start()
    nodes = {}
    try:
        # The deny list's bucket exists already, with one replica: the nodes raise it.
        make_bucket(nats.servers[0].url, "relayrouter_deny", 1)
        for i, name in enumerate("abc"):
            nodes[name] = start_node(tmp, name, nats.servers[i].url)
        yield nats, nodes
    finally:
        stop_all(nats, nodes)


def join(node, jwt_or_ticket):
    return connect_ws(node, realm="lab", authmethods=["ticket"], ticket=jwt_or_ticket)


def wait_until(condition, seconds: float, what: str):
    """Polls ``condition`` on the reactor until it is true; fails naming ``what``."""
    @defer.inlineCallbacks
    def poll():
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {seconds:g} s: {what}")
            yield sleep(0.1)
    return poll()


def test_every_bucket_is_replicated_on_the_three_servers(cluster):
    nats, _ = cluster
    found = streams(nats.servers[0])
    for bucket in BUCKETS:
        stream = found[f"KV_relayrouter_{bucket}"]
        assert stream["config"]["num_replicas"] == 3, (bucket, stream["config"])
        assert stream["cluster"]["leader"], bucket


def test_a_bucket_made_with_fewer_replicas_is_raised_to_the_setting(cluster):
    nats, _ = cluster
    assert streams(nats.servers[1])["KV_relayrouter_deny"]["config"]["num_replicas"] == 3


class Traffic:
    """A caller on one node calling a procedure registered on another, steadily."""

    def __init__(self, caller) -> None:
        self.caller = caller
        self.results: list[str] = []  # "ok" or the error URI of each call
        self.running = True
        self.done = self._run()

    @defer.inlineCallbacks
    def _run(self):
        while self.running:
            started = time.monotonic()
            try:
                yield self.caller.call("com.work", 1, options=CallOptions(timeout=CALL_TIMEOUT_MS))
                self.results.append("ok")
            except ApplicationError as e:
                self.results.append(e.error)
            yield sleep(max(0.0, 1 / CALLS_PER_SECOND - (time.monotonic() - started)))

    def failures(self) -> list[str]:
        return [r for r in self.results if r != "ok"]


@pytest.mark.timeout(1200)  # three kills, each waiting for the NATS cluster to heal
@pytest_twisted.inlineCallbacks
@pytest.mark.scenario  # three kills, each healed
def test_each_server_killed_in_turn_loses_no_call_denial_or_ticket(cluster):
    nats, nodes = cluster
    callee = yield join(nodes["b"], token(sub="worker", role="device"))
    yield callee.register(lambda x: x + 1, "com.work")
    caller = yield join(nodes["a"], token(sub="caller", role="device"))
    yield wait_until_called(caller)
    traffic = Traffic(caller)
    answered_while_down = []  # calls answered from each kill to that server's return
    try:
        for i, server in enumerate(nats.servers):
            print(f"--- killing nats-server n{i} at {time.strftime('%H:%M:%S')}")
            before = traffic.results.count("ok")
            server.kill9()
            yield sleep(1.0)
            yield denial_applies_across(nodes, i)
            yield ticket_joins_across(nodes, i)
            yield wait_until(lambda: all(ready(n)[0] == 200 for n in nodes.values()), READY_BOUND,
                             f"every node ready with server n{i} down")
            # The caller calls one at a time: a call lost with the server waits out its timeout
            # before the next is made, so a quick scenario can end before that. The server stays
            # down until a call is answered (or the timeout and then some have passed).
            yield wait_until(lambda: traffic.results.count("ok") > before, CALL_TIMEOUT_MS / 1000 + 10,
                             f"a call answered with server n{i} down")
            answered_while_down.append(traffic.results.count("ok") - before)
            server.start()
            nats.wait_jetstream()
            nats.wait_streams_current()
            yield wait_until(lambda: all(ready(n)[0] == 200 for n in nodes.values()), READY_BOUND,
                             f"every node ready with server n{i} back")
    except BaseException:
        show_cluster_lines(nodes)  # shown by pytest with the failure
        raise
    finally:
        traffic.running = False
        yield traffic.done
    print(f"denials applied after {', '.join(f'{t:.1f}' for t in DENIAL_TIMES)} s; "
          f"{len(traffic.results)} calls, failures: {traffic.failures()}")
    # Calls kept being answered through each server's death (however fast the
    # machine got through the scenario), and nothing but a call in flight failed.
    assert all(answered > 0 for answered in answered_while_down), answered_while_down
    assert "wamp.error.no_such_procedure" not in traffic.failures(), traffic.failures()
    assert set(traffic.failures()) <= {"wamp.error.canceled"}, traffic.failures()
    assert len(traffic.failures()) <= LOST_IN_FLIGHT_PER_KILL * len(nats.servers), traffic.failures()
    for session in (callee, caller):
        session.leave()


def show_cluster_lines(nodes) -> None:
    for node in nodes.values():
        print(f"--- node {node.name}:")
        print("\n".join(line for line in node.all_output if "cluster" in line))


@defer.inlineCallbacks
def wait_until_called(caller, seconds: float = PATIENCE):
    deadline = time.monotonic() + seconds
    while True:
        try:
            yield caller.call("com.work", 1)
            return
        except ApplicationError:
            if time.monotonic() > deadline:
                raise
            yield sleep(0.1)


@defer.inlineCallbacks
def denial_applies_across(nodes, killed: int):
    """A denial made on a node whose server is up ends a session on another node within seconds."""
    names = "abc"
    maker, victim_node = names[(killed + 1) % 3], names[(killed + 2) % 3]
    sub = f"victim-{killed}"
    victim = yield join(nodes[victim_node], token(sub=sub, role="device"))
    admin = yield join(nodes[maker], token(sub="ops", role="admin"))
    yield admin.call("relayrouter.denylist.add", claim="authid", value=sub, ttl=600, reason="test")
    started = time.monotonic()
    details = yield within(victim.left, DENIAL_BOUND)
    DENIAL_TIMES.append(time.monotonic() - started)
    assert details.reason == "wamp.close.revoked"
    admin.leave()


@defer.inlineCallbacks
def ticket_joins_across(nodes, killed: int):
    """A one-time ticket minted on one node joins once on another, with a server down."""
    names = "abc"
    minter, user = names[(killed + 2) % 3], names[(killed + 1) % 3]
    code, _, body = yield http("POST", f"{nodes[minter].http_url}/ticket",
                               bearer=token(sub=f"t-{killed}", role="device"))
    assert code == 200 and body["scope"] == "cluster", body
    session = yield join(nodes[user], body["ticket"])
    session.leave()
    with pytest.raises(LeftBeforeJoining):
        yield join(nodes[minter], body["ticket"])


def test_more_replicas_than_the_nats_servers_is_refused_naming_the_key(tmp_path):
    nats = NatsServer(tmp_path)
    nats.start()
    node = Node(tmp_path, "solo", nats.url, REALMS, env={"JWT_SECRET": HS_SECRET},
                extra=BEATS + "replicas = 3\n")
    try:
        node.start_unsynced()
        node.wait_output(r"cluster\.replicas: the NATS cluster cannot keep bucket", 30)
        deadline = time.monotonic() + 30
        while True:
            code, body = ready(node)
            if code == 503 and any("cluster.replicas" in p or "not in sync" in p for p in body["problems"]):
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
    finally:
        node.stop()
        nats.stop()
