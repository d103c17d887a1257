"""The cluster view: wamp.session.* and wamp.subscription.* answered for every
node, testaments of a kill -9ed node's sessions published once by a
survivor, and all of it right again after the NATS server restarts.
Three real twistd nodes, our own nats-server (with JetStream), Autobahn clients."""

import re
import time

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import SubscribeOptions
from twisted.internet import defer, reactor, threads

from ..support import connect_ws
from .harness import LOOPS, PATIENCE, NatsServer, Node, sleep, stop_all

BEATS = "heartbeat_interval = 0.25\nheartbeat_ttl = 1.0\n"
TTL = 1.0


def _start(tmp_path, loop):
    nats = NatsServer(tmp_path)
    nats.start()
    nodes = {}
    for name in ("a", "b", "c"):
        nodes[name] = Node(tmp_path, name, nats.url, extra=BEATS, loop=loop)
        nodes[name].start()
    return nats, nodes



@pytest.fixture(scope="module", params=LOOPS)
def shared(tmp_path_factory, request):
    """Three nodes, nats-py on a loop thread or on the asyncio reactor's loop."""
    nats, nodes = _start(tmp_path_factory.mktemp(f"view-{request.param}"), request.param)
    try:
        yield nats, nodes
    finally:
        stop_all(nats, nodes)


@pytest.fixture(params=LOOPS)
def cluster(tmp_path, request):
    nats, nodes = _start(tmp_path, request.param)
    try:
        yield nats, nodes
    finally:
        stop_all(nats, nodes)



class Inbox:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, *args, **kwargs) -> None:
        self.events.append((list(args), kwargs))


@defer.inlineCallbacks
def until(fn, want, seconds=PATIENCE):
    """Call ``fn()`` (a Deferred) until it gives ``want`` (or ``want(value)`` is true)."""
    deadline = time.monotonic() + seconds
    while True:
        value = yield fn()
        if (want(value) if callable(want) else value == want) or time.monotonic() > deadline:
            return value
        yield sleep(0.1)


@defer.inlineCallbacks
def sessions_everywhere(count, *askers):
    """Until every asker's wamp.session.count says ``count`` (heartbeats carry them)."""
    for asker in askers:
        value = yield until(lambda asker=asker: asker.call("wamp.session.count"), count)
        assert value == count


def sid(session) -> int:
    return session.details.session


def log_count(node, pattern: str) -> int:
    return sum(1 for line in node.all_output if re.search(pattern, line))


def metric(node, name: str) -> float:
    import urllib.request

    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=5) as r:
        text = r.read().decode()
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


# ---------------------------------------------------------------- meta API


@pytest_twisted.inlineCallbacks
def test_session_list_get_and_kill_answer_for_every_node(shared):
    nats, nodes = shared
    sa = yield connect_ws(nodes["a"])
    sb = yield connect_ws(nodes["b"])
    sc = yield connect_ws(nodes["c"])
    yield sessions_everywhere(3, sa)

    listed = yield sa.call("wamp.session.list")
    assert sorted(listed) == sorted([sid(sa), sid(sb), sid(sc)])
    assert sorted((yield sb.call("wamp.session.list", ["anonymous"]))) == sorted(listed)
    assert (yield sc.call("wamp.session.list", ["nobody"])) == []

    details = yield sa.call("wamp.session.get", sid(sc))
    assert details["session"] == sid(sc) and details["authid"] == sc.details.authid
    assert details["authrole"] == "anonymous" and details["transport"]["type"] == "websocket"
    with pytest.raises(ApplicationError) as e:
        yield sa.call("wamp.session.get", 12345)
    assert e.value.error == "wamp.error.no_such_session" and "on any node" in e.value.args[0]

    yield sa.call("wamp.session.kill", sid(sc), reason="com.lab.go_away", message="bye")
    left = yield sc.left
    assert left.reason == "com.lab.go_away" and left.message == "bye"
    assert sorted((yield sb.call("wamp.session.list"))) == sorted([sid(sa), sid(sb)])
    with pytest.raises(ApplicationError) as e:
        yield sa.call("wamp.session.kill", sid(sc))
    assert e.value.error == "wamp.error.no_such_session"
    with pytest.raises(ApplicationError) as e:
        yield sa.call("wamp.session.kill", sid(sa))
    assert e.value.error == "wamp.error.no_such_session"  # "the caller's own session"

    sd = yield connect_ws(nodes["c"])
    killed = yield sa.call("wamp.session.kill_by_authid", sd.details.authid, reason="com.lab.by_authid")
    assert killed == 1
    assert (yield sd.left).reason == "com.lab.by_authid"
    se = yield connect_ws(nodes["b"])
    sf = yield connect_ws(nodes["c"])
    # Every anonymous session but the caller, on every node: sb, se on b and sf on c.
    assert (yield sa.call("wamp.session.kill_by_authrole", "anonymous")) == 3
    for session in (sb, se, sf):
        assert (yield session.left).reason == "wamp.close.normal"
    assert (yield sa.call("wamp.session.list")) == [sid(sa)]
    sa.leave()


