"""A subscriber that stops reading costs bounded memory, gets the realm's
policy, and never slows down the others."""

import gc
import pytest
import pytest_twisted
from twisted.internet import defer

from relayrouter import config as cfg
from relayrouter.transport.connection import OutboundLimits

from ..support import connect_raw, eventually, meta_view, rss_bytes, start_router

PAYLOAD = "x" * 8192
BOUND = 512 * 1024


@defer.inlineCallbacks
def router_with(policy: str, max_bytes: int = BOUND):
    running = yield start_router(cfg.Config(
        listeners=(cfg.Listener("websocket", "tcp:0:interface=127.0.0.1"),),
        realms=(cfg.RealmConfig("realm1", outbound=OutboundLimits(max_bytes=max_bytes, policy=policy)),),
    ))
    return running


@defer.inlineCallbacks
def stop_router(running):
    for session in list(running.router.sessions()):
        session.peer.close()
    yield running.service.stopService()


def connection_of(running, session_id):
    for connection in running.service.connections():
        if connection.session.session_id == session_id:
            return connection
    return None


@defer.inlineCallbacks
def subscriber(running, *, stuck: bool):
    client = yield connect_raw(running)
    welcome = yield client.hello()
    client.send([32, 1, {}, "com.example.stream"])
    assert (yield client.next())[0] == 33
    if stuck:
        client.protocol.transport.pauseProducing()  # stops reading: the kernel buffers fill
    return client, welcome[1]


@defer.inlineCallbacks
def publish(publisher, count: int, start: int = 0):
    """``count`` events, acknowledged in batches so that the publisher paces itself."""
    for n in range(start, start + count):
        ack = n % 50 == 49
        publisher.send([16, n + 1, {"acknowledge": True} if ack else {}, "com.example.stream", [n, PAYLOAD]])
        if ack:
            reply = yield publisher.next()
            assert reply[0] == 17, reply  # PUBLISHED


def events_in(client) -> list:
    return [m[4][0] for m in client.factory.inbox if m[0] == 36]


def forget_payloads(*clients) -> None:
    """The test's own clients keep only event numbers: RSS is the router's."""
    for client in clients:
        client.factory.inbox[:] = [[36, 0, 0, {}, [m[4][0]]] if m[0] == 36 else m
                                   for m in client.factory.inbox]


@pytest.mark.parametrize("policy", ["drop-oldest", "drop-newest", "disconnect"])
@pytest_twisted.inlineCallbacks
def test_stuck_subscriber_policy_memory_and_counters(policy):
    running = yield router_with(policy)
    realm = running.realm()
    try:
        healthy, _ = yield subscriber(running, stuck=False)
        stuck, stuck_id = yield subscriber(running, stuck=True)
        connection = connection_of(running, stuck_id)
        publisher = yield connect_raw(running)
        yield publisher.hello()
        gc.collect()
        baseline = rss_bytes()
        sent = 0
        # Far more than the bound (and the socket buffers) can hold.
        while sent < 3000:
            yield publish(publisher, 500, sent)
            sent += 500
            forget_payloads(healthy)
            assert connection.queued[1] <= BOUND
            if policy == "disconnect" and connection.counters.slow_consumer_disconnects:
                break
        growth = rss_bytes() - baseline
        # Generous: the bound is 512 KiB of queued bytes; what was published is ~32 MB.
        assert growth < 24 * 1024 * 1024, growth
        # The healthy subscriber got every event, in order.
        yield eventually(lambda: len(events_in(healthy)) == sent)
        assert events_in(healthy) == list(range(sent))
        counters = connection.counters
        if policy == "disconnect":
            assert counters.slow_consumer_disconnects == 1
            assert counters.events_dropped == 0
            assert realm.counters["slow_consumer_disconnects"] == 1
            view = yield meta_view(running)
            yield view.until(view.session_ids, lambda ids: stuck_id not in ids)
        else:
            assert counters.events_dropped > 0
            assert realm.counters["events_dropped"] == counters.events_dropped
            assert counters.slow_consumer_disconnects == 0
            view = yield meta_view(running)
            assert stuck_id in (yield view.session_ids())
            yield view.leave()
            stuck.protocol.transport.resumeProducing()
            yield eventually(lambda: connection.queued == (0, 0))
            yield eventually(lambda: len(events_in(stuck)) + counters.events_dropped >= sent, 20)
            got = events_in(stuck)
            assert got == sorted(got) and len(got) + counters.events_dropped == sent
            if policy == "drop-oldest":
                assert got[-1] == sent - 1  # the newest survived
            else:
                assert sent - 1 not in got  # the newest were dropped
    finally:
        yield stop_router(running)


@pytest_twisted.inlineCallbacks
def test_default_bound_keeps_a_stuck_subscriber_to_a_few_megabytes():
    running = yield start_router(cfg.Config(
        listeners=(cfg.Listener("websocket", "tcp:0:interface=127.0.0.1"),)))
    try:
        stuck, stuck_id = yield subscriber(running, stuck=True)
        connection = connection_of(running, stuck_id)
        publisher = yield connect_raw(running)
        yield publisher.hello()
        gc.collect()
        baseline = rss_bytes()
        yield publish(publisher, 5000)  # ~40 MB of events
        limits = OutboundLimits()
        messages, size = connection.queued
        assert size <= limits.max_bytes and messages <= limits.max_messages
        assert connection.counters.events_dropped > 0
        growth = rss_bytes() - baseline
        print(f'stuck subscriber, default bounds: RSS growth {growth / 2**20:.1f} MiB, queued {size / 2**20:.1f} MiB')
        assert growth < 32 * 1024 * 1024, growth
    finally:
        yield stop_router(running)
