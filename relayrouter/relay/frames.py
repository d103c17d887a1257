"""Raw frames and WAMP events: the one mapping both directions use.

A raw frame becomes a publication with one positional argument: a text
frame a ``str``, a binary frame ``bytes`` (binary stays binary; WAMP's JSON
serializer carries it as ``"\\u0000" + base64``).  An event becomes a frame:

* one positional argument and no keyword arguments: a ``str`` is a text
  frame, ``bytes`` a binary frame, anything else its JSON as a text frame;
* a payload-passthru event: its opaque payload as a binary frame;
* anything else: the JSON text ``{"args": [...], "kwargs": {...}}``.
"""

import struct

import orjson

_HEADER16 = struct.Struct("!BBH").pack
_HEADER64 = struct.Struct("!BBQ").pack


def event_payload(event) -> tuple[bytes, bool]:
    """(frame payload, is_binary) for an EVENT."""
    payload = getattr(event, "payload", None)
    if payload is not None:
        return bytes(payload), True
    args, kwargs = event.args or (), event.kwargs or None
    if len(args) == 1 and not kwargs:
        value = args[0]
        if isinstance(value, str):
            return value.encode("utf8"), False
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value), True
        return _json(value), False
    return _json({"args": list(args), "kwargs": dict(kwargs or {})}), False


def payload_size(event) -> int:
    """Bytes an event carries, as a raw reader would receive them."""
    return len(event_payload(event)[0])


def frame(payload: bytes, binary: bool) -> bytes:
    """A complete unmasked server WebSocket frame (FIN set)."""
    first = 0x82 if binary else 0x81
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _HEADER16(first, 126, size) + payload
    return _HEADER64(first, 127, size) + payload


def _json(value) -> bytes:
    try:
        return orjson.dumps(value, default=_bytes_as_wamp)
    except TypeError:
        return orjson.dumps(repr(value))


def _bytes_as_wamp(value):
    if isinstance(value, (bytes, bytearray)):
        import base64

        return "\u0000" + base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError
