"""Node liveness: heartbeats carry each node's session counts, so
wamp.session.count answers for the cluster; a node killed with -9 leaves the
count (and the live nodes) within its heartbeat TTL; /ready says when NATS is away."""

import time

import pytest
import pytest_twisted
from twisted.internet import reactor, task, threads

from ..support import connect_ws
from .harness import LOAD_SLACK, PATIENCE, NatsServer, Node, ready, stop_all

BEATS = "heartbeat_interval = 0.25\nheartbeat_ttl = 1.0\n"


@pytest.fixture
def cluster(tmp_path):
    nats = NatsServer(tmp_path)
    nats.start()
    nodes = {}
    try:
        for name in ("a", "b", "c"):
            nodes[name] = Node(tmp_path, name, nats.url, extra=BEATS)
            nodes[name].start()
        yield nats, nodes
    finally:
        stop_all(nats, nodes)



@pytest_twisted.inlineCallbacks
def test_session_count_is_cluster_wide_and_a_killed_node_leaves_it_within_the_ttl(cluster):
    nats, nodes = cluster
    sessions = []
    for name in ("a", "a", "b", "c", "c"):
        sessions.append((yield connect_ws(nodes[name])))
    asker = sessions[0]
    for _ in range(200):  # heartbeats every 0.25 s carry the other nodes' counts
        result = yield asker.call("wamp.session.count")
        if result == 5:
            break
        yield task.deferLater(reactor, 0.05, lambda: None)
    assert result == 5
    assert (yield asker.call("wamp.session.count", ["anonymous"])) == 5
    assert (yield asker.call("wamp.session.count", ["nobody"])) == 0

    mark = len(nodes["a"].all_output)
    nodes["c"].kill9()
    killed = time.monotonic()
    yield threads.deferToThread(nodes["a"].wait_output, "cluster: node c is gone", PATIENCE, mark)
    gone_after = time.monotonic() - killed
    assert gone_after < 1.0 + 0.25 + LOAD_SLACK  # ttl + one beat, on a machine loaded or not
    assert (yield asker.call("wamp.session.count")) == 3
    for session in sessions[:3]:
        session.leave()


def test_ready_reports_the_lost_nats_connection_and_recovers(cluster):
    nats, nodes = cluster
    assert ready(nodes["a"]) == (200, {"ready": True, "problems": []})
    mark = len(nodes["a"].all_output)
    nats.stop()
    nodes["a"].wait_output("cluster: node a lost NATS", 30, mark)
    status, body = ready(nodes["a"])
    assert status == 503 and body["problems"] == ["cluster: not connected to NATS (local routing goes on; see the log)"]
    nats.start()
    nodes["a"].wait_output("cluster: node a reconnected to NATS", 30, mark)
    nodes["a"].wait_synced(mark)  # ready for cluster features once its shared state is in sync again
    assert ready(nodes["a"]) == (200, {"ready": True, "problems": []})
