"""The router's MessagePack and CBOR object serializers: Autobahn's wire
formats, plus what JavaScript clients send (undefined, tagged Uint8Arrays)."""

import cbor2
import msgpack
import pytest
from autobahn.wamp import serializer as ab

from relayrouter.core.codec import UNDEFINED
from relayrouter.transport.serializers import (CBORObjectSerializer, FastJsonObjectSerializer,
                                               MsgPackObjectSerializer, router_serializers)

MESSAGES = [
    [16, 1, {"acknowledge": True}, "com.t", [1, "two", 3.5, None, True], {"k": [b"\x00\xff", {"n": -7}]}],
    [2, 2**53, {"roles": {"broker": {"features": {}}}}],
    [6, {}, "wamp.close.normal"],
]

PAIRS = [(MsgPackObjectSerializer, ab.MsgPackObjectSerializer), (CBORObjectSerializer, ab.CBORObjectSerializer)]


@pytest.mark.parametrize(("ours", "autobahns"), PAIRS)
@pytest.mark.parametrize("batched", [False, True])
def test_same_bytes_and_values_as_autobahn(ours, autobahns, batched):
    mine, theirs = ours(batched=batched), autobahns(batched=batched)
    for message in MESSAGES:
        data = mine.serialize(message)
        assert data == theirs.serialize(message)
        assert mine.unserialize(data) == theirs.unserialize(data) == [message]


@pytest.mark.parametrize("objser", [MsgPackObjectSerializer, CBORObjectSerializer])
def test_batched_mode_reads_several_and_refuses_a_cut(objser):
    s = objser(batched=True)
    data = s.serialize(MESSAGES[0]) + s.serialize(MESSAGES[2])
    assert s.unserialize(data) == [MESSAGES[0], MESSAGES[2]]
    with pytest.raises(ValueError, match="shorter than its length prefix"):
        s.unserialize(data[:-1])
    with pytest.raises(ValueError, match="length prefix is cut short"):
        s.unserialize(data + b"\x00\x00")


# wampy 8.0.2's SUBSCRIBE [32, 1, {match: undefined, get_retained: undefined}, "com.t"],
# byte for byte. msgpackr writes undefined as fixext 1, type 0, data 0 (d4 00 00)
# and the map as map 16; cbor-x writes simple value 23 (f7) and a 2-byte map length.
WAMPY_MSGPACK_SUBSCRIBE = bytes.fromhex("942001de0002a56d61746368d40000ac6765745f72657461696e6564d40000a5636f6d2e74")
WAMPY_CBOR_SUBSCRIBE = bytes.fromhex("84182001b90002656d61746368f76c6765745f72657461696e6564f765636f6d2e74")


@pytest.mark.parametrize(("objser", "data"), [(MsgPackObjectSerializer, WAMPY_MSGPACK_SUBSCRIBE),
                                              (CBORObjectSerializer, WAMPY_CBOR_SUBSCRIBE)])
def test_javascript_undefined_decodes_to_one_value(objser, data):
    [raw] = objser().unserialize(data)
    assert raw == [32, 1, {"match": UNDEFINED, "get_retained": UNDEFINED}, "com.t"]
    assert raw[2]["match"] is UNDEFINED


def test_undefined_in_a_payload_goes_on_to_every_serializer():
    event = [36, 1, 2, {}, ["a", UNDEFINED]]
    assert MsgPackObjectSerializer().unserialize(MsgPackObjectSerializer().serialize(event)) == [event]
    assert msgpack.unpackb(MsgPackObjectSerializer().serialize(event))[4][1] == msgpack.ExtType(0, b"\x00")
    assert CBORObjectSerializer().serialize(event) == cbor2.dumps(event)  # CBOR has undefined itself
    assert FastJsonObjectSerializer().serialize(event) == b'[36,1,2,{},["a",null]]'


def test_other_msgpack_extensions_stay_extensions():
    data = msgpack.packb([36, 1, 2, {}, [msgpack.ExtType(5, b"xy"), msgpack.ExtType(0, b"\x01")]])
    [raw] = MsgPackObjectSerializer().unserialize(data)
    assert raw[4] == [msgpack.ExtType(5, b"xy"), msgpack.ExtType(0, b"\x01")]


def test_a_tagged_uint8_array_is_bytes_and_other_tags_stay():
    # cbor-x writes a Uint8Array (what it decoded a byte string to) as tag 64.
    data = cbor2.dumps([70, 1, {}, [cbor2.CBORTag(64, b"\x01\x02"), cbor2.CBORTag(64, "text"),
                                   cbor2.CBORTag(4711, b"x")]])
    [raw] = CBORObjectSerializer().unserialize(data)
    assert raw[3] == [b"\x01\x02", cbor2.CBORTag(64, "text"), cbor2.CBORTag(4711, b"x")]


def test_the_router_offers_its_own_binary_serializers():
    kinds = {s.SERIALIZER_ID: type(s._serializer) for s in router_serializers()}
    assert kinds == {"cbor.batched": CBORObjectSerializer, "cbor": CBORObjectSerializer,
                     "msgpack.batched": MsgPackObjectSerializer, "msgpack": MsgPackObjectSerializer,
                     "json.batched": FastJsonObjectSerializer, "json": FastJsonObjectSerializer}


def test_a_binary_value_nested_too_deep_is_a_decoding_error_naming_it():
    """orjson reads up to 1024 levels; turning WAMP's binary strings back into bytes
    recurses, so a binary value ~1000 levels down is refused by name, not by a RecursionError."""
    deep = b"[" * 1010 + b'"\\u0000AAAA"' + b"]" * 1010
    with pytest.raises(ValueError, match="^a binary value is nested too deep to decode$"):
        FastJsonObjectSerializer().unserialize(deep)
    assert FastJsonObjectSerializer().unserialize(b'[[["\\u0000AAAA"]]]') == [[[[b"\x00\x00\x00"]]]]
