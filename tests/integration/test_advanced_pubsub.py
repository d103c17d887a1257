"""Advanced Profile pub/sub end to end: real router, Autobahn-Python clients,
and the raw JSON client where Autobahn-Python cannot express an option."""

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions, SubscribeOptions
from twisted.internet import defer

from relayrouter.testing import SERIALIZERS

from ..core.test_features import PROBES
from ..refusals import assert_refused
from ..support import connect_raw, connect_rawsocket, connect_ws, within

WIRE_CODECS = {name: cls() for name, cls in SERIALIZERS.items()}

PPT = {"ppt_scheme": "wamp.eth", "ppt_serializer": "cbor", "ppt_cipher": "xsalsa20poly1305",
       "ppt_keyid": "0x5eC0"}
PPT_ROLES = {role: {"features": {"payload_passthru_mode": True}}
             for role in ("publisher", "subscriber", "caller", "callee")}


@defer.inlineCallbacks
def until(box, count: int = 1):
    """Wait (bounded) until ``box`` holds at least ``count`` events."""
    while len(box["events"]) < count:
        yield within(box["next"])


def collector():
    box = {"events": [], "next": defer.Deferred()}

    def on_event(*args, **kwargs):
        details = kwargs.pop("details", None)
        box["events"].append((args, kwargs, details))
        d, box["next"] = box["next"], defer.Deferred()
        d.callback(None)

    return box, on_event


@pytest.mark.parametrize("serializer", ["json", "msgpack", "cbor"])
@pytest_twisted.inlineCallbacks
def test_welcome_announces_exactly_the_probed_features_on_the_wire(running, serializer):
    # Read from the bytes a peer receives, not through Autobahn's role classes
    # (which drop feature names they do not know); tests/core/test_features.py
    # has a probe of each feature's behaviour.
    codec = WIRE_CODECS[serializer]
    raw = yield connect_raw(running, f"wamp.2.{serializer}")
    raw.send_bytes(codec.serialize([1, "realm1", {"roles": {"subscriber": {}, "caller": {}}}]),
                   binary=codec.BINARY)
    received = yield raw.next()  # the raw client decodes text frames as JSON itself
    [welcome] = codec.unserialize(received) if codec.BINARY else [received]
    assert welcome[0] == 2
    assert welcome[2]["roles"] == {role: {"features": dict.fromkeys(features, True)}
                                   for role, features in PROBES.items()}
    client = yield connect_ws(running, serializer)
    assert set(client._router_roles) == {"broker", "dealer"}


@pytest.mark.parametrize("serializer", ["json", "msgpack", "cbor"])
@pytest_twisted.inlineCallbacks
def test_prefix_and_wildcard_subscriptions_carry_the_topic(running, serializer):
    sub = yield connect_ws(running, serializer)
    pub = yield connect_rawsocket(running, serializer)
    box, on_event = collector()
    yield sub.subscribe(on_event, "com.app.", options=SubscribeOptions(match="prefix", details=True))
    yield sub.subscribe(on_event, "com..temp", options=SubscribeOptions(match="wildcard", details=True))
    yield pub.publish("com.app.temp", 21, options=PublishOptions(acknowledge=True))
    yield until(box, 2)
    assert sorted(d.topic for _, _, d in box["events"]) == ["com.app.temp", "com.app.temp"]


@pytest_twisted.inlineCallbacks
def test_match_null_is_exact_end_to_end(running):
    raw = yield connect_raw(running)
    yield raw.hello()
    raw.send([32, 1, {"match": None}, "com.exact"])
    subscribed = yield raw.next()
    assert subscribed[0] == 33
    raw.send([64, 2, {"match": None}, "com.exact.proc"])
    registered = yield raw.next()
    assert registered[0] == 65
    pub = yield connect_ws(running)
    yield pub.publish("com.exact", "hit", options=PublishOptions(acknowledge=True))
    event = yield raw.next()
    assert event[0] == 36 and event[1] == subscribed[2] and event[3] == {} and event[4] == ["hit"]


