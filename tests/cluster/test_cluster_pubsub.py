"""Publish/subscribe across router nodes joined by our own nats-server:
three real twistd nodes, Autobahn clients on different nodes."""

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions, SubscribeOptions
from twisted.internet import defer, threads

from ..support import connect_raw, connect_ws, eventually
from .harness import LOOPS, PATIENCE, NatsServer, Node, sleep, stop_all


@pytest.fixture(scope="module", params=LOOPS)
def cluster(tmp_path_factory, request):
    """Three nodes with nats-py on a loop thread, or on the asyncio reactor's loop."""
    tmp = tmp_path_factory.mktemp(f"cluster-{request.param}")
    nats = NatsServer(tmp)
    nats.start()
    nodes = {}
    try:
        for name in ("a", "b", "c"):
            nodes[name] = Node(tmp, name, nats.url, loop=request.param)
            nodes[name].start()
        yield nats, nodes
    finally:
        stop_all(nats, nodes)


class Inbox:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, *args, details=None, **kwargs) -> None:
        self.events.append((list(args), kwargs, details.topic, details.publisher))


@defer.inlineCallbacks
def subscribe(session, topic, match="exact"):
    inbox = Inbox()
    sub = yield session.subscribe(inbox, topic, options=SubscribeOptions(match=match, details=True))
    return inbox, sub


@defer.inlineCallbacks
def nats_has(nats, node: str, subject: str, present: bool = True):
    """Wait until the NATS server lists (or no longer lists) ``subject`` for ``node``."""
    for _ in range(400):
        subjects = yield threads.deferToThread(nats.subjects, node)
        if (subject in subjects) == present:
            return subjects
        yield sleep(0.025)
    raise AssertionError(f"NATS: {subject} {'never' if present else 'still'} subscribed by {node}: {subjects}")


def cluster_events(node) -> dict:
    """relayrouter_cluster_events_total by kind, from the node's /metrics (loopback needs no token)."""
    import re
    import urllib.request

    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {kind: float(value) for kind, value in
            re.findall(r'^relayrouter_cluster_events_total\{kind="(\w+)"\} (\S+)$', text, re.M)}



@pytest_twisted.inlineCallbacks
def test_exact_prefix_and_wildcard_events_cross_nodes(cluster):
    nats, nodes = cluster
    publisher = yield connect_ws(nodes["a"])
    local = yield connect_ws(nodes["a"])
    remote = yield connect_ws(nodes["b"])
    exact, _ = yield subscribe(remote, "com.lab.temp")
    prefix, _ = yield subscribe(remote, "com.lab.t", "prefix")
    wildcard, _ = yield subscribe(remote, "com..temp", "wildcard")
    here, _ = yield subscribe(local, "com.lab.temp")
    yield nats_has(nats, "b", "relayrouter.ev.realm1.com.lab.temp")
    yield nats_has(nats, "b", "relayrouter.ev.realm1.com.lab.>")  # the prefix's last component is partial
    yield nats_has(nats, "b", "relayrouter.ev.realm1.com.*.temp")

    for topic, n in (("com.lab.temp", 1), ("com.lab.tx", 2), ("com.lab.other", 3), ("com.zoo.temp", 4),
                     ("org.lab.temp", 5)):
        yield publisher.publish(topic, n, unit="C", options=PublishOptions(acknowledge=True))
    yield from eventually(lambda: len(exact.events) == 1 and len(prefix.events) == 2
                          and len(wildcard.events) == 2 and len(here.events) == 1)
    assert exact.events == [([1], {"unit": "C"}, "com.lab.temp", None)]
    assert [(e[0], e[2]) for e in prefix.events] == [([1], "com.lab.temp"), ([2], "com.lab.tx")]
    assert [(e[0], e[2]) for e in wildcard.events] == [([1], "com.lab.temp"), ([4], "com.zoo.temp")]
    # The publisher's own node routed its event once (NATS echoes nothing back).
    yield sleep(0.3)
    assert here.events == [([1], {"unit": "C"}, "com.lab.temp", None)]
    assert len(exact.events) == 1 and len(prefix.events) == 2 and len(wildcard.events) == 2
    for session in (publisher, local, remote):
        session.leave()


