"""NatsBridge.run: a coroutine on the NATS loop (its thread, or the asyncio
reactor's own loop), its outcome a Deferred on the reactor; cluster.loop
refused on a reactor that is not asyncio."""

import json
import subprocess
import sys

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from relayrouter.cluster.bridge import NatsBridge, NotConnected
from relayrouter.config.cluster import ClusterConfig
from relayrouter.config.check import ConfigError

from ..connectors.processes import ROOT, twistd
from .harness import LOOPS, NatsServer, Node


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


@pytest.mark.parametrize("loop", LOOPS)
def test_run_on_either_loop_from_a_process_of_its_own(tmp_path, loop):
    """The same API on a loop thread (default reactor) and on the asyncio
    reactor's own loop: results, failures, NotConnected, and where fn runs."""
    nats = NatsServer(tmp_path)
    nats.start()
    try:
        probe = subprocess.run([sys.executable, "-m", "tests.cluster.bridge_probe", loop, nats.url,
                                "nats://127.0.0.1:1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    finally:
        nats.stop()
    lines = [line for line in probe.stdout.splitlines() if line.startswith("{")]
    assert probe.returncode == 0 and lines, probe.stdout + probe.stderr
    out = json.loads(lines[-1])
    assert "error" not in out, out["error"]
    assert out["connected"] and out["kv"] == [1, "v1"] and out["failure"] == "from the loop"
    assert out["dead"] == "NotConnected: NATS is not connected"
    if loop == "reactor":
        assert out["reactor"] == "AsyncioSelectorReactor"
        assert out["thread"] == "MainThread" and out["on_reactor_loop"]
    else:
        assert out["thread"] == "relayrouter-nats" and not out["on_reactor_loop"]


def test_the_reactor_loop_is_refused_on_another_reactor_naming_the_key():
    config = ClusterConfig(servers=("nats://127.0.0.1:1",), node="t", loop="reactor")
    with pytest.raises(ConfigError, match=r'cluster.loop: "reactor" runs NATS on the reactor\'s asyncio loop, '
                                          r"but this process runs \w+Reactor; start it with twistd "
                                          r"--reactor=asyncio"):
        NatsBridge(config, reactor, lambda batch: None, lambda state, text: None)


def test_a_node_asked_for_the_reactor_loop_on_epoll_stops_with_the_error(tmp_path):
    nats = NatsServer(tmp_path)  # never started: the node must stop before connecting
    node = Node(tmp_path, "n", nats.url, loop="reactor")
    node.twistd_options = []  # twistd's default reactor
    node.dir.joinpath("router.toml").write_text(node.toml.replace("{port}", "0").replace("{state}", str(node.dir)))
    run = subprocess.run(twistd("relayrouter", "--config", node.dir / "router.toml"), cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env=node.env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert 'relayrouter: configuration error: cluster.loop: "reactor" runs NATS' in run.stderr + run.stdout
    assert "Traceback" not in run.stderr + run.stdout
