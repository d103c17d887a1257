"""Bad input gets ABORT wamp.error.protocol_violation with a human message,
and never disturbs another, healthy session."""

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer

from relayrouter import config as cfg

from ..support import connect_raw, connect_ws, meta_view, start_router

ROLES = {"roles": {"subscriber": {}, "publisher": {}, "caller": {}, "callee": {}}}


@defer.inlineCallbacks
def healthy_pair(running):
    """A callee/subscriber and a caller/publisher that must keep working."""
    a = yield connect_ws(running, "msgpack")
    b = yield connect_ws(running, "json")
    events = []
    yield a.register(lambda x: x * 2, "com.example.double")
    yield a.subscribe(lambda x: events.append(x), "com.example.tick")
    return a, b, events


@defer.inlineCallbacks
def assert_still_healthy(pair):
    a, b, events = pair
    assert (yield b.call("com.example.double", 21)) == 42
    yield b.publish("com.example.tick", 7, options=PublishOptions(acknowledge=True))
    yield b.call("com.example.double", 0)  # a round trip: the event went out before
    assert events[-1:] == [7]


@defer.inlineCallbacks
def expect_abort(raw, fragment: str):
    message = yield raw.next()
    assert message[0] == 3, message  # ABORT
    assert message[2] == "wamp.error.protocol_violation"
    assert fragment in message[1]["message"], message[1]["message"]
    yield raw.closed()


VIOLATIONS = {
    "message before HELLO": ([[32, 1, {}, "com.example.tick"]], "before HELLO"),
    "second HELLO": ([[1, "realm1", ROLES], [1, "realm1", ROLES]], "already open"),
    "unknown message type": ([[1, "realm1", ROLES], [99, 1]], "unknown WAMP message type 99"),
    "router-only message": ([[1, "realm1", ROLES], [36, 1, 2, {}]], "never to them"),
    "malformed SUBSCRIBE": ([[1, "realm1", ROLES], [32, "one", {}, "com.x"]], "malformed SUBSCRIBE"),
    "not an array": ([[1, "realm1", ROLES], {"hello": 1}], "non-empty array"),
    "empty array": ([[1, "realm1", ROLES], []], "non-empty array"),
    "string message type": ([["HELLO", "realm1", ROLES]], "must be an integer"),
    "ERROR for a non-invocation": ([[1, "realm1", ROLES], [8, 48, 1, {}, "com.err"]], "only answer an INVOCATION"),
    "HELLO without details": ([[1, "realm1"]], "malformed HELLO"),
}


@pytest.mark.parametrize("case", VIOLATIONS)
@pytest_twisted.inlineCallbacks
def test_protocol_violation_aborts_only_the_offender(running, case):
    pair = yield healthy_pair(running)
    raw = yield connect_raw(running)
    messages, fragment = VIOLATIONS[case]
    for message in messages:
        raw.send(message)
    if messages[0][0] == 1 and len(messages) > 1:
        welcome = yield raw.next()
        assert welcome[0] == 2
    yield expect_abort(raw, fragment)
    yield assert_still_healthy(pair)
    view = yield meta_view(running)
    assert (yield view.until(view.session_ids, lambda ids: len(ids) == 2)) == \
        sorted(c.details.session for c in pair[:2])  # only the offender is gone


@pytest_twisted.inlineCallbacks
def test_undecodable_json(running):
    pair = yield healthy_pair(running)
    raw = yield connect_raw(running)
    raw.send_bytes(b"[1, \"realm1\", {")
    yield expect_abort(raw, "cannot decode the message as json")
    yield assert_still_healthy(pair)


@pytest_twisted.inlineCallbacks
def test_invalid_utf8_in_a_text_frame(running):
    pair = yield healthy_pair(running)
    raw = yield connect_raw(running)
    yield raw.hello()
    raw.send_bytes(b'[16, 1, {}, "com.example.tick", ["\xff\xfe"]]')
    yield expect_abort(raw, "cannot decode the message as json")
    yield assert_still_healthy(pair)


@pytest_twisted.inlineCallbacks
def test_binary_frame_on_json_connection(running):
    pair = yield healthy_pair(running)
    raw = yield connect_raw(running)
    raw.send_bytes(b"\x93\x01\x02\x03", binary=True)
    yield expect_abort(raw, "binary WebSocket message on a json connection")
    yield assert_still_healthy(pair)


@pytest_twisted.inlineCallbacks
def test_invalid_uri_is_an_error_not_an_abort(running):
    pair = yield healthy_pair(running)
    raw = yield connect_raw(running)
    yield raw.hello()
    raw.send([32, 1, {}, "com.bad uri"])
    error = yield raw.next()
    assert error[:5] == [8, 32, 1, {}, "wamp.error.invalid_uri"]
    assert "com.bad uri" in error[5][0]
    raw.send([64, 2, {}, "com..empty"])
    error = yield raw.next()
    assert error[:5] == [8, 64, 2, {}, "wamp.error.invalid_uri"]
    raw.send([32, 3, {}, "com.good"])
    assert (yield raw.next()) [0] == 33  # SUBSCRIBED: the session lives on
    yield assert_still_healthy(pair)


@pytest_twisted.inlineCallbacks
def test_unknown_subscription_and_registration(running):
    raw = yield connect_raw(running)
    yield raw.hello()
    raw.send([34, 1, 12345])
    assert (yield raw.next())[:5] == [8, 34, 1, {}, "wamp.error.no_such_subscription"]
    raw.send([66, 2, 12345])
    assert (yield raw.next())[:5] == [8, 66, 2, {}, "wamp.error.no_such_registration"]


@pytest_twisted.inlineCallbacks
def test_oversized_message_closes_only_that_connection():
    running = yield start_router(cfg.Config(
        listeners=(cfg.Listener("websocket", "tcp:0:interface=127.0.0.1"),),
        limits=cfg.Limits(max_message_size=4096)))
    try:
        pair = yield healthy_pair(running)
        raw = yield connect_raw(running)
        yield raw.hello()
        raw.send([16, 1, {}, "com.example.tick", ["x" * 10_000]])
        code, reason = yield raw.closed()
        assert code == 1009  # "message too big"
        assert "4096" in reason
        yield assert_still_healthy(pair)
    finally:
        for session in list(running.router.sessions()):
            session.peer.close()
        yield running.service.stopService()


@pytest_twisted.inlineCallbacks
def test_abrupt_disconnects_leave_no_trace(running):
    for _ in range(20):
        raw = yield connect_raw(running)
        yield raw.hello()
        raw.send([32, 1, {}, "com.example.tick"])
        raw.send([64, 2, {"match": "prefix"}, "com.example."])
        yield raw.next()
        yield raw.next()
        raw.drop()
        yield raw.closed()
    view = yield meta_view(running)
    yield view.until(view.session_ids, lambda ids: ids == [])
    assert (yield view.subscriptions()) == [] and (yield view.registrations()) == []
