"""Events another node routed, as they arrive from NATS, read in memory: a real
Cluster (never started, so no NATS) fed the bytes its bridge would hand it, and
a realm's real broker sending to in-memory peers."""

import msgpack
import pytest
from autobahn.wamp import message as m
from twisted.internet import task

from relayrouter.cluster import WIRE_VERSION, Cluster, subjects
from relayrouter.config.cluster import ClusterConfig
from relayrouter.testing import join, make_router

TOPIC = "com.example.temperature"


def _event(publication_id, topic=TOPIC, args=None, kwargs=None):
    return msgpack.packb([WIRE_VERSION, publication_id, topic, args, kwargs, None, None, None, None, None],
                         use_bin_type=True)


@pytest.fixture
def node():
    """A node's cluster with one realm attached, a local subscriber on TOPIC,
    and the NATS subject the other nodes' events on TOPIC arrive on."""
    router = make_router("realm1")
    config = ClusterConfig(servers=("nats://127.0.0.1:1",), node="me")
    cluster = Cluster(config, router, task.Clock())
    cluster.attach(router.realms["realm1"])
    subscriber = join(router)
    subscriber.receive([32, 1, {}, TOPIC])
    assert isinstance(subscriber.take()[-1], m.Subscribed)
    subject = subjects.event_subject(subjects.realm_base(config.subject_prefix, "realm1"), TOPIC)
    yield cluster, subscriber, subject
    cluster.bridge._loop.close()  # made for the loop thread, which never started


@pytest.mark.parametrize("bad", [
    {"args": {"not": "a list"}},
    {"kwargs": ["not", "a", "dict"]},
    {"topic": 42},
], ids=["args", "kwargs", "topic"])
def test_a_malformed_event_from_another_node_is_refused_counted_and_logged_once(node, bad, logged_errors):
    cluster, subscriber, subject = node
    logged_errors.expect(r"cluster: cannot dispatch an event from NATS subject .*not an event of the "
                         r"cluster's wire format")
    cluster._received([(subject, _event(1, **bad)), (subject, _event(2, args=[21.5]))])
    assert cluster.counters["events_invalid"] == 1
    assert len(logged_errors.events) == 1
    # The good event right behind it in the same batch is delivered, and only it.
    [event] = subscriber.take()
    assert isinstance(event, m.Event) and event.publication == 2 and event.args == [21.5]
    assert cluster.counters["events_in"] == 1  # "in" counts what was dispatched here
    cluster._received([(subject, _event(3, args=[22.0]))])
    assert [e.publication for e in subscriber.take()] == [3]
    assert cluster.counters["events_invalid"] == 1 and cluster.counters["events_in"] == 2


def test_bytes_that_are_no_event_are_refused_the_same_way(node, logged_errors):
    cluster, subscriber, subject = node
    logged_errors.expect(r"cluster: cannot dispatch an event from NATS subject")
    cluster._received([(subject, b"\xc1 not msgpack"), (subject, _event(2, args=[1]))])
    assert cluster.counters["events_invalid"] == 1 and len(logged_errors.events) == 1
    assert [e.args for e in subscriber.take()] == [[1]]
