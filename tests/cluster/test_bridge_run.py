"""NatsBridge.run: a coroutine on the NATS loop thread, its outcome a Deferred on the reactor."""

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from relayrouter.cluster.bridge import NatsBridge, NotConnected
from relayrouter.clusterconfig import ClusterConfig

from .harness import NatsServer


async def _kv_round_trip(nc, js, value):
    kv = await js.create_key_value(bucket="bridge_run_test")
    revision = await kv.put("k", value)
    entry = await kv.get("k")
    return revision, entry.value


async def _fails(nc, js):
    raise ValueError("from the loop")


def _bridge(url):
    states = []
    bridge = NatsBridge(ClusterConfig(servers=(url,), node="t", reconnect_wait=0.2), reactor,
                        lambda batch: None, lambda state, text: states.append(state))
    return bridge, states


@pytest_twisted.inlineCallbacks
def test_run_answers_on_the_reactor_with_the_result_or_the_failure(tmp_path):
    nats = NatsServer(tmp_path)
    nats.start()
    bridge, states = _bridge(nats.url)
    try:
        bridge.start()
        for _ in range(100):
            if bridge.connected:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        assert bridge.connected, states
        revision, value = yield bridge.run(_kv_round_trip, b"v1")
        assert (revision, value) == (1, b"v1")
        with pytest.raises(ValueError, match="from the loop"):
            yield bridge.run(_fails)
    finally:
        bridge.stop()
        nats.stop()


@pytest_twisted.inlineCallbacks
def test_run_without_a_connection_fails_with_not_connected(tmp_path):
    bridge, _ = _bridge("nats://127.0.0.1:1")  # nothing listens there
    try:
        bridge.start()
        with pytest.raises(NotConnected):
            yield bridge.run(_kv_round_trip, b"v")
    finally:
        bridge.stop()


def test_node_listeners_hear_up_once_and_gone_after_the_ttl():
    import msgpack
    from relayrouter.cluster import WIRE_VERSION, Cluster
    from relayrouter.cluster import subjects

    class Router:
        realms = {}

    clock = task.Clock()
    config = ClusterConfig(servers=("nats://127.0.0.1:1",), node="me", heartbeat_interval=1.0, heartbeat_ttl=3.0)
    cluster = Cluster(config, Router(), clock)
    heard = []
    cluster.node_listeners.append(lambda event, node: heard.append((event, node)))
    beat = msgpack.packb([WIRE_VERSION, "other", {}])
    hb = subjects.heartbeat_subject(config.subject_prefix)
    cluster._received([(hb, beat)])
    clock.advance(1)
    cluster._received([(hb, beat)])
    assert heard == [("up", "other")]
    clock.advance(3.5)
    cluster._heartbeat()
    assert heard == [("up", "other"), ("gone", "other")]
    assert cluster.live_nodes() == []