@pytest_twisted.inlineCallbacks
def test_subscription_lookups_answer_for_every_node_with_one_id_per_topic(shared):
    nats, nodes = shared
    sa = yield connect_ws(nodes["a"])
    sb = yield connect_ws(nodes["b"])
    sc = yield connect_ws(nodes["c"])
    on_b = yield sb.subscribe(Inbox(), "com.view.temp")
    on_c = yield sc.subscribe(Inbox(), "com.view.temp")
    prefix = yield sc.subscribe(Inbox(), "com.view.", options=SubscribeOptions(match="prefix"))
    assert on_b.id == on_c.id  # one topic, one ID on every node
    yield sessions_everywhere(3, sa)

    assert (yield sa.call("wamp.subscription.lookup", "com.view.temp")) == on_b.id
    assert (yield sa.call("wamp.subscription.lookup", "com.view.", {"match": "prefix"})) == prefix.id
    assert (yield sa.call("wamp.subscription.lookup", "com.view.nothing")) is None
    assert sorted((yield sa.call("wamp.subscription.match", "com.view.temp"))) == sorted([on_b.id, prefix.id])
    assert (yield sa.call("wamp.subscription.match", "org.none")) is None
    details = yield sa.call("wamp.subscription.get", on_b.id)
    assert details["id"] == on_b.id and details["uri"] == "com.view.temp" and details["match"] == "exact"
    assert sorted((yield sa.call("wamp.subscription.list_subscribers", on_b.id))) == sorted([sid(sb), sid(sc)])
    assert (yield sb.call("wamp.subscription.list_subscribers", on_b.id)) == [sid(sb), sid(sc)]
    assert (yield sa.call("wamp.subscription.count_subscribers", on_b.id)) == 2
    listed = yield sa.call("wamp.subscription.list")
    assert on_b.id in listed["exact"] and prefix.id in listed["prefix"]
    with pytest.raises(ApplicationError) as e:
        yield sa.call("wamp.subscription.get", 4242)
    assert e.value.error == "wamp.error.no_such_subscription"
    with pytest.raises(ApplicationError) as e:
        yield sa.call("wamp.subscription.count_subscribers", 4242)
    assert e.value.error == "wamp.error.no_such_subscription"

    yield on_c.unsubscribe()
    assert (yield sa.call("wamp.subscription.list_subscribers", on_b.id)) == [sid(sb)]
    for session in (sa, sb, sc):
        session.leave()


