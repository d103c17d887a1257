"""Payload Passthru Mode: ppt_* options and the opaque payload pass untouched."""

from autobahn.wamp.serializer import CBORObjectSerializer, JsonObjectSerializer, MsgPackObjectSerializer

from relayrouter.testing import join, make_router
from tests.refusals import assert_refused

PPT = {"ppt_scheme": "wamp.eth", "ppt_serializer": "cbor", "ppt_cipher": "xsalsa20poly1305",
       "ppt_keyid": "0x5eC0"}
BLOB = b"\x00\xffopaque\x01"
ALL = {"features": {"payload_passthru_mode": True}}
PPT_ROLES = {role: ALL for role in ("caller", "callee", "publisher", "subscriber")}
SERIALIZERS = (JsonObjectSerializer(), MsgPackObjectSerializer(), CBORObjectSerializer())


def ppt_peer(router):
    return join(router, roles=PPT_ROLES)


def roundtrip(message, serializer):
    [raw] = serializer.unserialize(message.serialize(serializer))
    return raw


def test_publish_to_event_keeps_ppt_options_and_binary_payload_in_every_serializer():
    router = make_router()
    pub, sub = ppt_peer(router), ppt_peer(router)
    sub.receive([32, 1, {"match": "prefix"}, "com.secret"])
    sub.take()
    pub.receive([16, 2, dict(PPT), "com.secret.x", [BLOB]])
    [event] = sub.take()
    for serializer in SERIALIZERS:
        raw = roundtrip(event, serializer)
        assert raw[3] == {**PPT, "topic": "com.secret.x"}
        assert raw[4] == [BLOB]


def test_call_invocation_yield_result_and_error_keep_ppt():
    router = make_router()
    callee, caller = ppt_peer(router), ppt_peer(router)
    callee.receive([64, 1, {}, "com.rpc"])
    callee.take()
    caller.receive([48, 3, dict(PPT), "com.rpc", [BLOB]])
    [inv] = callee.take()
    for serializer in SERIALIZERS:
        assert roundtrip(inv, serializer)[3:] == [PPT, [BLOB]]
    callee.receive([70, inv.request, {**PPT, "ppt_keyid": "k2"}, [BLOB + b"r"]])
    [result] = caller.take()
    for serializer in SERIALIZERS:
        assert roundtrip(result, serializer)[2:] == [{**PPT, "ppt_keyid": "k2"}, [BLOB + b"r"]]
    caller.receive([48, 4, dict(PPT), "com.rpc", [BLOB]])
    [inv] = callee.take()
    callee.receive([8, 68, inv.request, dict(PPT), "com.app.failed", [BLOB]])
    [error] = caller.take()
    assert roundtrip(error, JsonObjectSerializer()) == [8, 48, 4, PPT, "com.app.failed", [BLOB]]


def test_ppt_without_announcing_it_is_a_protocol_violation():
    router = make_router()
    plain = join(router)
    plain.receive([16, 1, dict(PPT), "com.t", [BLOB]])
    assert plain.last().reason == "wamp.error.protocol_violation"
    assert "payload_passthru_mode" in plain.last().message
    caller = join(router)
    caller.receive([48, 1, dict(PPT), "com.t", [BLOB]])
    assert_refused(caller.last(), "wamp.error.protocol_violation",
                   "CALL uses payload passthru mode (ppt_scheme) but the session did not announce "
                   "payload_passthru_mode for its caller role")


def test_ppt_call_to_a_callee_without_ppt_is_feature_not_supported():
    router = make_router()
    callee, caller = join(router), ppt_peer(router)
    callee.receive([64, 1, {}, "com.rpc"])
    callee.take()
    caller.receive([48, 3, dict(PPT), "com.rpc", [BLOB]])
    assert callee.take() == []
    assert_refused(caller.last(), "wamp.error.feature_not_supported",
                   "the callee of 'com.rpc' does not support payload passthru mode")


def test_ppt_yield_to_a_caller_without_ppt_is_refused_to_the_callee():
    router = make_router()
    callee, caller = ppt_peer(router), join(router)
    callee.receive([64, 1, {}, "com.rpc"])
    callee.take()
    caller.receive([48, 3, {}, "com.rpc", [1]])
    [inv] = callee.take()
    callee.receive([70, inv.request, dict(PPT), [BLOB]])
    assert caller.take() == []
    assert callee.last().marshal()[:5] == [8, 70, inv.request, {}, "wamp.error.feature_not_supported"]
    callee.receive([70, inv.request, {}, ["plain"]])
    assert caller.take()[0].args == ["plain"]


def test_events_without_ppt_stay_autobahn_events():
    from autobahn.wamp import message as m

    router = make_router()
    pub, sub = join(router), join(router)
    sub.receive([32, 1, {}, "com.t"])
    sub.take()
    pub.receive([16, 1, {}, "com.t", [1]])
    assert type(sub.take()[0]) is m.Event
