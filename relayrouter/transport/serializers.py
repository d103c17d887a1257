"""The WAMP serializers the router speaks.

Each is Autobahn's wire format behind Autobahn's ``Serializer`` interface.
JSON uses a faster codec (orjson); WAMP's binary convention is kept: a byte
string travels as a JSON string of a NUL character followed by the base64 of
the bytes, and such strings are turned back into bytes on the way in.
MessagePack and CBOR use the libraries Autobahn uses (msgpack, cbor2), with
what JavaScript clients send understood:

- JavaScript ``undefined``: CBOR's simple value 23 (cbor2 decodes it to its
  ``undefined``) and MessagePack extension type 0 (msgpackr), which we decode
  to the same value, ``codec.UNDEFINED``.  The core drops it from options; in
  a payload it is passed on: as itself over CBOR and MessagePack, and as
  ``null`` over JSON (as JavaScript's JSON.stringify writes it in an array).
- a ``Uint8Array`` tagged as RFC 8746 says (tag 64, as cbor-x writes one): it
  is a byte string, and read as one.
"""

import base64
import struct

import cbor2
import msgpack
import orjson
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer, Serializer

from ..core.codec import UNDEFINED

_NUL_STRING = b'"\\u0000'  # how a binary value's JSON string starts on the wire
_DUMP_OPTIONS = orjson.OPT_NON_STR_KEYS


def _encode_binary(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\x00" + base64.b64encode(value).decode("ascii")
    if value is UNDEFINED:
        return None
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
            try:
                obj = _decode_binary(obj)
            except RecursionError:  # orjson reads 1024 levels; Python recurses to ~1000
                raise ValueError("a binary value is nested too deep to decode") from None
        return obj


class FastJsonSerializer(JsonSerializer):
    def __init__(self, batched: bool = False) -> None:
        Serializer.__init__(self, FastJsonObjectSerializer(batched=batched))
        if batched:
            self.SERIALIZER_ID = "json.batched"


_MSGPACK_UNDEFINED_CODE = 0
_MSGPACK_UNDEFINED = msgpack.ExtType(_MSGPACK_UNDEFINED_CODE, b"\x00")  # how msgpackr writes it
_CBOR_UINT8_ARRAY = 64  # RFC 8746: a byte string holding a Uint8Array
_LENGTH = struct.Struct("!L")  # the length prefix of batched mode


def _msgpack_ext(code: int, data: bytes):
    if code == _MSGPACK_UNDEFINED_CODE and data == b"\x00":
        return UNDEFINED
    return msgpack.ExtType(code, data)


def _msgpack_default(value):
    if value is UNDEFINED:
        return _MSGPACK_UNDEFINED
    raise TypeError(f"{type(value).__name__} cannot be sent as MessagePack")


def _cbor_tag(tag: cbor2.CBORTag, immutable: bool):  # cbor2 >= 6 calls tag_hook(tag, immutable)
    # cbor-x (wampy's CBOR codec) tags a Uint8Array it was given, e.g. one it
    # decoded from a message and sends on: to every other peer it is bytes.
    if tag.tag == _CBOR_UINT8_ARRAY and type(tag.value) is bytes:
        return tag.value
    return tag


class _BinaryObjectSerializer:
    """An Autobahn IObjectSerializer for a binary codec; batched mode prefixes
    each message with its length (4 bytes, big-endian), as Autobahn does."""

    BINARY = True

    def __init__(self, batched: bool = False) -> None:
        self._batched = batched

    def serialize(self, obj) -> bytes:
        data = self._dump(obj)
        return _LENGTH.pack(len(data)) + data if self._batched else data

    def unserialize(self, payload: bytes) -> list:
        if not self._batched:
            return [self._load(payload)]
        messages, at, end = [], 0, len(payload)
        while at < end:
            if at + 4 > end:
                raise ValueError(f"batched {self.NAME}: a length prefix is cut short")
            (length,) = _LENGTH.unpack_from(payload, at)
            if at + 4 + length > end:
                raise ValueError(f"batched {self.NAME}: a message is shorter than its length prefix")
            messages.append(self._load(payload[at + 4:at + 4 + length]))
            at += 4 + length
        return messages


class MsgPackObjectSerializer(_BinaryObjectSerializer):
    """Autobahn's MessagePack options (binary type on, strings decoded), plus
    JavaScript ``undefined`` both ways."""

    NAME = "msgpack"

    def __init__(self, batched: bool = False) -> None:
        super().__init__(batched)
        # One Packer, reused: about twice as fast as packb, which builds one
        # per call.  Only the reactor thread serializes for the router.
        self._dump = msgpack.Packer(use_bin_type=True, default=_msgpack_default).pack

    @staticmethod
    def _load(data: bytes):
        return msgpack.unpackb(data, raw=False, ext_hook=_msgpack_ext)


class CBORObjectSerializer(_BinaryObjectSerializer):
    """cbor2 as Autobahn uses it, plus RFC 8746 Uint8Arrays read as bytes."""

    NAME = "cbor"

    @staticmethod
    def _dump(obj) -> bytes:
        return cbor2.dumps(obj)

    @staticmethod
    def _load(data: bytes):
        return cbor2.loads(data, tag_hook=_cbor_tag)


class RouterMsgPackSerializer(MsgPackSerializer):
    def __init__(self, batched: bool = False) -> None:
        Serializer.__init__(self, MsgPackObjectSerializer(batched=batched))
        if batched:
            self.SERIALIZER_ID = "msgpack.batched"


class RouterCBORSerializer(CBORSerializer):
    def __init__(self, batched: bool = False) -> None:
        Serializer.__init__(self, CBORObjectSerializer(batched=batched))
        if batched:
            self.SERIALIZER_ID = "cbor.batched"


def router_serializers() -> list:
    """One instance of each serializer, shared by all connections of a listener
    so that a message's bytes are made once per serializer."""
    return [
        RouterCBORSerializer(batched=True), RouterCBORSerializer(),
        RouterMsgPackSerializer(batched=True), RouterMsgPackSerializer(),
        FastJsonSerializer(batched=True), FastJsonSerializer(),
    ]