@pytest_twisted.inlineCallbacks
def test_testaments_too_large_to_keep_in_nats_are_refused_and_the_session_goes_on(shared):
    nats, nodes = shared
    session = yield connect_ws(nodes["a"])
    with pytest.raises(ApplicationError) as e:
        yield session.call("wamp.session.add_testament", "com.view.big", ["x" * 600_000])
    assert e.value.error == "wamp.error.invalid_argument" and "at most 524288 bytes per session" in e.value.args[0]
    yield session.call("wamp.session.add_testament", "com.view.small", ["fits"])
    assert metric(nodes["a"], "relayrouter_cluster_testaments_stored") == 1
    session.leave()
    yield session.left
    for _ in range(100):
        if metric(nodes["a"], "relayrouter_cluster_testaments_stored") == 0:
            break
        yield sleep(0.05)
    assert metric(nodes["a"], "relayrouter_cluster_testaments_stored") == 0  # deleted once published


# --------------------------------------------------- liveness and testaments


@pytest_twisted.inlineCallbacks
def test_a_killed_nodes_testaments_are_published_once_and_its_sessions_vanish(cluster):
    nats, nodes = cluster
    sa = yield connect_ws(nodes["a"])
    sb = yield connect_ws(nodes["b"])
    sc = yield connect_ws(nodes["c"])
    inbox_a, inbox_b = Inbox(), Inbox()
    yield sa.subscribe(inbox_a, "com.view.will")
    yield sb.subscribe(inbox_b, "com.view.will")
    sub_c = yield sc.subscribe(Inbox(), "com.view.will")
    yield sc.call("wamp.session.add_testament", "com.view.will", [sid(sc), "detached"], {"k": 1},
                  scope="detached")
    yield sc.call("wamp.session.add_testament", "com.view.will", [sid(sc), "destroyed"], {})
    yield sessions_everywhere(3, sa, sb)
    assert (yield sa.call("wamp.subscription.count_subscribers", sub_c.id)) == 3
    assert metric(nodes["c"], "relayrouter_cluster_testaments_stored") == 1

    nodes["c"].kill9()
    killed = time.monotonic()
    for inbox in (inbox_a, inbox_b):
        for _ in range(300):
            if len(inbox.events) >= 2:
                break
            yield sleep(0.05)
    # Detached-scope first, as the spec says, and the same events on both other nodes.
    assert inbox_a.events == [([sid(sc), "detached"], {"k": 1}), ([sid(sc), "destroyed"], {})]
    assert inbox_b.events == inbox_a.events
    listed = yield sa.call("wamp.session.list")
    gone_after = time.monotonic() - killed
    assert sorted(listed) == sorted([sid(sa), sid(sb)])
    assert gone_after < TTL + 0.25 + 10  # the TTL, one beat, the claim and slack for a loaded machine
    assert (yield sb.call("wamp.subscription.count_subscribers", sub_c.id)) == 2

    yield sleep(2 * TTL)  # no second survivor publishes them again
    assert len(inbox_a.events) == 2 and len(inbox_b.events) == 2
    published = [log_count(nodes[n], r"published 2 testament\(s\) of session \d+ of node c") for n in ("a", "b")]
    assert sorted(published) == [0, 1]
    counted = [metric(nodes[n], "relayrouter_cluster_testaments_published_total") for n in ("a", "b")]
    assert sorted(counted) == [0, 2]
    sa.leave()
    sb.leave()


@pytest_twisted.inlineCallbacks
def test_testaments_published_at_a_normal_leave_are_not_published_again_when_the_node_dies(cluster):
    nats, nodes = cluster
    sa = yield connect_ws(nodes["a"])
    sc = yield connect_ws(nodes["c"])
    kept = yield connect_ws(nodes["c"])
    inbox = Inbox()
    yield sa.subscribe(inbox, "com.view.will")
    yield sc.call("wamp.session.add_testament", "com.view.will", ["left"])
    yield kept.call("wamp.session.add_testament", "com.view.will", ["flushed"])
    yield kept.call("wamp.session.flush_testaments")
    yield sessions_everywhere(3, sa)
    sc.leave()
    for _ in range(200):
        if inbox.events:
            break
        yield sleep(0.05)
    assert inbox.events == [(["left"], {})]

    nodes["c"].kill9()
    yield threads.deferToThread(nodes["a"].wait_output, "cluster: node c is gone", PATIENCE)
    yield sleep(3 * TTL)
    assert inbox.events == [(["left"], {})]
    sa.leave()


