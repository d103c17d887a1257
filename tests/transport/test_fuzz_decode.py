"""Property-based: bad bytes on the decode path (each serializer, RawSocket
framing) only ever close the offending connection."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from relayrouter.core.peer import TransportInfo
from relayrouter.core.router import Router
from relayrouter.transport.connection import Connection
from relayrouter.transport.rawsocket import RouterRawSocketFactory
from relayrouter.config.limits import ListenerSettings
from relayrouter.transport.serializers import (CBORObjectSerializer, FastJsonObjectSerializer,
                                               MsgPackObjectSerializer, router_serializers)

from .test_connection import ROLES, Faults, FakeProto

OBJSERS = {
    "json": FastJsonObjectSerializer,
    "json.batched": lambda: FastJsonObjectSerializer(batched=True),
    "msgpack": MsgPackObjectSerializer,
    "msgpack.batched": lambda: MsgPackObjectSerializer(batched=True),
    "cbor": CBORObjectSerializer,
    "cbor.batched": lambda: CBORObjectSerializer(batched=True),
}

SEEDS = [
    [16, 1, {}, "com.t", [1, [2, [3]]]], [32, 2, {}, "com.t"], [48, 3, {}, "com.p", [], {}],
    [64, 4, {"match": "prefix"}, "com."], [70, 1, {}, ["x"]], [6, {}, "wamp.close.normal"],
]


def valid_payloads(objser):
    return [objser.serialize(seed) for seed in SEEDS]


NESTING = {"json": b"[", "msgpack": b"\x91", "cbor": b"\x81"}


@st.composite
def hostile(draw, objser, name):
    """Random bytes, or a valid message with bytes flipped, cut, or spliced."""
    base = draw(st.sampled_from(valid_payloads(objser)))
    kind = draw(st.sampled_from(["random", "flip", "cut", "splice", "nest"]))
    if kind == "random":
        return draw(st.binary(max_size=64))
    if kind == "flip":
        data = bytearray(base)
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "cut":
        return base[:draw(st.integers(0, len(base)))]
    if kind == "splice":
        return base + draw(st.binary(max_size=16)) + base
    return NESTING[name.split(".")[0]] * draw(st.integers(50, 3000)) + base


ABORT, GOODBYE = 3, 6


def assert_closed_with_abort(written: list, objser, payload: bytes, proto) -> None:
    """What the router wrote in answer to ``payload`` ends with an ABORT for a
    protocol violation (or a GOODBYE, when the payload was a peer's GOODBYE),
    and the connection is being closed."""
    said = [message for data in written for message in objser.unserialize(data)]
    assert said, "the session closed without a word"
    last = said[-1]
    if last[0] == GOODBYE:
        try:
            heard = objser.unserialize(payload)
        except Exception:
            heard = []
        assert any(isinstance(m, list) and m[:1] == [GOODBYE] for m in heard), (payload, said)
    else:
        assert last[0] == ABORT and last[2] == "wamp.error.protocol_violation", last
        assert last[1]["message"], last
    assert hung_up(proto)


def hung_up(proto) -> bool:
    return proto.closed or proto.dropped


def establish(router, objser, name):
    proto = FakeProto()
    conn = Connection(router, proto, TransportInfo(kind="websocket", serializer=name.split(".")[0]),
                      objser, proto.written.append, ListenerSettings())
    conn.receive_payload(objser.serialize([1, "realm1", ROLES]))
    [welcome] = objser.unserialize(proto.written[-1])
    assert welcome[0] == 2
    return conn, proto


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(list(OBJSERS)), data=st.data())
def test_bad_bytes_close_only_the_offending_connection(name, data):
    objser = OBJSERS[name]()
    faults = Faults()
    router = Router(Clock(), observer=faults)
    router.add_realm("realm1")
    bystander_objser = OBJSERS[name]()
    bystander, bystander_proto = establish(router, bystander_objser, name)
    bystander.receive_payload(bystander_objser.serialize([32, 1, {}, "com.t"]))
    conn, proto = establish(router, objser, name)
    for payload in data.draw(st.lists(hostile(objser, name), min_size=1, max_size=5)):
        if hung_up(proto):
            break
        before = len(proto.written)
        conn.receive_payload(payload)  # must not raise
        if hung_up(proto):
            assert_closed_with_abort(proto.written[before:], objser, payload, proto)
    assert faults.internal == []
    # the bystander is still there, subscribed: a publication reaches it
    publisher, _ = establish(router, FastJsonObjectSerializer(), "json")
    publisher.receive_payload(b'[16, 1, {}, "com.t", ["still here"]]')
    assert not hung_up(bystander_proto)
    assert bystander_objser.unserialize(bystander_proto.written[-1])[-1][4] == ["still here"]
    publisher.lost()
    conn.lost()
    bystander.lost()
    assert router.realms["realm1"].sessions == {}


# ------------------------------------------------------------ RawSocket framing


def rawsocket_connection(router):
    listener = ListenerSettings(hello_timeout=10, max_message_size=4096, heartbeat_interval=1)
    factory = RouterRawSocketFactory(router, router_serializers(), listener, clock=router.clock)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    return factory, proto, transport


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(st.binary(max_size=40), max_size=8),
       handshake=st.sampled_from([b"\x7f\xf1\x00\x00", b"\x7f\xf2\x00\x00", b"\x7f\xf3\x00\x00"]),
       frames=st.lists(st.tuples(st.integers(0, 255), st.integers(0, 2**24 - 1), st.binary(max_size=30)),
                       max_size=4))
def test_rawsocket_framing_never_raises(chunks, handshake, frames):
    faults = Faults()
    router = Router(Clock(), observer=faults)
    router.add_realm("realm1")
    factory, proto, transport = rawsocket_connection(router)
    proto.dataReceived(handshake)
    stream = b"".join(bytes((kind,)) + length.to_bytes(3, "big") + body for kind, length, body in frames)
    for chunk in [stream, *chunks]:
        if transport.disconnecting or getattr(transport, "disconnected", False):
            break
        proto.dataReceived(chunk)  # must not raise
    router.clock.advance(60)  # heartbeats and deadlines run without raising
    proto.connectionLost(None)
    assert faults.internal == []
    assert router.realms["realm1"].sessions == {}
    assert not factory.connections