@pytest_twisted.inlineCallbacks
def test_only_nodes_with_interest_receive_and_interest_follows_subscriptions(cluster):
    nats, nodes = cluster
    publisher = yield connect_ws(nodes["a"])
    subscriber = yield connect_ws(nodes["b"])
    c_before = yield threads.deferToThread(nats.event_messages, "c")
    inbox, sub = yield subscribe(subscriber, "only.b.topic")
    yield nats_has(nats, "b", "relayrouter.ev.realm1.only.b.topic")
    for i in range(20):
        publisher.publish("only.b.topic", i)
    yield from eventually(lambda: len(inbox.events) == 20)
    c = yield threads.deferToThread(nats.connection, "c")
    # Node c has no subscriber: NATS sent it no event, and it asked for nothing of this.
    assert (yield threads.deferToThread(nats.event_messages, "c")) == c_before
    assert not any(s.startswith("relayrouter.ev.realm1.only") for s in c.get("subscriptions_list") or ())
    # The last local subscriber gone, node b withdraws its interest from NATS.
    yield sub.unsubscribe()
    yield nats_has(nats, "b", "relayrouter.ev.realm1.only.b.topic", present=False)
    b_before = yield threads.deferToThread(nats.event_messages, "b")
    for i in range(5):
        yield publisher.publish("only.b.topic", i, options=PublishOptions(acknowledge=True))
    a = yield threads.deferToThread(nats.connection, "a")
    b = yield threads.deferToThread(nats.event_messages, "b")
    assert a["in_msgs"] >= 25 and b == b_before
    # The nodes' own counters (/metrics) say the same.
    metrics = {}
    for name in ("a", "b", "c"):
        metrics[name] = yield threads.deferToThread(cluster_events, nodes[name])
    assert metrics["a"]["out"] >= 25 and metrics["c"]["in"] == metrics["c"]["unmatched"] == 0
    assert metrics["b"]["in"] >= 20 and metrics["a"]["dropped_out"] == 0
    publisher.leave()
    subscriber.leave()


@pytest_twisted.inlineCallbacks
def test_order_disclosure_and_receiver_lists_across_nodes(cluster):
    nats, nodes = cluster
    publisher = yield connect_ws(nodes["a"])
    b1 = yield connect_ws(nodes["b"])
    b2 = yield connect_ws(nodes["b"])
    c1 = yield connect_ws(nodes["c"])
    inboxes = {}
    for name, session in (("b1", b1), ("b2", b2), ("c1", c1)):
        inboxes[name], _ = yield subscribe(session, "seq.topic")
    yield nats_has(nats, "b", "relayrouter.ev.realm1.seq.topic")
    yield nats_has(nats, "c", "relayrouter.ev.realm1.seq.topic")
    for i in range(300):
        publisher.publish("seq.topic", i)
    yield from eventually(lambda: all(len(inbox.events) == 300 for inbox in inboxes.values()), seconds=PATIENCE)
    for inbox in inboxes.values():
        assert [e[0][0] for e in inbox.events] == list(range(300))  # one publisher: its order, everywhere
        inbox.events.clear()

    # Disclosure travels; eligible/exclude by session id pick sessions on other nodes.
    raw = yield connect_raw(nodes["a"])
    welcome = yield raw.hello()
    raw.send([16, 1, {"disclose_me": True, "acknowledge": True}, "seq.topic", ["who"]])
    assert (yield raw.next())[0] == 17  # PUBLISHED
    yield publisher.publish("seq.topic", "only-b2", options=PublishOptions(eligible=[b2.details.session],
                                                                           acknowledge=True))
    yield publisher.publish("seq.topic", "not-c1", options=PublishOptions(exclude=[c1.details.session],
                                                                          acknowledge=True))
    yield publisher.publish("seq.topic", "end")
    yield from eventually(lambda: all(inbox.events and inbox.events[-1][0] == ["end"]
                                      for inbox in inboxes.values()))
    sent = {name: [e[0][0] for e in inbox.events] for name, inbox in inboxes.items()}
    assert sent == {"b1": ["who", "not-c1", "end"], "b2": ["who", "only-b2", "not-c1", "end"],
                    "c1": ["who", "end"]}
    assert all(inbox.events[0][3] == welcome[1] for inbox in inboxes.values())
    assert all(e[3] is None for inbox in inboxes.values() for e in inbox.events[1:])
    raw.drop()
    for session in (publisher, b1, b2, c1):
        session.leave()


