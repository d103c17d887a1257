"""The per-connection send path and decoding, driven without sockets."""

import gc
import time

import cbor2
import msgpack
import pytest
from autobahn.wamp import message as m
from autobahn.wamp.serializer import CBORObjectSerializer, MsgPackObjectSerializer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from relayrouter.core.peer import TransportInfo
from relayrouter.core.realm import RealmPolicy
from relayrouter.core.router import Router, RouterObserver
from relayrouter.testing import join
from relayrouter.transport.connection import Connection, OutboundLimits
from relayrouter.transport.serializers import FastJsonObjectSerializer
from tests.core.outside import ask
from relayrouter.config.limits import ListenerSettings

ROLES = {"roles": {"subscriber": {}, "publisher": {}, "caller": {}, "callee": {}}}


class FakeProto:
    def __init__(self) -> None:
        self.transport = StringTransport()
        self.written: list[bytes] = []
        self.dropped = False
        self.closed = False

    def drop_now(self) -> None:
        self.dropped = True

    def close_after_flush(self) -> None:
        self.closed = True

    def payload_bytes_received(self) -> int:  # the protocol tallies what it framed
        return 0


class Faults(RouterObserver):
    def __init__(self) -> None:
        self.internal = []

    def internal_error(self, session, error) -> None:
        self.internal.append(error)


def make(limits=OutboundLimits()):
    faults = Faults()
    router = Router(Clock(), observer=faults)
    router.add_realm("realm1", policy=RealmPolicy(outbound=limits))
    return router, faults


def connect(router, serializer="json", objser=None, hello_timer=None, **settings):
    """A Connection with the listener settings given (heartbeats off unless given)."""
    proto = FakeProto()
    objser = objser if objser is not None else FastJsonObjectSerializer()
    conn = Connection(router, proto, TransportInfo(kind="websocket", serializer=serializer),
                      objser, proto.written.append, ListenerSettings(**{"heartbeat_interval": 0, **settings}),
                      hello_timer)
    return conn, proto


def joined(router, **kwargs):
    objser = kwargs.setdefault("objser", FastJsonObjectSerializer())
    conn, proto = connect(router, **kwargs)
    conn.receive_payload(objser.serialize([1, "realm1", ROLES]))
    proto.written.clear()
    return conn, proto


def said(objser, proto) -> list:
    """The last message written to the peer, decoded."""
    return objser.unserialize(proto.written[-1])[-1]


def event(n: int) -> m.Event:
    return m.Event(1, n, args=[n])


def test_drop_oldest_keeps_order_and_results():
    router, _ = make(OutboundLimits(max_messages=3, max_bytes=10_000, policy="drop-oldest"))
    conn, proto = joined(router)
    conn.pauseProducing()
    conn.send(event(1))
    conn.send(m.Result(7, args=["r"]))
    conn.send(event(2))
    conn.send(event(3))  # full: drops event 1; the result moves ahead of event 2, order kept
    conn.send(event(4))  # drops event 2
    assert conn.counters.events_dropped == 2
    assert conn.queued[0] == 3
    conn.resumeProducing()
    sent = [FastJsonObjectSerializer().unserialize(d)[0] for d in proto.written]
    assert [s[0] for s in sent] == [50, 36, 36]
    assert [s[4][0] for s in sent[1:]] == [3, 4]
    assert conn.queued == (0, 0)


def test_drop_oldest_disconnects_when_only_results_wait():
    router, _ = make(OutboundLimits(max_messages=2, max_bytes=10_000, policy="drop-oldest"))
    conn, proto = joined(router)
    conn.pauseProducing()
    conn.send(m.Result(1))
    conn.send(m.Result(2))
    conn.send(event(1))
    assert proto.dropped and conn.counters.slow_consumer_disconnects == 1


def _seconds_per_drop(queue_bound: int, drops: int) -> float:
    """The fastest of three runs of ``drops`` sends into a full drop-oldest queue
    of ``queue_bound`` messages, per send (filling the queue is not timed)."""
    best = float("inf")
    for _ in range(3):
        router, _ = make(OutboundLimits(max_messages=queue_bound, max_bytes=2**30, policy="drop-oldest"))
        conn, _ = joined(router)
        conn.pauseProducing()
        conn.send(m.Result(1))  # a non-event at the head must not make every drop O(n)
        events = [event(n) for n in range(queue_bound + drops)]
        for e in events[:queue_bound]:
            conn.send(e)
        gc.disable()
        try:
            start = time.perf_counter()
            for e in events[queue_bound:]:
                conn.send(e)
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
        assert conn.counters.events_dropped == drops + 1
        assert conn.queued[0] == queue_bound
    return best / drops