@pytest_twisted.inlineCallbacks
def test_after_nats_restarts_counts_answers_and_testaments_are_right_again(cluster):
    nats, nodes = cluster
    sa = yield connect_ws(nodes["a"])
    sb = yield connect_ws(nodes["b"])
    sc = yield connect_ws(nodes["c"])
    yield sc.call("wamp.session.add_testament", "com.view.will", ["before"])
    yield sessions_everywhere(3, sa, sb, sc)

    marks = {name: len(node.all_output) for name, node in nodes.items()}
    nats.stop()
    for name, node in nodes.items():
        yield threads.deferToThread(node.wait_output, f"cluster: node {name} lost NATS", 30, marks[name])
    # Local traffic goes on, and a testament added meanwhile is kept for later.
    yield sc.call("wamp.session.add_testament", "com.view.will", ["during"])
    assert (yield sa.call("wamp.session.list")) == [sid(sa)]
    nats.start()
    for name, node in nodes.items():
        yield threads.deferToThread(node.wait_output, f"cluster: node {name} reconnected to NATS", 30, marks[name])

    yield sessions_everywhere(3, sa, sb, sc)
    listed = yield until(lambda: sb.call("wamp.session.list"), lambda ids: len(ids) == 3)
    assert sorted(listed) == sorted([sid(sa), sid(sb), sid(sc)])
    assert (yield sa.call("wamp.session.get", sid(sc)))["session"] == sid(sc)

    inbox = Inbox()
    yield sa.subscribe(inbox, "com.view.will")
    yield sleep(3 * TTL)  # every node has been connected a TTL again: a death can be judged
    nodes["c"].kill9()
    for _ in range(300):
        if len(inbox.events) >= 2:
            break
        yield sleep(0.05)
    assert inbox.events == [(["before"], {}), (["during"], {})]
    yield sleep(2 * TTL)
    assert len(inbox.events) == 2
    sa.leave()
    sb.leave()


class _Cluster:
    """What ClusterView needs of a Cluster, for driving its testaments' claims directly."""

    def __init__(self, bridge, node) -> None:
        from collections import Counter

        from relayrouter.config.cluster import ClusterConfig

        self.bridge = bridge
        self.reactor = reactor
        self.config = ClusterConfig(servers=("nats://unused",), node=node)
        self.counters = Counter()
        self.handlers = {}
        self.node_listeners = []
        self.state_listeners = []


async def _race(nc, js, claimers, entries):
    import asyncio

    kv = await js.create_key_value(bucket="relayrouter_testaments", history=1)
    for key, value in entries.items():
        await kv.put(key, value)
    for claimer in claimers:
        claimer._loop_kv["relayrouter_testaments"] = kv
    return await asyncio.gather(*(claimer._claim(nc, js, "dead", None, frozenset({"realm1"}))
                                  for claimer in claimers))


@pytest_twisted.inlineCallbacks
def test_two_survivors_claiming_at_once_never_take_the_same_testaments(tmp_path):
    import msgpack

    from relayrouter.cluster.bridge import NatsBridge
    from relayrouter.cluster.view import ClusterView
    from relayrouter.config.cluster import ClusterConfig

    nats = NatsServer(tmp_path)
    nats.start()
    bridge = NatsBridge(ClusterConfig(servers=(nats.url,), node="t", reconnect_wait=0.2), reactor,
                        lambda batch: None, lambda state, text: None)
    try:
        bridge.start()
        for _ in range(200):
            if bridge.connected:
                break
            yield sleep(0.05)
        claimers = [ClusterView(_Cluster(bridge, name)).testaments for name in ("s1", "s2", "s3")]
        entries = {f"dead.{n}": msgpack.packb([1, "realm1", n, ["dead", 7], None, {}, "x", "y"])
                   for n in range(1, 41)}
        entries["alive.1"] = msgpack.packb([1, "realm1", 1, ["alive", 8], None, {}, "x", "y"])
        entries["dead.99"] = msgpack.packb([1, "realm1", 99, ["dead", 7], ["alive", 8], {}, "x", "y"])
        taken = yield bridge.run(_race, claimers, entries)
        keys = [key for claimed in taken for key, record in claimed]
        assert sorted(keys) == sorted(k for k in entries if k.startswith("dead.") and k != "dead.99")
        assert len(keys) == len(set(keys))  # each entry claimed by exactly one survivor
        for claimer, claimed in zip(claimers, taken):
            assert all(record[4] == [claimer.node, claimer.incarnation] for key, record in claimed)
    finally:
        bridge.stop()
        nats.stop()


