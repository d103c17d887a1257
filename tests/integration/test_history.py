"""Event history end to end: a real router keeping history in SQLite,
Autobahn-Python publishers and readers, and a restart in between."""

import tempfile

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallResult, PublishOptions, SubscribeOptions
from twisted.internet import defer

from relayrouter import config as cfg

from ..support import connect_ws, start_router, within

CONFIG = {
    "listeners": [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1"}],
    "realms": [{"name": "realm1",
                "history": [{"uri": "sensor.", "match": "prefix", "limit": 1000},
                            {"uri": "chat.room1", "limit": 5}]},
               {"name": "plain"}],
}


def router_config(state_dir: str) -> cfg.Config:
    return cfg.replace(cfg.parse(CONFIG), state_dir=state_dir)


@defer.inlineCallbacks
def read_all(session, topic, match="exact", after=None, limit=10):
    events, pages = [], 0
    while True:
        page = yield session.call("relayrouter.history.read", topic, match=match, after=after, limit=limit)
        events += page["events"]
        pages += 1
        if not page["more"]:
            return events, pages
        after = page["events"][-1]["publication"]


@pytest_twisted.inlineCallbacks
def test_catching_up_after_being_away_pages_without_gaps_and_survives_a_restart():
    state_dir = tempfile.mkdtemp(prefix="relayrouter-history-")
    running = yield start_router(router_config(state_dir))
    try:
        publisher = yield connect_ws(running, "msgpack")
        reader = yield connect_ws(running, "json")
        assert reader._router_roles["broker"].event_history is True
        sent = []
        for i in range(25):
            publication = yield publisher.publish("sensor.a" if i % 2 else "sensor.b", i, blob=b"\x00\x01",
                                                  options=PublishOptions(acknowledge=True))
            sent.append(publication.id)
        yield publisher.publish("other.topic", "not kept", options=PublishOptions(acknowledge=True))
        # A subscriber that saw the first 9 catches up from the 9th.
        events, pages = yield read_all(reader, "sensor.", "prefix", after=sent[8])
        assert [e["publication"] for e in events] == sent[9:] and pages == 2
        assert events[0]["args"] == [9] and events[0]["kwargs"] == {"blob": b"\x00\x01"}
        assert events[0]["topic"] == "sensor.a"
        since = events[5]["timestamp"]
        by_time = yield reader.call("relayrouter.history.read", "sensor.", match="prefix", since=since, limit=100)
        assert [e["publication"] for e in by_time["events"]] == sent[14:]
        with pytest.raises(ApplicationError) as refused:
            yield reader.call("relayrouter.history.read", "other.topic")
        assert refused.value.error == "relayrouter.error.no_history"
        publisher.leave()
        reader.leave()
    finally:
        yield running.service.stopService()
    # Kept in SQLite: a new router on the same state directory still has it.
    running = yield start_router(router_config(state_dir))
    try:
        reader = yield connect_ws(running, "cbor")
        events, _ = yield read_all(reader, "sensor.", "prefix", limit=7)
        assert [e["publication"] for e in events] == sent
        reader.leave()
    finally:
        yield running.service.stopService()


@pytest_twisted.inlineCallbacks
def test_get_events_for_a_subscription_with_autobahn():
    running = yield start_router(router_config(tempfile.mkdtemp(prefix="relayrouter-history-")))
    try:
        publisher = yield connect_ws(running)
        subscriber = yield connect_ws(running)
        seen = []
        got_all = defer.Deferred()

        def on_event(*args, **kwargs):
            seen.append(args)
            if len(seen) == 7 and not got_all.called:
                got_all.callback(None)

        subscription = yield subscriber.subscribe(on_event, "chat.room1")
        for i in range(7):
            yield publisher.publish("chat.room1", f"m{i}", options=PublishOptions(acknowledge=True))
        yield within(got_all)
        answer = yield subscriber.call("wamp.subscription.get_events", subscription.id, limit=10)
        assert isinstance(answer, CallResult) and answer.kwresults == {"more": False}
        # limit = 5 per topic: the two oldest went
        assert [e["args"] for e in answer.results] == [[f"m{i}"] for i in range(2, 7)]
        assert all(e["subscription"] == subscription.id and e["timestamp"].endswith("Z")
                   for e in answer.results)
        newest = yield subscriber.call("wamp.subscription.get_events", subscription.id, limit=2, reverse=True)
        assert [e["args"] for e in newest.results] == [["m6"], ["m5"]] and newest.kwresults["more"] is True
        pattern = yield subscriber.subscribe(lambda *a, **k: None, "sensor.", options=SubscribeOptions(match="prefix"))
        empty = yield subscriber.call("wamp.subscription.get_events", pattern.id)
        assert list(empty.results) == [] and empty.kwresults == {"more": False}
        plain = yield connect_ws(running, realm="plain")
        assert not getattr(plain._router_roles["broker"], "event_history", False)
        with pytest.raises(ApplicationError) as missing:
            yield plain.call("wamp.subscription.get_events", 1)
        assert missing.value.error == "wamp.error.no_such_procedure"
        for session in (publisher, subscriber, plain):
            session.leave()
    finally:
        yield running.service.stopService()
