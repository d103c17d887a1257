"""The WAMP serializers the router speaks.

MessagePack and CBOR are Autobahn's.  JSON is Autobahn's wire format with a
faster codec (orjson) behind Autobahn's ``Serializer`` interface; WAMP's
binary convention is kept: a byte string travels as a JSON string of a NUL
character followed by the base64 of the bytes, and such strings are turned
back into bytes on the way in.
"""

import base64

import orjson
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer, Serializer

_NUL_STRING = b'"\\u0000'  # how a binary value's JSON string starts on the wire
_DUMP_OPTIONS = orjson.OPT_NON_STR_KEYS


def _encode_binary(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\x00" + base64.b64encode(value).decode("ascii")
    raise TypeError(f"{type(value).__name__} cannot be sent as JSON")


def _decode_binary(value):
    if type(value) is str:
        if value[:1] == "\x00":
            return base64.b64decode(value[1:], validate=True)
        return value
    if type(value) is list:
        return [_decode_binary(v) for v in value]
    if type(value) is dict:
        return {k: _decode_binary(v) for k, v in value.items()}
    return value


class FastJsonObjectSerializer:
    """Autobahn's IObjectSerializer for JSON, on orjson."""

    NAME = "json"
    BINARY = False

    def __init__(self, batched: bool = False) -> None:
        self._batched = batched

    def serialize(self, obj) -> bytes:
        data = orjson.dumps(obj, default=_encode_binary, option=_DUMP_OPTIONS)
        # orjson's bytes keep the buffer it grew them in (at least 4 KiB, often
        # ~10x the length): a copy is exact, which matters for what waits in
        # a send queue, counted by its length.
        return data + b"\x18" if self._batched else bytes(memoryview(data))

    def unserialize(self, payload: bytes) -> list:
        chunks = payload.split(b"\x18")[:-1] if self._batched else (payload,)
        if not chunks:
            raise ValueError("batched JSON without a record separator")
        return [self._load(chunk) for chunk in chunks]

    @staticmethod
    def _load(data: bytes):
        obj = orjson.loads(data)
        if _NUL_STRING in data:
            obj = _decode_binary(obj)
        return obj


class FastJsonSerializer(JsonSerializer):
    def __init__(self, batched: bool = False) -> None:
        Serializer.__init__(self, FastJsonObjectSerializer(batched=batched))
        if batched:
            self.SERIALIZER_ID = "json.batched"


def router_serializers() -> list:
    """One instance of each serializer, shared by all connections of a listener
    so that a message's bytes are made once per serializer."""
    return [
        CBORSerializer(batched=True), CBORSerializer(),
        MsgPackSerializer(batched=True), MsgPackSerializer(),
        FastJsonSerializer(batched=True), FastJsonSerializer(),
    ]
