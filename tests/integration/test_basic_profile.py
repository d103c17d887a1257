"""The WAMP Basic Profile end to end: real router, Autobahn-Python clients."""

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer

from ..refusals import assert_refused
from ..support import connect_rawsocket, connect_ws, meta_view, within

SERIALIZERS = ["json", "msgpack", "cbor"]
TRANSPORTS = {"websocket": connect_ws, "rawsocket": connect_rawsocket}


def _clients(transport):
    return TRANSPORTS[transport]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest_twisted.inlineCallbacks
def test_join_announces_roles(running, transport, serializer):
    client = yield _clients(transport)(running, serializer)
    assert client.details.realm == "realm1"
    assert client.details.authmethod == "anonymous"
    assert client.details.authrole == "anonymous"
    view = yield meta_view(running)
    assert (yield view.session_ids()) == [client.details.session]
    assert (yield view.session(client.details.session))["transport"]["serializer"] == serializer
    roles = client._router_roles
    assert set(roles) == {"broker", "dealer"}
    yield client.leave()
    yield within(client.left)
    assert (yield view.session_ids()) == []


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest_twisted.inlineCallbacks
def test_publish_reaches_subscribers_but_not_the_publisher(running, transport, serializer):
    connect = _clients(transport)
    publisher = yield connect(running, serializer)
    subscriber = yield connect(running, serializer)
    received, own = defer.Deferred(), []
    yield subscriber.subscribe(lambda *a, **kw: received.callback((a, kw)), "com.example.topic")
    yield publisher.subscribe(lambda *a, **kw: own.append(a), "com.example.topic")
    pub = yield publisher.publish("com.example.topic", 1, "two", {"three": 3}, four=4,
                                  options=PublishOptions(acknowledge=True))
    assert pub.id > 0
    args, kwargs = yield within(received)
    assert args == (1, "two", {"three": 3})
    assert kwargs == {"four": 4}
    # Publisher exclusion is the default: the publisher's own subscription got nothing.
    assert own == []


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest_twisted.inlineCallbacks
def test_call_result_and_error(running, transport, serializer):
    connect = _clients(transport)
    callee = yield connect(running, serializer)
    caller = yield connect(running, serializer)

    def add(a, b, scale=1):
        return (a + b) * scale

    def fail(reason):
        raise ApplicationError("com.example.refused", reason, code=42)

    yield callee.register(add, "com.example.add")
    yield callee.register(fail, "com.example.fail")
    assert (yield caller.call("com.example.add", 2, 3, scale=10)) == 50
    with pytest.raises(ApplicationError) as info:
        yield caller.call("com.example.fail", "not today")
    assert info.value.error == "com.example.refused"
    assert info.value.args == ("not today",)
    assert info.value.kwargs == {"code": 42}


@pytest_twisted.inlineCallbacks
def test_binary_payloads_cross_serializers(running):
    blob = bytes(range(256)) * 4
    json_client = yield connect_ws(running, "json")
    msgpack_client = yield connect_ws(running, "msgpack")
    cbor_client = yield connect_rawsocket(running, "cbor")
    yield msgpack_client.register(lambda data: data[::-1], "com.example.reverse")
    got = defer.Deferred()
    yield json_client.subscribe(lambda data: got.callback(data), "com.example.blob")
    assert (yield json_client.call("com.example.reverse", blob)) == blob[::-1]
    assert (yield cbor_client.call("com.example.reverse", blob)) == blob[::-1]
    yield cbor_client.publish("com.example.blob", blob)
    assert (yield within(got)) == blob


@pytest_twisted.inlineCallbacks
def test_errors_for_unknown_procedure_and_duplicate_registration(running):
    a = yield connect_ws(running)
    b = yield connect_ws(running)
    with pytest.raises(ApplicationError) as info:
        yield a.call("com.example.nobody")
    assert info.value.error == "wamp.error.no_such_procedure"
    assert "com.example.nobody" in info.value.args[0]
    yield a.register(lambda: 1, "com.example.once")
    with pytest.raises(ApplicationError) as info:
        yield b.register(lambda: 2, "com.example.once")
    assert_refused(info.value, "wamp.error.procedure_already_exists",
                   "'com.example.once' is already registered by another callee")


@pytest_twisted.inlineCallbacks
def test_unsubscribe_and_unregister(running):
    a = yield connect_ws(running)
    b = yield connect_ws(running)
    got = []
    subscription = yield a.subscribe(lambda x: got.append(x), "com.example.t")
    registration = yield a.register(lambda: "here", "com.example.p")
    yield subscription.unsubscribe()
    yield registration.unregister()
    yield b.publish("com.example.t", 1, options=PublishOptions(acknowledge=True))
    with pytest.raises(ApplicationError) as info:
        yield b.call("com.example.p")
    assert_refused(info.value, "wamp.error.no_such_procedure", "no callee has registered 'com.example.p'")
    assert got == []
    view = yield meta_view(running)
    assert (yield view.subscriptions()) == [] and (yield view.registrations()) == []


