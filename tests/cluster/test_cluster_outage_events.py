"""Events published while a node cannot reach NATS: delivered on that node
only, dropped for the others at once (never sent late when NATS is back), and
counted in relayrouter_cluster_events_total{kind="dropped_outage"}.

Node a reaches NATS through a link the test cuts; node b keeps its own
connection (and its subscription) throughout, so an event a sent late would
reach it."""

import re
import urllib.request

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import threads

from ..support import connect_ws, eventually
from .harness import PATIENCE, NatsServer, Node, sleep
from .link import Link
from .test_cluster_pubsub import nats_has, subscribe

BEATS = "heartbeat_interval = 0.25\nheartbeat_ttl = 1.0\n"
TOPIC = "com.outage.readings"


@pytest.fixture
def cut_off(tmp_path):
    nats = NatsServer(tmp_path)
    nats.start()
    link = Link(nats.port)
    link.start()
    nodes = {}
    try:
        nodes["a"] = Node(tmp_path, "a", link.url, extra=BEATS)
        nodes["b"] = Node(tmp_path, "b", nats.url, extra=BEATS)
        for node in nodes.values():
            node.start()
        yield nats, link, nodes
    finally:
        for node in nodes.values():
            node.stop()
        link.stop()
        nats.stop()


def events_metric(node, kind: str) -> float:
    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=5) as r:
        text = r.read().decode()
    return float(re.search(rf'^relayrouter_cluster_events_total\{{kind="{kind}"\}} (\S+)$', text, re.M).group(1))


def connected(node) -> bool:
    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=5) as r:
        return "relayrouter_cluster_connected 1.0" in r.read().decode()


@pytest_twisted.inlineCallbacks
def until(check, seconds: float = PATIENCE):
    for _ in range(int(seconds / 0.05)):
        if (yield threads.deferToThread(check)):
            return
        yield sleep(0.05)
    raise AssertionError(f"{check} never held")


@pytest_twisted.inlineCallbacks
def test_events_published_during_an_outage_stay_on_their_node_and_are_counted(cut_off):
    nats, link, nodes = cut_off
    publisher = yield connect_ws(nodes["a"])
    here, _ = yield subscribe((yield connect_ws(nodes["a"])), TOPIC)
    there, _ = yield subscribe((yield connect_ws(nodes["b"])), TOPIC)
    yield nats_has(nats, "b", f"relayrouter.ev.realm1.{TOPIC}")
    options = PublishOptions(acknowledge=True)
    yield publisher.publish(TOPIC, "before", options=options)
    yield eventually(lambda: len(there.events) == 1)

    link.cut()
    yield until(lambda: not connected(nodes["a"]))
    for i in range(20):
        yield publisher.publish(TOPIC, f"during-{i}", options=options)
    yield eventually(lambda: len(here.events) == 21)  # local delivery never depends on NATS
    assert events_metric(nodes["a"], "dropped_outage") == 20

    link.start()
    yield until(lambda: connected(nodes["a"]))
    yield until(lambda: nats.connection("a") is not None)
    # The node may see its connection back a moment before its publications reach NATS again:
    # publish until one reaches b (each one either reaches b or is counted dropped).
    after = []
    for k in range(int(PATIENCE / 0.5)):
        after.append(f"after-{k}")
        yield publisher.publish(TOPIC, after[-1], options=options)
        try:
            yield eventually(lambda: len(there.events) >= 2, 0.5)
            break
        except AssertionError:
            continue
    yield sleep(0.3)  # a late "after" still on its way is in
    received = [e[0][0] for e in there.events]
    # Per publisher order: anything sent late would have come before the first "after".
    assert received[0] == "before" and received[1:] and set(received[1:]) <= set(after), received
    assert [e[0][0] for e in here.events] == ["before", *(f"during-{i}" for i in range(20)), *after]
    assert events_metric(nodes["a"], "dropped_outage") == 20 + len(after) - len(received[1:])
    assert events_metric(nodes["b"], "dropped_outage") == 0
