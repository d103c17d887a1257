"""What devices send, turned into dojot's message; free of I/O.

A device sends ``{"ts"?: RFC 3339 or epoch ms, "data": {attr: value, ...}}`` (HTTP, and
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


_DATE_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt\s]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
                        r"(?:([Zz])|([+-])([0-9]{2})(?::?([0-9]{2}))?)")
MAX_EPOCH_MS = 8_640_000_000_000_000  # the last instant a JavaScript Date holds
_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def parse_date_time(text) -> int | None:
    """RFC 3339 date-time as JSON Schema's ``date-time`` format takes it (an
    offset is required) -> epoch nanoseconds, exactly; None when it is not one.
    A leap second (``:60``) is a valid date-time but no instant: None."""
    found = _DATE_TIME.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(found.group(i)) for i in range(1, 7))
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= month <= 12 or not 1 <= day <= _DAYS[month - 1] + (month == 2 and leap):
        return None
    off_h, off_m = int(found.group(10) or 0), int(found.group(11) or 0)
    if hour > 23 or minute > 59 or second > 59 or off_h > 23 or off_m > 59:
        return None
    fraction = (found.group(7) or "")[:9].ljust(9, "0")
    offset = (off_h * 60 + off_m) * (-1 if found.group(9) == "-" else 1)
    days = _days_since_epoch(year, month, day)
    seconds = days * 86400 + hour * 3600 + (minute - offset) * 60 + second
    return seconds * 1_000_000_000 + int(fraction)


def _days_since_epoch(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 in the proleptic Gregorian calendar (any year, 0 too)."""
    year -= month <= 2
    era = year // 400
    of_era = year - era * 400
    of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    of_era_days = of_era * 365 + of_era // 4 - of_era // 100 + of_year
    return era * 146097 + of_era_days - 719468


def parse_timestamp(value, now_ms: int = 0) -> int:
    """A message's ``ts`` -> epoch ms, as dojot's HTTP agent reads it: an
    RFC 3339 date-time (sub-millisecond digits dropped) or an integer of epoch
    milliseconds (0 stands for now); at or before 1970 it is no timestamp."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer() and value >= 0:
        ms = int(value) or now_ms
    elif isinstance(value, str) and (ns := parse_date_time(value)) is not None:
        ms = ns // 1_000_000
    else:
        raise Invalid(f"'ts' must be an RFC 3339 date-time or an integer of epoch milliseconds, not {_show(value)}")
    if not 0 < ms <= MAX_EPOCH_MS:
        raise Invalid("Invalid timestamp")
    return ms


def format_timestamp(ms: int) -> str:
    """Epoch ms -> ``2021-06-16T09:32:01.683Z`` (dojot's history format)."""
    when = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def envelope(body, now_ms: int, envelope_only: bool = True) -> tuple[dict, int]:
    """(attribute object, timestamp ms) of one incoming message.

    ``envelope_only`` (HTTP) requires ``{"ts"?, "data"}`` (other keys are let
    be, as dojot's schema does); otherwise (MQTT) a body that is not exactly
    that shape is the attribute object itself."""
    if not isinstance(body, dict):
        raise Invalid(f"a message must be a JSON object, not {_kind(body)}")
    is_envelope = "data" in body and set(body) <= {"data", "ts"} and isinstance(body["data"], dict)
    if envelope_only or is_envelope:
        if "data" not in body:
            raise Invalid("missing 'data' (the attributes the device sends)")
        if not isinstance(body["data"], dict):
            raise Invalid(f"'data' must be an object, not {_kind(body['data'])}")
        ts = parse_timestamp(body["ts"], now_ms) if "ts" in body else now_ms
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