@pytest_twisted.inlineCallbacks
def test_a_node_frozen_past_the_ttl_does_not_publish_again_what_a_survivor_published(cluster):
    import os
    import signal

    nats, nodes = cluster
    sa = yield connect_ws(nodes["a"])
    sc = yield connect_ws(nodes["c"])
    inbox = Inbox()
    yield sa.subscribe(inbox, "com.view.will")
    yield sc.call("wamp.session.add_testament", "com.view.will", ["once"])
    yield sessions_everywhere(2, sa)
    yield sleep(2 * TTL)  # every node connected a TTL: a death can be judged

    marks = {name: len(node.all_output) for name, node in nodes.items()}
    os.kill(nodes["c"].proc.pid, signal.SIGSTOP)  # a VM pause, a swapped-out process: alive, silent
    try:
        for _ in range(300):
            if inbox.events:
                break
            yield sleep(0.05)
        assert inbox.events == [(["once"], {})]  # the survivors took it: c looked dead
    finally:
        os.kill(nodes["c"].proc.pid, signal.SIGCONT)
    yield threads.deferToThread(nodes["c"].wait_output, "cluster: another node published the testaments of "
                                f"session {sid(sc)}", 30, marks["c"])
    sc.leave()  # its own node knows they were published: not again
    yield sc.left
    yield sleep(2 * TTL)
    assert inbox.events == [(["once"], {})]
    sa.leave()


@pytest_twisted.inlineCallbacks
def test_a_second_process_with_a_nodes_name_is_told_and_takes_none_of_its_testaments(cluster):
    nats, nodes = cluster
    sa = yield connect_ws(nodes["a"])
    inbox = Inbox()
    yield sa.subscribe(inbox, "com.view.will")
    yield sa.call("wamp.session.add_testament", "com.view.will", ["mine"])
    twin_home = nodes["a"].dir.parent.parent / "twin"
    twin_home.mkdir()
    twin = Node(twin_home, "a", nats.url, extra=BEATS, loop=nodes["a"].loop)
    twin.start()
    try:
        yield threads.deferToThread(twin.wait_output, "cluster: another process runs as node a too", 30)
        yield sleep(2 * TTL)
        assert inbox.events == []  # a's session is alive: nobody published its testament
    finally:
        twin.stop()
    sa.leave()
    yield sa.left


@pytest_twisted.inlineCallbacks
def test_a_node_stopped_cleanly_publishes_its_sessions_testaments_itself_once(cluster):
    nats, nodes = cluster
    sa = yield connect_ws(nodes["a"])
    sc = yield connect_ws(nodes["c"])
    inbox = Inbox()
    yield sa.subscribe(inbox, "com.view.will")
    yield sc.call("wamp.session.add_testament", "com.view.will", ["bye"])
    yield sessions_everywhere(2, sa)
    yield threads.deferToThread(nodes["c"].stop)  # SIGTERM: the sessions end, then NATS is closed
    yield threads.deferToThread(nodes["a"].wait_output, "cluster: node c is gone", PATIENCE)
    yield sleep(3 * TTL)  # the survivors found nothing left to publish
    assert inbox.events == [(["bye"], {})]
    assert not any(log_count(nodes[n], "testament\\(s\\) of session") for n in ("a", "b"))
    sa.leave()
