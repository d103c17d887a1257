"""relayrouter.httpinput: what every HTTP handler reads, read one way."""

import io
import json

import pytest
from twisted.web.http_headers import Headers

from relayrouter import httpinput
from relayrouter.httpinput import MAX_DEPTH, BadInput
from relayrouter.transport import micronets


class Request:
    """What the readers use of a twisted.web request."""

    def __init__(self, body: bytes = b"", headers: dict | None = None, args: dict | None = None) -> None:
        self.content = io.BytesIO(body)
        self.requestHeaders = Headers({k: [v] for k, v in (headers or {}).items()})
        self.args = args or {}

    def getHeader(self, name: bytes):  # noqa: N802 - twisted.web's name
        values = self.requestHeaders.getRawHeaders(name)
        return values[-1] if values else None


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 990, 1000, 5000, 100_000])
def test_json_deeper_than_the_limit_is_a_400_naming_it(depth):
    with pytest.raises(BadInput) as e:
        httpinput.json_value(nested(depth))
    assert (e.value.code, e.value.field) == (400, "the body")
    assert e.value.message == f"the body is nested more than {MAX_DEPTH} levels deep (the limit)"
    with pytest.raises(BadInput):
        httpinput.json_value(b"[" * depth)  # not even closed: the depth is what is said


def test_json_at_the_limit_and_brackets_in_strings_pass():
    assert httpinput.deeper_than(json.loads(nested(MAX_DEPTH)), MAX_DEPTH) is False
    assert httpinput.json_value(nested(MAX_DEPTH)) is not None
    text = json.dumps({"s": "[" * 10_000, "t": ["{" * 500]}).encode()
    assert httpinput.json_value(text)["s"] == "[" * 10_000
    assert httpinput.json_value(b'{"a": ' * 3 + b"1" + b"}" * 3, max_depth=3) == {"a": {"a": {"a": 1}}}
    with pytest.raises(BadInput):
        httpinput.json_value(b'{"a": ' * 4 + b"1" + b"}" * 4, max_depth=3)


@pytest.mark.parametrize("raw, words", [(b"\xff\xfe", "not valid JSON"), (b"{", "not valid JSON"),
                                        (b"", "not valid JSON"), (b"[1] x", "not valid JSON")])
def test_what_is_not_json_is_a_400(raw, words):
    with pytest.raises(BadInput) as e:
        httpinput.json_value(raw)
    assert e.value.code == 400 and words in e.value.message


def test_a_body_over_its_limit_is_a_413_before_it_is_decoded():
    with pytest.raises(BadInput) as e:
        httpinput.json_body(Request(b"[1]" * 100, {b"Content-Length": b"300"}), limit=100)
    assert (e.value.code, e.value.message) == (413, "the body is 300 bytes; the limit is 100 bytes")
    with pytest.raises(BadInput) as e:
        httpinput.json_body(Request(b" " * 101), limit=100)
    assert e.value.code == 413
    assert httpinput.json_body(Request(b"  "), limit=100, empty={}) == {}
    assert httpinput.json_object(Request(b'{"a": 1}'), limit=100) == {"a": 1}
    with pytest.raises(BadInput, match="must be a JSON object"):
        httpinput.json_object(Request(b"[1]"), limit=100)


@pytest.mark.parametrize("value, kind", [([], "a list"), ({}, "an object"), (7, "a number"), (True, "a boolean")])
def test_a_field_of_the_wrong_type_is_named(value, kind):
    with pytest.raises(BadInput) as e:
        httpinput.string_field({"realm": value}, "realm")
    assert (e.value.field, e.value.message) == ("realm", f"'realm' must be a string, not {kind}")
    assert httpinput.string_field({"realm": None}, "realm", "dflt") == "dflt"
    assert httpinput.string_field({"realm": "r"}, "realm") == "r"


def test_headers_and_parameters_must_be_utf8_and_carried_headers_never_fail():
    request = Request(headers={b"Authorization": b"Bearer \xff", b"Content-Type": b"text/\xe9"},
                      args={b"realm": [b"\xff"], b"ok": [b"caf\xc3\xa9"]})
    with pytest.raises(BadInput, match="^the Authorization header is not valid UTF-8$"):
        httpinput.bearer(request)
    with pytest.raises(BadInput, match=r"^\?realm= is not valid UTF-8$"):
        httpinput.arg(request, "realm")
    assert httpinput.arg(request, "ok") == "café"
    assert httpinput.carried_header(request, "Content-Type") == "text/\xe9"
    assert httpinput.bearer(Request(headers={b"Authorization": b"Bearer  tok "})) == "tok"
    assert httpinput.bearer(Request(headers={b"Authorization": b"Basic x"})) is None


@pytest.mark.parametrize("text", ["9" * 400, "-" + "9" * 30, "1e5", "0x10", "", " ", "١٢", "9223372036854775808"])
def test_integers_out_of_range_or_not_integers_are_named(text):
    with pytest.raises(BadInput) as e:
        httpinput.integer(text, "?before=")
    assert e.value.message.startswith("?before= must be an integer between")


def test_integers_in_range():
    assert httpinput.integer(" 9223372036854775807 ", "n") == 2 ** 63 - 1
    assert httpinput.integer("-5", "n") == -5
    with pytest.raises(BadInput):
        httpinput.integer("-5", "n", low=0)


@pytest.mark.parametrize("raw", [b"a\x00b", b"\xff", b"a\x7fb", b"\x1b[31m"])
def test_path_segments_with_control_characters_or_not_utf8_are_refused(raw):
    with pytest.raises(BadInput):
        httpinput.path_segment(raw)


def test_a_micronets_message_nested_too_deep_is_a_protocol_error_naming_the_limit():
    with pytest.raises(micronets.ProtocolError, match=f"the message is nested more than {MAX_DEPTH} levels"):
        micronets.parse(b'{"message": ' + nested(5000) + b"}")