def test_drop_oldest_costs_the_same_whatever_the_queue_length():
    # A drop that touched the whole queue (a copy, a scan, a list.pop(0)) would
    # make a drop from a 40x longer queue about 40x slower; drops that cost
    # O(1) take the same time.  Measured against each other, on the same
    # machine at the same moment, with a bound generous enough for a loaded one.
    short = _seconds_per_drop(500, 10_000)
    long = _seconds_per_drop(20_000, 10_000)
    assert long < 5 * short, f"a drop costs {long / short:.1f}x more with a 40x longer queue"


def test_drop_newest():
    router, _ = make(OutboundLimits(max_messages=2, max_bytes=10_000, policy="drop-newest"))
    conn, proto = joined(router)
    conn.pauseProducing()
    for n in range(5):
        conn.send(event(n))
    conn.send(m.Result(1))  # never dropped: the session goes instead
    assert conn.counters.events_dropped == 3
    assert proto.dropped and conn.counters.slow_consumer_disconnects == 1
    assert router.realms["realm1"].counters["events_dropped"] == 3


def test_disconnecting_slow_receivers_during_fanout_does_not_disturb_the_publisher():
    router, faults = make(OutboundLimits(max_messages=1, max_bytes=10_000, policy="disconnect"))
    receivers = [joined(router) for _ in range(3)]
    for conn, _ in receivers:
        conn.receive_payload(b'[32, 1, {}, "com.t"]')
        conn.pauseProducing()
    publisher = join(router)
    for n in range(3):
        publisher.receive([16, n + 1, {"acknowledge": True}, "com.t", [n]])
    assert faults.internal == []
    assert all(isinstance(x, m.Published) for x in publisher.take())
    assert all(proto.dropped and conn.counters.slow_consumer_disconnects == 1 for conn, proto in receivers)
    for conn, _ in receivers:
        conn.lost()  # the transport tells us later
    # only the publisher is left, and no subscription of the dropped receivers
    assert ask(router, "wamp.session.count") == 2  # the publisher and the asker
    assert ask(router, "wamp.subscription.list") == {"exact": [], "prefix": [], "wildcard": []}


def test_a_peer_that_reads_nothing_for_the_stall_timeout_is_dropped():
    router, _ = make()
    conn, proto = joined(router, heartbeat_interval=20, heartbeat_timeout=20)  # stalled after 40 s
    conn.pauseProducing()
    router.clock.advance(30)
    conn.resumeProducing()  # it read something: the clock restarts
    conn.pauseProducing()
    router.clock.advance(39)
    assert not proto.dropped
    router.clock.advance(2)
    assert proto.dropped and conn.counters.stalled_disconnects == 1


def test_hello_deadline_is_counted():
    router, _ = make()
    timer = router.clock.callLater(10, lambda: None)
    conn, proto = connect(router, hello_timer=timer)
    conn.hello_deadline_passed()
    assert conn.counters.hello_timeouts == 1
    assert b"limits.hello_timeout" in proto.written[-1]


# ------------------------------------------------------------ nesting depth


def nested(depth: int):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


SERIALIZERS = {
    "json": (FastJsonObjectSerializer, lambda o: FastJsonObjectSerializer().serialize(o)),
    "msgpack": (MsgPackObjectSerializer, msgpack.packb),
    "cbor": (CBORObjectSerializer, cbor2.dumps),
}


@pytest.mark.parametrize("name", SERIALIZERS)
def test_depth_limit_for_every_serializer(name):
    objser, dumps = SERIALIZERS[name]
    router, _ = make()
    serializer = objser()
    conn, proto = joined(router, serializer=name, objser=serializer, max_depth=20)
    ok = [16, 1, {"acknowledge": True}, "com.t", [nested(15)]]  # 1 + 1 + 16 = 18 levels
    conn.receive_payload(dumps(ok))
    assert said(serializer, proto)[0] == 17 and not proto.closed  # PUBLISHED
    deep = [16, 2, {}, "com.t", [nested(30)]]
    conn.receive_payload(dumps(deep))
    assert said(serializer, proto)[:1] == [3] and proto.closed  # ABORT, and hung up
    assert conn.counters.too_deep == 1


def test_cbor_cyclic_values_are_refused_quickly():
    router, _ = make()
    serializer = CBORObjectSerializer()
    conn, proto = joined(router, serializer="cbor", objser=serializer)
    # [16, 1, {}, "com.t", X] where X = shareable [ref X, ref X]: a cycle
    payload = bytes.fromhex("85 10 01 a0 65") + b"com.t" + bytes.fromhex("d81c 82 d81d00 d81d00")
    conn.receive_payload(payload)
    assert said(serializer, proto)[:1] == [3] and proto.closed
    assert conn.counters.too_deep == 1
