"""Device messages into dojot's envelope, typed by attribute definitions."""

import pytest

from connectors.iot_agent.normalize import (Invalid, envelope, format_timestamp, normalize,
                                            parse_timestamp)

NOW = 1_700_000_000_123


def test_dojot_example_message():
    attrs, ts = envelope({"ts": "2021-06-16T09:32:01.683000Z", "data": {"temperature": 25.79}}, NOW)
    assert ts == 1623835921683
    assert normalize("admin", "c6ea4b", attrs, ts, None) == {
        "metadata": {"deviceid": "c6ea4b", "tenant": "admin", "timestamp": 1623835921683},
        "attrs": {"temperature": 25.79}}


def test_timestamp_forms():
    assert parse_timestamp("2021-06-16T09:32:01Z") == 1623835921000
    assert parse_timestamp("2021-06-16T09:32:01+02:00") == 1623835921000 - 2 * 3600 * 1000
    assert parse_timestamp("2021-06-16T09:32:01.5z") == 1623835921500
    assert parse_timestamp("2021-06-16 09:32:01.6839Z") == 1623835921683  # sub-millisecond digits dropped
    assert parse_timestamp(1623835921683) == 1623835921683  # epoch ms (dojot's schema takes both)
    assert parse_timestamp(0, now_ms=NOW) == NOW  # dojot reads 0 as "no ts"
    assert format_timestamp(1623835921683) == "2021-06-16T09:32:01.683Z"
    assert format_timestamp(parse_timestamp("2021-06-16T09:32:01.007Z")) == "2021-06-16T09:32:01.007Z"


def test_missing_ts_is_now():
    assert envelope({"data": {}}, NOW) == ({}, NOW)


def test_http_envelope_lets_other_keys_be():
    """dojot's single-message schema does not forbid other keys."""
    assert envelope({"data": {"t": 1}, "extra": 1}, NOW) == ({"t": 1}, NOW)


@pytest.mark.parametrize("body, words", [
    ([], "must be a JSON object, not an array"),
    ("x", "must be a JSON object, not a string"),
    ({}, "missing 'data'"),
    ({"data": 3}, "'data' must be an object, not a number"),
    ({"data": {}, "ts": "yesterday"}, "'ts' must be an RFC 3339 date-time or an integer of epoch milliseconds"),
    ({"data": {}, "ts": "2021-06-16T09:32:01"}, "'ts' must be an RFC 3339 date-time"),  # the offset is required
    ({"data": {}, "ts": -5}, "'ts' must be an RFC 3339 date-time or an integer"),
    ({"data": {}, "ts": 1.5}, "'ts' must be an RFC 3339 date-time or an integer"),
    ({"data": {}, "ts": "1970-01-01T00:00:00.000Z"}, "Invalid timestamp"),  # dojot: at or before 1970
    ({"data": {}, "ts": "1969-12-31T23:59:59+00:00"}, "Invalid timestamp"),
])
def test_http_envelope_errors(body, words):
    with pytest.raises(Invalid, match=words.replace("(", r"\(")):
        envelope(body, NOW)


def test_mqtt_plain_attribute_object_or_envelope():
    assert envelope({"t": 1, "data": 2}, NOW, envelope_only=False) == ({"t": 1, "data": 2}, NOW)
    assert envelope({"data": {"t": 1}}, NOW, envelope_only=False) == ({"t": 1}, NOW)
    assert envelope({"data": {"t": 1}, "ts": "2021-06-16T09:32:01Z"}, NOW, envelope_only=False)[1] == 1623835921000


TYPES = {"i": "integer", "f": "float", "s": "string", "b": "bool", "g": "geo:point", "o": "object",
         "a": "array"}


@pytest.mark.parametrize("label, value, typed", [
    ("i", 3, 3), ("i", 3.0, 3), ("i", "-12", -12),
    ("f", 1, 1.0), ("f", "2.5", 2.5), ("f", 2.5, 2.5),
    ("s", "x", "x"), ("s", 5, "5"), ("s", True, "true"),
    ("b", True, True), ("b", "false", False), ("b", 1, True),
    ("g", "-22.8,-47.06", "-22.8,-47.06"), ("g", [10, 20.5], "10,20.5"),
    ("o", {"k": 1}, {"k": 1}), ("a", [1, 2], [1, 2]),
])
def test_typed_values(label, value, typed):
    msg = normalize("t", "d", {label: value}, NOW, TYPES)
    assert msg["attrs"][label] == typed and type(msg["attrs"][label]) is type(typed)


@pytest.mark.parametrize("label, value, words", [
    ("i", 3.5, "attribute 'i' is integer: not a whole number (got 3.5)"),
    ("i", True, "a boolean is not an integer"),
    ("i", "x", "not a whole number"),
    ("f", "warm", "attribute 'f' is float: not a number (got 'warm')"),
    ("f", float("inf"), "not a finite number"),
    ("f", None, "not a number"),
    ("f", False, "a boolean is not a number"),
    ("s", {"x": 1}, "not text"),
    ("b", "yes", "not true or false"),
    ("b", 2, "not true or false"),
    ("g", "1", "not 'latitude,longitude'"),
    ("g", "a,b", "must be numbers"),
    ("g", "91,0", "latitude must be within"),
    ("g", 5, "not 'latitude,longitude'"),
    ("o", [1], "not an object"),
    ("a", {}, "not an array"),
])
def test_bad_values_are_reported(label, value, words):
    with pytest.raises(Invalid) as caught:
        normalize("t", "d", {label: value}, NOW, TYPES)
    assert words in str(caught.value)


def test_undefined_attribute_is_refused_when_the_device_has_definitions():
    with pytest.raises(Invalid, match="device 'd' has no attribute 'zzz' \\(defined: a, b"):
        normalize("t", "d", {"zzz": 1}, NOW, TYPES)


def test_untyped_device_keeps_values_as_sent():
    assert normalize("t", "d", {"anything": [1, {"x": None}]}, NOW, {})["attrs"] == {"anything": [1, {"x": None}]}


def test_too_many_attributes():
    with pytest.raises(Invalid, match="too many attributes"):
        normalize("t", "d", {str(i): i for i in range(2000)}, NOW, None)
