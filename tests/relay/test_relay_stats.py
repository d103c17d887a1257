"""Stats: the figures match the traffic sent; the topic, the procedure, the seed's stats topic."""

import json

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from ..support import connect_ws, eventually
from .support import connect_topic, practable_token, relay_config, start, stop


@pytest.fixture
def router(monkeypatch, tmp_path):
    running = pytest_twisted.blockon(start(relay_config(monkeypatch, stats_interval=1), tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


@pytest_twisted.inlineCallbacks
def test_stats_figures_match_the_traffic(router):
    writer = yield connect_topic(router, scopes=("write",), booking_id="w")
    reader = yield connect_topic(router, scopes=("read",), booking_id="r")
    wamp = yield connect_ws(router, realm="lab", authmethods=["ticket"], ticket=practable_token(sub="svc", scopes=("write", "relay:stats")))
    sizes = [10, 200, 3000, 40000]
    for n in sizes:
        writer.send_binary(b"x" * n)
        yield reader.next()
    yield wamp.publish("relay.session.pend00", "y" * 7)
    assert (yield reader.next()) == "y" * 7
    report = yield wamp.call("relayrouter.stats.get")
    by_bid = {c["booking_id"]: c for c in report["connections"]}
    assert by_bid["w"]["rx"]["messages"] == 4 and by_bid["w"]["rx"]["bytes"] == sum(sizes)
    assert by_bid["w"]["tx"]["messages"] == 0
    assert by_bid["r"]["tx"]["messages"] == 5 and by_bid["r"]["tx"]["bytes"] == sum(sizes) + 7
    assert by_bid["r"]["rx"]["messages"] == 0 and by_bid["r"]["dropped"] == 0
    assert by_bid["w"]["rx"]["last"].endswith("Z") and by_bid["r"]["tx"]["last_age"] >= 0
    (topic,) = [t for t in report["topics"] if t["topic"] == "relay.session.pend00"]
    assert topic["published"]["messages"] == 5 and topic["published"]["bytes"] == sum(sizes) + 7
    assert topic["raw_readers"] == 1 and topic["raw_writers"] == 1
    assert topic["delivered_raw"] == {"messages": 5, "bytes": sum(sizes) + 7}
    assert topic["subscribers"] == 1  # the raw reader's subscription


@pytest_twisted.inlineCallbacks
def test_stats_topic_every_interval_and_on_request(router):
    wamp = yield connect_ws(router, realm="lab", authmethods=["ticket"], ticket=practable_token(sub="dash", scopes=("relay:stats",)))
    reports = []
    first = defer.Deferred()

    def on_stats(report):
        reports.append(report)
        if not first.called:
            first.callback(report)

    yield wamp.subscribe(on_stats, "relayrouter.stats")
    yield connect_topic(router)
    report = yield first.addTimeout(10, reactor)
    assert set(report) == {"time", "interval", "connections", "topics"} and report["interval"] == 1.0
    relay = router.service.relay
    relay._stats_loop.stop()  # only on-request publications from here on
    yield eventually(lambda: relay._last_publish < reactor.seconds() - 1.01)
    answer = yield wamp.call("relayrouter.stats.get", publish=True)
    again = yield wamp.call("relayrouter.stats.get", publish=True)
    assert answer["published"] is True and again["published"] is False  # at most one a second
    # the seed's stats topic: {"cmd":"update"} asks for a report list
    stats = yield connect_topic(router, topic="stats", booking_id="status-server")
    yield eventually(lambda: relay._last_publish < reactor.seconds() - 1.01)
    stats.send_text('{"cmd":"update"}')
    listing = json.loads((yield stats.next()))
    assert isinstance(listing, list) and {r["topic"] for r in listing} == {"pend00", "stats"}
    assert set(listing[0]) >= {"canRead", "canWrite", "connected", "expiresAt", "remoteAddr", "scopes",
                               "topic", "userAgent"}


@pytest_twisted.inlineCallbacks
def test_a_stats_command_nested_too_deep_is_ignored_like_any_unreadable_one(router):
    stats = yield connect_topic(router, topic="stats", booking_id="status-server")
    reader = yield connect_topic(router, topic="stats", scopes=("read",), booking_id="reader")
    deep = "[" * 5000 + '"update"'  # Python's JSON decoder gives up with a RecursionError
    stats.send_text(deep)
    stats.send_text("after")
    frames = []
    while "after" not in frames and len(frames) < 10:  # the reports published on the topic come between
        frames.append((yield reader.next()))
    assert deep in frames and "after" in frames  # relayed like any frame; the writer's connection lives on
