"""How long a node says not ready after the death of the NATS server it is connected
to, on a real three-server NATS cluster (each node on its own server).  The client
moves to another server within a fraction of a second; the node keeps its key-value
watches (nats-py's ordered consumers resume from the last revision they saw) instead
of rebuilding all of them, so it is ready again once what it changed meanwhile is
written.  Its figures are in docs/reference/cluster.md ("On a NATS cluster: replicas
and the loss of a server"); run with ``-s`` to see them."""

import re
import time

import pytest

from ..security_support import HS_SECRET
from .harness import PATIENCE, NatsCluster, Node, ready, stop_all
from .test_nats_cluster_failover import REALMS

# /ready asks JetStream about each bucket every heartbeat_ttl: the figures in the docs are with 1 s.
BEATS = "heartbeat_interval = 0.25\nheartbeat_ttl = 1.0\n"

# Generous: the machine is shared; a resync that falls back to rebuilding every watch
# waits for the buckets' leader elections (seconds, up to a minute under heavy load).
READY_BOUND = 120.0
WATCH = 20.0  # a bucket whose leader died is elected anew within this on a quiet machine
KEPT = r"cluster: node a kept its watches of the shared state across the reconnection"
RESUMED = r"cluster: node a's watches of the shared state resumed [0-9.]+ s after the reconnection"
NOT_RESUMED = r"cluster: node a's watches of the shared state did not resume within"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nats-failover-ready")
    nats = NatsCluster(tmp)
    nats.start()
    nodes = {}
    try:
        for i, name in enumerate("abc"):
            nodes[name] = Node(tmp, name, nats.servers[i].url, REALMS, env={"JWT_SECRET": HS_SECRET}, extra=BEATS)
            nodes[name].start()
        yield nats, nodes
    finally:
        stop_all(nats, nodes)


def server_of(nats, name: str):
    """The running server the node ``name`` is connected to."""
    for server in nats.servers:
        if server.running and server.connection(name) is not None:
            return server
    raise AssertionError(f"node {name} is connected to no server")


def not_ready(nodes, watch: float, seconds: float) -> dict[str, tuple[float, float]]:
    """Polls each node's /ready from now, for ``watch`` seconds and then until each has
    answered 200 for a whole second: node -> (seconds it answered anything else in all,
    seconds from now to the last such answer; 0 when it never did)."""
    started = last = time.monotonic()
    bad = {node.name: 0.0 for node in nodes}
    last_bad = {node.name: 0.0 for node in nodes}
    good_since = {node.name: started for node in nodes}
    while True:
        for node in nodes:
            code, _ = ready(node)
            now = time.monotonic()
            if code != 200:
                bad[node.name] += now - last
                last_bad[node.name] = now - started
                good_since[node.name] = now
            last = now
        if now - started >= watch and all(now - since >= 1.0 for since in good_since.values()):
            return {name: (bad[name], last_bad[name]) for name in bad}
        if now - started > seconds:
            raise AssertionError(f"not every node ready within {seconds:g} s: {last_bad}")
        time.sleep(0.02)


@pytest.mark.timeout(900)
@pytest.mark.scenario  # a NATS server killed and the cluster healed: about a minute
def test_a_node_whose_server_dies_is_ready_again_without_rebuilding_its_watches(cluster):
    nats, nodes = cluster
    node = nodes["a"]
    figures = []
    resumed = 0
    for attempt in range(3):
        mark = len(node.all_output)
        server = server_of(nats, "a")
        other = [n for n in (nodes["b"], nodes["c"]) if server.connection(n.name) is None][:1]
        server.kill9()
        figures.append(not_ready([node] + other, WATCH, READY_BOUND))
        node.wait_output(r"cluster: node a reconnected to NATS", PATIENCE, mark)
        node.wait_output(KEPT, PATIENCE, mark)
        # A bucket without a leader for 30 s (a machine loaded far beyond its cores) makes
        # the node fall back to a whole resync: allowed, but not at every kill.
        node.wait_output(f"{RESUMED}|{NOT_RESUMED}", PATIENCE, mark)
        resumed += any(re.search(RESUMED, line) for line in node.all_output[mark:])
        server.start()
        nats.wait_jetstream()
        nats.wait_streams_current()
        not_ready(list(nodes.values()), 0, READY_BOUND)
    assert resumed >= 1
    print("not ready after the death of node a's server (seconds in all, seconds to the last time), "
          "node a then a node on another server: " + "; ".join(
              " / ".join(f"{name} {bad:.2f}, {last:.2f}" for name, (bad, last) in f.items()) for f in figures))
