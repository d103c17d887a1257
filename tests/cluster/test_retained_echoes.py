"""Retained events and the echoes of a node's own writes, in memory: a real Cluster
(never started, so no NATS) whose shared state is fed, as its watch would feed it,
the echo of a retained event it wrote and has taken back since (evicted by the
realm's max_retained_events), and whose writes to the bucket are recorded."""

import pytest
from twisted.internet import defer, task

from relayrouter.cluster import Cluster
from relayrouter.cluster.state import RETAINED, retained_key
from relayrouter.config.cluster import ClusterConfig
from relayrouter.core.realm import RealmPolicy
from relayrouter.testing import join, make_router


class _Security:
    """What the shared state asks of the router's security: nothing of it is used here."""

    class guard:
        revocation_listeners: list = []
        unrevocation_listeners: list = []

    @staticmethod
    def share_tickets(shared) -> None:
        pass


@pytest.fixture
def node():
    """A node of realm1 (at most three retained events) whose shared state is in sync; the
    bucket writes it makes are recorded as (what, key, value or None)."""
    router = make_router("other")
    router.add_realm("realm1", policy=RealmPolicy(max_retained_events=3))
    config = ClusterConfig(servers=("nats://127.0.0.1:1",), node="me")
    cluster = Cluster(config, router, task.Clock())
    cluster.attach(router.realms["realm1"])
    cluster.share_state(_Security())
    state = cluster.state
    state.synced = True
    writes = []

    def run(operation, side, what, key, *rest):
        value = rest[0] if operation.__name__ == "put" else None
        writes.append((what, key, value))
        return defer.succeed(None)

    cluster.bridge.run = run
    publisher = join(router, "realm1")
    yield router, state, publisher, writes
    cluster.bridge._loop.close()  # made for the loop thread, which never started


def _publish(publisher, request, topic, value):
    publisher.receive([16, request, {"retain": True, "acknowledge": True}, topic, [value]])
    publisher.take()


def test_an_echo_of_a_put_taken_back_since_is_not_applied_again(node):
    router, state, publisher, writes = node
    broker = router.realms["realm1"].broker
    for i in range(1, 5):
        _publish(publisher, i, f"t.{i}", i)
    key = {i: retained_key("realm1", f"t.{i}") for i in range(1, 6)}
    put_of_1 = next(value for what, k, value in writes if k == key[1] and value is not None)
    assert (RETAINED, key[1], None) in writes  # t.4 pushed t.1 out, here and in the bucket
    # The watch brings the echo of t.1's put only now, and of its removal after that.
    state._update(state._generation, RETAINED, key[1], 1, put_of_1)
    state._update(state._generation, RETAINED, key[1], 5, None)
    _publish(publisher, 5, "t.5", 5)
    assert sorted(broker.retained) == ["t.3", "t.4", "t.5"]
    removed = [k for what, k, value in writes if value is None]
    assert removed == [key[1], key[2]]  # never t.3, which the bucket must keep


def test_a_removal_the_bucket_already_holds_at_a_resync_is_not_remembered(node):
    """A new watch's snapshot brings no echo of a removal the bucket holds: the node forgets it
    took that event back, instead of keeping it for ever."""
    router, state, publisher, writes = node
    for i in range(1, 5):
        _publish(publisher, i, f"t.{i}", i)
    key = {i: retained_key("realm1", f"t.{i}") for i in range(1, 5)}
    puts = {k: value for what, k, value in writes if value is not None}
    assert key[1] in state._taken_back
    state._reconcile_retained({key[i]: (i, puts[key[i]]) for i in (2, 3, 4)})
    assert state._taken_back == {}
    assert sorted(router.realms["realm1"].broker.retained) == ["t.2", "t.3", "t.4"]


def test_what_the_watch_delivers_after_the_node_stopped_is_not_applied(node):
    """Stopping, the node closes its stores right after NATS; a change its watch had already
    handed to the reactor then arrived at a closed store (CI: a traceback from a node's deny
    list at its stop). It is ignored, and nothing is written."""
    router, state, publisher, writes = node
    broker = router.realms["realm1"].broker
    _publish(publisher, 1, "t.1", 1)
    put_of_1 = next(value for what, k, value in writes if value is not None)
    watching = state._generation
    state.cluster.bridge.stop = lambda: None  # its loop thread never started (no NATS here)
    state.cluster.stop()
    written = len(writes)
    state._update(watching, RETAINED, retained_key("realm1", "t.2"), 7, put_of_1)
    state._update(watching, RETAINED, retained_key("realm1", "t.1"), 8, None)
    assert sorted(broker.retained) == ["t.1"] and not state.synced
    _publish(publisher, 2, "t.3", 3)  # a change made now waits for a sync that never comes
    assert len(writes) == written