@pytest_twisted.inlineCallbacks
def test_callee_leaving_answers_waiting_callers(running):
    callee = yield connect_ws(running)
    caller = yield connect_ws(running, "msgpack")
    started = defer.Deferred()

    def slow():
        started.callback(None)
        return defer.Deferred()  # never answers

    yield callee.register(slow, "com.example.slow")
    call = caller.call("com.example.slow")
    yield within(started)
    callee.disconnect()
    with pytest.raises(ApplicationError) as info:
        yield within(call)
    assert info.value.error == "wamp.error.canceled"
    assert "callee left" in info.value.args[0]
    view = yield meta_view(running)
    assert (yield view.registrations()) == []


@pytest_twisted.inlineCallbacks
def test_no_such_realm(running):
    from ..support import LeftBeforeJoining

    with pytest.raises(LeftBeforeJoining) as info:
        yield connect_ws(running, realm="nowhere")
    assert info.value.reason == "wamp.error.no_such_realm"
    assert "nowhere" in info.value.message


@pytest_twisted.inlineCallbacks
def test_goodbye_is_answered_and_cleans_up(running):
    client = yield connect_ws(running)
    yield client.subscribe(lambda: None, "com.example.t")
    yield client.register(lambda: None, "com.example.p")
    client.leave("wamp.close.normal")
    details = yield within(client.left)
    assert details.reason == "wamp.close.goodbye_and_out"
    view = yield meta_view(running)
    assert (yield view.session_ids()) == []
    assert (yield view.subscriptions()) == [] and (yield view.registrations()) == []


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
@pytest_twisted.inlineCallbacks
def test_every_websocket_frame_length_encoding(running, serializer):
    # 7-bit, 16-bit and 64-bit payload lengths, at and around their edges.
    callee = yield connect_ws(running, serializer)
    caller = yield connect_ws(running, serializer)
    yield callee.register(lambda text: text, "com.example.echo")
    for size in (0, 1, 100, 125, 126, 127, 1000, 65535, 65536, 70_000, 1_000_000):
        text = "x" * size
        assert (yield caller.call("com.example.echo", text)) == text


@pytest_twisted.inlineCallbacks
def test_an_event_is_serialized_once_per_serializer(running):
    subscribers = []
    for serializer in ("msgpack", "msgpack", "msgpack", "json", "json"):
        subscribers.append((yield connect_ws(running, serializer)))
    subscribers.append((yield connect_rawsocket(running, "msgpack")))
    received = []
    for s in subscribers:
        yield s.subscribe(lambda x: received.append(x), "com.example.fan")
    publisher = yield connect_ws(running, "cbor")
    calls = {}
    for serializer in running.service.serializers:
        objser = serializer._serializer
        original = objser.serialize

        def counting(obj, original=original, name=serializer.SERIALIZER_ID):
            if obj[0] == 36:  # EVENT
                calls[name] = calls.get(name, 0) + 1
            return original(obj)

        objser.serialize = counting
    yield publisher.publish("com.example.fan", "hello", options=PublishOptions(acknowledge=True))
    with pytest.raises(ApplicationError) as info:  # a round trip
        yield publisher.call("com.example.nothing")
    assert_refused(info.value, "wamp.error.no_such_procedure", "com.example.nothing")
    from ..support import eventually
    yield eventually(lambda: len(received) == 6)
    # Three WebSocket and one RawSocket msgpack receivers: one msgpack encoding.
    assert calls == {"msgpack": 1, "json": 1}


@pytest_twisted.inlineCallbacks
def test_a_broken_receiver_does_not_disturb_the_publisher_or_others(running):
    good = yield connect_ws(running, "json")
    broken = yield connect_ws(running, "json")
    publisher = yield connect_ws(running, "msgpack")
    got = []
    yield good.subscribe(lambda x: got.append(x), "com.example.t")
    yield broken.subscribe(lambda x: None, "com.example.t")
    broken_session = next(s for s in running.realm().sessions.values()
                          if s.session_id == broken.details.session)

    def explode(data):
        raise RuntimeError("socket on fire")

    broken_session.peer._write = explode
    for i in range(3):
        yield publisher.publish("com.example.t", i, options=PublishOptions(acknowledge=True))
    from ..support import eventually
    yield eventually(lambda: got == [0, 1, 2])
    view = yield meta_view(running)
    assert broken.details.session not in (yield view.session_ids())
    assert (yield publisher.publish("com.example.t", 3, options=PublishOptions(acknowledge=True)))
