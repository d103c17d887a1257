"""The meta API and testaments end to end with Autobahn-Python clients."""

import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import SubscribeOptions

from ..refusals import assert_refused
from ..support import connect_raw, connect_rawsocket, connect_ws, within
from .test_advanced_pubsub import collector, until


@pytest_twisted.inlineCallbacks
def test_session_meta_procedures_and_events(running):
    watcher = yield connect_ws(running)
    joins, on_join = collector()
    leaves, on_leave = collector()
    yield watcher.subscribe(on_join, "wamp.session.on_join")
    yield watcher.subscribe(on_leave, "wamp.session.on_leave")
    other = yield connect_rawsocket(running, "msgpack")
    yield until(joins)
    assert joins["events"][0][0][0]["session"] == other._session_id
    assert (yield watcher.call("wamp.session.count")) == 2
    assert (yield watcher.call("wamp.session.count", ["admin"])) == 0
    assert sorted((yield watcher.call("wamp.session.list"))) == sorted([watcher._session_id, other._session_id])
    details = yield watcher.call("wamp.session.get", other._session_id)
    assert details["authrole"] == "anonymous" and details["transport"]["type"] == "rawsocket"
    try:
        yield watcher.call("wamp.session.get", 1)
        raise AssertionError("no error for an unknown session")
    except ApplicationError as e:
        assert_refused(e, "wamp.error.no_such_session", "no session 1 in realm 'realm1'")
    other_id = other._session_id
    yield watcher.call("wamp.session.kill", other_id, reason="wamp.close.killed", message="go")
    left = yield within(other.left)
    assert left.reason == "wamp.close.killed" and left.message == "go"
    yield until(leaves)
    assert leaves["events"][0][0] == (other_id, other.details.authid, "anonymous")


@pytest_twisted.inlineCallbacks
def test_kill_by_authrole_spares_the_caller(running):
    admin = yield connect_ws(running)
    victims = []
    for serializer in ("cbor", "msgpack"):
        victims.append((yield connect_ws(running, serializer)))
    count = yield admin.call("wamp.session.kill_by_authrole", "anonymous")
    assert count == 2
    for victim in victims:
        details = yield within(victim.left)
        assert details.reason == "wamp.close.normal"


@pytest_twisted.inlineCallbacks
def test_subscription_and_registration_meta(running):
    watcher = yield connect_ws(running)
    box, on_meta = collector()
    for prefix in ("wamp.subscription.", "wamp.registration."):
        yield watcher.subscribe(on_meta, prefix, options=SubscribeOptions(match="prefix", details=True))
    app = yield connect_rawsocket(running, "cbor")
    sub = yield app.subscribe(lambda *a: None, "com.watched")
    reg = yield app.register(lambda: None, "com.watched.proc")
    yield until(box, 4)
    topics = [details.topic for _, _, details in box["events"]]
    assert topics == ["wamp.subscription.on_create", "wamp.subscription.on_subscribe",
                      "wamp.registration.on_create", "wamp.registration.on_register"]
    assert (yield watcher.call("wamp.subscription.lookup", "com.watched")) == sub.id
    assert (yield watcher.call("wamp.subscription.match", "com.watched")) == [sub.id]
    assert (yield watcher.call("wamp.subscription.list_subscribers", sub.id)) == [app._session_id]
    assert (yield watcher.call("wamp.subscription.count_subscribers", sub.id)) == 1
    assert (yield watcher.call("wamp.subscription.get", sub.id))["uri"] == "com.watched"
    assert sub.id in (yield watcher.call("wamp.subscription.list"))["exact"]
    assert (yield watcher.call("wamp.registration.lookup", "com.watched.proc")) == reg.id
    assert (yield watcher.call("wamp.registration.match", "com.watched.proc")) == reg.id
    assert (yield watcher.call("wamp.registration.list"))["exact"] == [reg.id]
    assert (yield watcher.call("wamp.registration.get", reg.id))["invoke"] == "single"
    assert (yield watcher.call("wamp.registration.list_callees", reg.id)) == [app._session_id]
    assert (yield watcher.call("wamp.registration.count_callees", reg.id)) == 1
    app.leave()
    yield until(box, 8)
    topics = sorted(details.topic for _, _, details in box["events"][4:])
    assert topics == ["wamp.registration.on_delete", "wamp.registration.on_unregister",
                      "wamp.subscription.on_delete", "wamp.subscription.on_unsubscribe"]


@pytest_twisted.inlineCallbacks
def test_testament_published_when_connection_is_lost(running):
    watcher = yield connect_ws(running, "msgpack")
    box, on_event = collector()
    yield watcher.subscribe(on_event, "com.lastwill")
    mortal = yield connect_ws(running)
    yield mortal.call("wamp.session.add_testament", "com.lastwill", ["gone"], {"who": "mortal"})
    yield mortal.call("wamp.session.add_testament", "com.lastwill", ["flushed"], {}, scope="detached")
    yield mortal.call("wamp.session.flush_testaments", scope="detached")
    mortal._transport.transport.abortConnection()  # no GOODBYE: the connection just dies
    yield until(box)
    assert box["events"] == [(("gone",), {"who": "mortal"}, None)]


@pytest_twisted.inlineCallbacks
def test_meta_publications_reach_raw_json_client_with_spec_shapes(running):
    raw = yield connect_raw(running)
    yield raw.hello()
    raw.send([32, 1, {}, "wamp.session.on_leave"])
    subscribed = yield raw.next()
    client = yield connect_ws(running)
    sid = client._session_id
    client.leave()
    yield within(client.left)
    event = yield raw.next()
    assert event[0] == 36 and event[1] == subscribed[2] and event[3] == {}
    assert event[4] == [sid, client.details.authid, "anonymous"]