@pytest_twisted.inlineCallbacks
def test_nats_restart_local_traffic_goes_on_and_the_cluster_resyncs(cluster):
    nats, nodes = cluster
    publisher = yield connect_ws(nodes["a"])
    local = yield connect_ws(nodes["a"])
    remote = yield connect_ws(nodes["c"])
    here, _ = yield subscribe(local, "restart.topic")
    there, _ = yield subscribe(remote, "restart.topic")
    yield nats_has(nats, "c", "relayrouter.ev.realm1.restart.topic")
    yield publisher.publish("restart.topic", "before", options=PublishOptions(acknowledge=True))
    yield from eventually(lambda: len(there.events) == 1)
    marks = {name: len(node.all_output) for name, node in nodes.items()}
    yield threads.deferToThread(nats.stop)
    yield threads.deferToThread(nodes["a"].wait_output, "cluster: node a lost NATS", 30, marks["a"])
    # NATS away: this node's own traffic is unaffected.
    yield publisher.publish("restart.topic", "alone", options=PublishOptions(acknowledge=True))
    yield from eventually(lambda: len(here.events) == 2)
    # A subscription made while NATS is away is announced once it is back.
    late, _ = yield subscribe(remote, "restart.late")
    yield threads.deferToThread(nats.start)
    for name in ("a", "c"):
        yield threads.deferToThread(nodes[name].wait_output, f"cluster: node {name} reconnected to NATS",
                                    30, marks[name])
    yield nats_has(nats, "c", "relayrouter.ev.realm1.restart.topic")
    yield nats_has(nats, "c", "relayrouter.ev.realm1.restart.late")
    yield publisher.publish("restart.topic", "after", options=PublishOptions(acknowledge=True))
    yield publisher.publish("restart.late", "late", options=PublishOptions(acknowledge=True))
    yield from eventually(lambda: [e[0][0] for e in there.events][-1:] == ["after"] and late.events, seconds=PATIENCE)
    assert [e[0][0] for e in here.events] == ["before", "alone", "after"]
    assert [e[0][0] for e in late.events] == ["late"]
    for session in (publisher, local, remote):
        session.leave()


PPT = {"ppt_scheme": "wamp.eth", "ppt_serializer": "cbor", "ppt_cipher": "xsalsa20poly1305", "ppt_keyid": "0x5eC0"}
PPT_ROLES = {role: {"features": {"payload_passthru_mode": True}}
             for role in ("publisher", "subscriber", "caller", "callee")}


@pytest_twisted.inlineCallbacks
def test_passthru_payloads_and_filtered_subscriptions_across_nodes(cluster):
    nats, nodes = cluster
    raw_sub = yield connect_raw(nodes["b"])
    yield raw_sub.hello(details={"roles": PPT_ROLES})
    raw_sub.send([32, 1, {}, "com.sealed"])
    assert (yield raw_sub.next())[0] == 33  # SUBSCRIBED
    filtered = yield connect_raw(nodes["c"])
    yield filtered.hello()
    filtered.send([32, 2, {"_where": "temperature=gt:20;"}, "com.reading"])
    assert (yield filtered.next())[0] == 33
    yield nats_has(nats, "b", "relayrouter.ev.realm1.com.sealed")
    yield nats_has(nats, "c", "relayrouter.ev.realm1.com.reading")

    raw_pub = yield connect_raw(nodes["a"])
    yield raw_pub.hello(details={"roles": PPT_ROLES})
    raw_pub.send([16, 2, {**PPT, "acknowledge": True}, "com.sealed", ["\u0000AAFzZWFsZWT/"]])
    assert (yield raw_pub.next())[0] == 17
    event = yield raw_sub.next()
    assert event[0] == 36 and event[3] == PPT and event[4] == ["\u0000AAFzZWFsZWT/"]  # untouched across nodes

    publisher = yield connect_ws(nodes["a"])
    for temperature in (18, 25, 19, 30):
        yield publisher.publish("com.reading", {"temperature": temperature}, options=PublishOptions(acknowledge=True))
    yield publisher.publish("com.reading", {"temperature": 99, "last": True})
    events = []
    while not events or "last" not in events[-1][4][0]:
        events.append((yield filtered.next()))
    # The receiving node applied the filter.
    assert [e[4][0]["temperature"] for e in events] == [25, 30, 99]
    publisher.leave()
    filtered.drop()
    raw_sub.drop()
    raw_pub.drop()


@pytest_twisted.inlineCallbacks
def test_a_call_reaches_a_procedure_registered_on_another_node_only(cluster):
    nats, nodes = cluster
    callee = yield connect_ws(nodes["b"])
    yield callee.register(lambda: "from b", "com.only.on.b")
    caller_b = yield connect_ws(nodes["b"])
    caller_a = yield connect_ws(nodes["a"])
    assert (yield caller_b.call("com.only.on.b")) == "from b"
    for _ in range(300):  # a's copy of the registration directory follows within moments
        if (yield caller_a.call("wamp.registration.lookup", "com.only.on.b")) is not None:
            break
        yield sleep(0.02)
    assert (yield caller_a.call("com.only.on.b")) == "from b"
    for session in (callee, caller_a, caller_b):
        session.leave()
