"""What devices send, turned into dojot's message; free of I/O.

A device sends ``{"ts"?: ISO-8601, "data": {attr: value, ...}}`` (HTTP, and
MQTT when the payload has exactly that shape) or, over MQTT, the attribute
object itself.  ``normalize`` checks and types every value against the
device's attribute definitions and returns::

    {"metadata": {"deviceid": ..., "tenant": ..., "timestamp": <ms>},
     "attrs": {...}}

A device without attribute definitions accepts any JSON value as is.  A device
with definitions refuses attributes it does not define, and every value must
convert to its attribute's type; the first problem is reported as
``Invalid(message)`` naming the attribute and the value, and nothing of that
message is kept (a bad value is never stored as garbage).
"""

import math
import re
from datetime import datetime, timezone

VALUE_TYPES = ("integer", "float", "string", "bool", "geo:point", "object", "array")
MAX_ATTRIBUTES = 1024


class Invalid(ValueError):
    """A device message that cannot be accepted; the text says why."""


def parse_timestamp(text) -> int:
    """ISO-8601 (``2021-06-16T09:32:01.683000Z``, an offset, or none = UTC) -> epoch ms."""
    if not isinstance(text, str):
        raise Invalid(f"'ts' must be an ISO-8601 string, not {type(text).__name__}")
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(candidate)
    except ValueError:
        raise Invalid(f"'ts' is not an ISO-8601 date and time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(round(when.timestamp() * 1000))


def format_timestamp(ms: int) -> str:
    """Epoch ms -> ``2021-06-16T09:32:01.683Z`` (dojot's history format)."""
    when = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def envelope(body, now_ms: int, envelope_only: bool = True) -> tuple[dict, int]:
    """(attribute object, timestamp ms) of one incoming message.

    ``envelope_only`` (HTTP) requires ``{"ts"?, "data"}``; otherwise (MQTT) a
    body that is not exactly that shape is the attribute object itself."""
    if not isinstance(body, dict):
        raise Invalid(f"a message must be a JSON object, not {_kind(body)}")
    is_envelope = "data" in body and set(body) <= {"data", "ts"} and isinstance(body["data"], dict)
    if envelope_only or is_envelope:
        unknown = sorted(set(body) - {"data", "ts"})
        if unknown:
            raise Invalid(f"unknown key {unknown[0]!r} (a message has 'data' and optionally 'ts')")
        if "data" not in body:
            raise Invalid("missing 'data' (the attributes the device sends)")
        if not isinstance(body["data"], dict):
            raise Invalid(f"'data' must be an object, not {_kind(body['data'])}")
        ts = parse_timestamp(body["ts"]) if "ts" in body else now_ms
        return body["data"], ts
    return body, now_ms


def normalize(tenant: str, deviceid: str, attrs: dict, ts_ms: int, definitions: dict | None) -> dict:
    """dojot's message for ``attrs`` typed by ``definitions`` ({label: type})."""
    if len(attrs) > MAX_ATTRIBUTES:
        raise Invalid(f"too many attributes ({len(attrs)}, at most {MAX_ATTRIBUTES})")
    if definitions:
        typed = {}
        for label, value in attrs.items():
            kind = definitions.get(label)
            if kind is None:
                raise Invalid(f"device {deviceid!r} has no attribute {label!r} "
                              f"(defined: {', '.join(sorted(definitions))})")
            typed[label] = convert(label, kind, value)
    else:
        typed = dict(attrs)
    return {"metadata": {"deviceid": deviceid, "tenant": tenant, "timestamp": ts_ms}, "attrs": typed}


def convert(label: str, kind: str, value):
    try:
        return _CONVERTERS[kind](value)
    except _Bad as bad:
        raise Invalid(f"attribute {label!r} is {kind}: {bad} (got {_show(value)})") from None


class _Bad(Exception):
    pass


def _integer(value):
    if isinstance(value, bool):
        raise _Bad("a boolean is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise _Bad("not a whole number")


def _float(value):
    if isinstance(value, bool):
        raise _Bad("a boolean is not a number")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _Bad("not a number") from None
    else:
        raise _Bad("not a number")
    if not math.isfinite(number):
        raise _Bad("not a finite number")
    return number


def _string(value):
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise _Bad("not text")


def _bool(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _Bad("not true or false")


def _geo_point(value):
    """'lat,lon' text or [lat, lon]; kept as dojot's 'lat,lon' text."""
    if isinstance(value, str):
        parts = value.split(",")
    elif isinstance(value, list):
        parts = value
    else:
        raise _Bad("not 'latitude,longitude'")
    if len(parts) != 2:
        raise _Bad("not 'latitude,longitude'")
    try:
        lat, lon = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise _Bad("latitude and longitude must be numbers") from None
    if isinstance(parts[0], bool) or isinstance(parts[1], bool):
        raise _Bad("latitude and longitude must be numbers")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise _Bad("latitude must be within -90..90 and longitude within -180..180")
    return f"{_plain(lat)},{_plain(lon)}"


def _plain(number: float) -> str:
    return str(int(number)) if number.is_integer() else repr(number)


def _object(value):
    if isinstance(value, dict):
        return value
    raise _Bad("not an object")


def _array(value):
    if isinstance(value, list):
        return value
    raise _Bad("not an array")


_CONVERTERS = {"integer": _integer, "float": _float, "string": _string, "bool": _bool,
               "geo:point": _geo_point, "object": _object, "array": _array}


def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