@pytest_twisted.inlineCallbacks
def test_black_and_whitelisting_and_exclude_me(running):
    pub = yield connect_ws(running)
    a = yield connect_ws(running)
    b = yield connect_rawsocket(running, "msgpack")
    boxes = {}
    for name, client in (("pub", pub), ("a", a), ("b", b)):
        boxes[name], handler = collector()
        yield client.subscribe(handler, "com.bw")
    ids = {"a": a._session_id, "b": b._session_id}
    yield pub.publish("com.bw", 1, options=PublishOptions(acknowledge=True, eligible=[ids["a"]]))
    yield pub.publish("com.bw", 2, options=PublishOptions(acknowledge=True, exclude=[ids["a"]]))
    yield pub.publish("com.bw", 3, options=PublishOptions(acknowledge=True, exclude_me=False,
                                                            exclude_authrole=["nobody"]))
    yield pub.publish("com.bw", 4, options=PublishOptions(acknowledge=True, eligible_authrole=["anonymous"],
                                                            exclude=[ids["b"]]))
    # a marker every subscriber gets, so the checks below run after all deliveries
    yield pub.publish("com.bw", "end", options=PublishOptions(acknowledge=True, exclude_me=False))
    for name in boxes:
        while not boxes[name]["events"] or boxes[name]["events"][-1][0] != ("end",):
            yield within(boxes[name]["next"])
    got = {name: [args[0] for args, _, _ in box["events"]][:-1] for name, box in boxes.items()}
    assert got == {"pub": [3], "a": [1, 3, 4], "b": [2, 3]}


@pytest_twisted.inlineCallbacks
def test_publisher_disclosure_through_raw_client(running):
    sub = yield connect_ws(running)
    box, on_event = collector()
    yield sub.subscribe(on_event, "com.who", options=SubscribeOptions(details=True))
    raw = yield connect_raw(running)
    welcome = yield raw.hello()
    raw.send([16, 1, {"disclose_me": True, "acknowledge": True}, "com.who", ["me"]])
    published = yield raw.next()
    assert published[0] == 17
    yield until(box)
    details = box["events"][0][2]
    assert details.publisher == welcome[1] and details.publisher_authrole == "anonymous"


@pytest_twisted.inlineCallbacks
def test_event_retention_with_autobahn(running):
    pub = yield connect_ws(running)
    yield pub.publish("com.sensor.temp", 20, options=PublishOptions(acknowledge=True, retain=True))
    yield pub.publish("com.sensor.temp", 21, options=PublishOptions(acknowledge=True, retain=True))
    sub = yield connect_rawsocket(running, "cbor")
    box, on_event = collector()
    yield sub.subscribe(on_event, "com.sensor.", options=SubscribeOptions(
        match="prefix", get_retained=True, details=True))
    yield until(box)
    args, _, details = box["events"][0]
    assert args == (21,) and details.retained is True and details.topic == "com.sensor.temp"


@pytest_twisted.inlineCallbacks
def test_payload_passthru_event_across_serializers(running):
    blob = b"\x00\x01sealed\xff"
    raw_sub = yield connect_raw(running)
    yield raw_sub.hello(details={"roles": PPT_ROLES})
    raw_sub.send([32, 1, {}, "com.sealed"])
    yield raw_sub.next()
    ab_sub = yield connect_ws(running, "msgpack")
    box, on_event = collector()
    yield ab_sub.subscribe(on_event, "com.sealed")
    raw_pub = yield connect_raw(running)
    yield raw_pub.hello(details={"roles": PPT_ROLES})
    raw_pub.send([16, 2, {**PPT, "acknowledge": True}, "com.sealed", ["\u0000" + "AAFzZWFsZWT/"]])
    event = yield raw_sub.next()
    assert event[3] == PPT and event[4] == ["\u0000AAFzZWFsZWT/"]
    yield until(box)
    assert box["events"][0][0] == (blob,)  # the binary payload reached a msgpack peer untouched


@pytest_twisted.inlineCallbacks
def test_payload_passthru_without_announcing_it_is_aborted(running):
    raw = yield connect_raw(running)
    yield raw.hello()
    raw.send([16, 2, dict(PPT), "com.sealed", ["\u0000AA=="]])
    abort = yield raw.next()
    assert_refused(abort, "wamp.error.protocol_violation",
                   "PUBLISH uses payload passthru mode (ppt_scheme) but the session did not announce "
                   "payload_passthru_mode for its publisher role")
