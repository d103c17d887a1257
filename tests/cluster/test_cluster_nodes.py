"""The cluster's nodes as an operator sees them: ``relayrouter.cluster.nodes``
on any node lists every node (name, version, addresses, sessions, load, up
since, last heard) from their heartbeats, for console users only; /metrics
says the same; a node stopped leaves the view within the heartbeat TTL."""

import re
import time
import urllib.request
from datetime import datetime, timezone

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from relayrouter import __version__

from ..support import connect_ws
from .harness import PATIENCE, nats_and_nodes, sleep

BEATS = "heartbeat_interval = 0.25\nheartbeat_ttl = 1.0\n"
TICKETS = {"WATCH_TICKET": "watcher-ticket-0123456789", "DEV_TICKET": "device-ticket-0123456789"}
REALMS = """
[console]
roles = ["watcher"]

[[realms]]
name = "lab"
[realms.auth.ticket]
principals = [{ authid = "ops", role = "watcher", secret_env = "WATCH_TICKET" },
              { authid = "dev", role = "device", secret_env = "DEV_TICKET" }]
[[realms.roles]]
name = "watcher"
rules = [{ uri = "relayrouter.", match = "prefix", allow = ["call"] }]
[[realms.roles]]
name = "device"
rules = [{ uri = "relayrouter.", match = "prefix", allow = ["call"] }]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster-nodes")
    yield from nats_and_nodes(tmp, realms=REALMS, env=TICKETS, extra=BEATS)


def join(node, authid):
    ticket = TICKETS["WATCH_TICKET" if authid == "ops" else "DEV_TICKET"]
    return connect_ws(node, realm="lab", authmethods=["ticket"], authid=authid, ticket=ticket)


def metrics(node) -> str:
    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=5) as r:
        return r.read().decode()


def gauge(text: str, name: str, **labels) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


@pytest_twisted.inlineCallbacks
def listed_until(session, condition, seconds=PATIENCE):
    deadline = time.monotonic() + seconds
    while True:
        nodes = (yield session.call("relayrouter.cluster.nodes"))["nodes"]
        if condition(nodes):
            return nodes
        assert time.monotonic() < deadline, nodes
        yield sleep(0.05)


def iso(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


@pytest_twisted.inlineCallbacks
def test_every_node_lists_the_cluster_with_what_each_said_of_itself(cluster):
    nats, nodes = cluster
    ops = yield join(nodes["a"], "ops")
    devices = [(yield join(nodes["b"], "dev")), (yield join(nodes["b"], "dev"))]
    started = time.time()

    def b_has_two(rows):
        return len(rows) == 3 and next(r for r in rows if r["name"] == "b")["sessions"] == 2

    rows = yield listed_until(ops, b_has_two)
    assert [r["name"] for r in rows] == ["a", "b", "c"]  # this node first, then by name
    assert [r["self"] for r in rows] == [True, False, False]
    by_name = {r["name"]: r for r in rows}
    for name, row in by_name.items():
        assert row["version"] == __version__
        assert row["addresses"] == [f"127.0.0.1:{nodes[name].port}"], row
        assert isinstance(row["load"], float) and 0 <= row["load"] < 8, row
        assert iso(row["up_since"]) < started
        assert started - 5 < iso(row["last_heard"]) <= time.time() + 1, row
    assert by_name["a"]["sessions"] == 1 and by_name["c"]["sessions"] == 0

    # /metrics of node c says the same of node b.
    def b_in_metrics():
        text = metrics(nodes["c"])
        return (gauge(text, "relayrouter_cluster_node_info", node="b", version=__version__) == 1
                and gauge(text, "relayrouter_cluster_node_sessions", node="b") == 2 and text)

    deadline = time.monotonic() + PATIENCE
    while not (text := b_in_metrics()):
        assert time.monotonic() < deadline, metrics(nodes["c"])
        yield sleep(0.05)
    assert gauge(text, "relayrouter_cluster_node_up_since_seconds", node="b") < started
    assert gauge(text, "relayrouter_cluster_node_load", node="b") is not None
    assert gauge(text, "relayrouter_cluster_node_last_heard_seconds", node="c") >= started
    for session in [ops, *devices]:
        session.leave()


@pytest_twisted.inlineCallbacks
def test_who_is_no_console_user_is_refused(cluster):
    nats, nodes = cluster
    dev = yield join(nodes["a"], "dev")
    with pytest.raises(ApplicationError) as refused:
        yield dev.call("relayrouter.cluster.nodes")
    assert refused.value.error == "wamp.error.not_authorized"
    dev.leave()


@pytest_twisted.inlineCallbacks
def test_a_node_stopped_leaves_the_view(cluster):
    nats, nodes = cluster
    ops = yield join(nodes["a"], "ops")
    yield listed_until(ops, lambda rows: len(rows) == 3)
    nodes["c"].stop()
    rows = yield listed_until(ops, lambda rows: len(rows) == 2)
    assert [r["name"] for r in rows] == ["a", "b"]
    assert gauge(metrics(nodes["a"]), "relayrouter_cluster_node_sessions", node="c") is None
    ops.leave()
