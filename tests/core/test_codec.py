"""The fast path for PUBLISH, CALL and YIELD must agree with Autobahn's parser."""

import pytest
from autobahn.wamp import message as m
from hypothesis import given, settings
from hypothesis import strategies as st

from relayrouter.core import codec
from relayrouter.core.errors import InvalidUriRequest, ProtocolViolation

uris = st.sampled_from(["com.example.t", "a", "com.x.y.z", "bad uri", "a..b", "", ".a", "a.", "é.ü"])
ids = st.one_of(st.integers(min_value=-2, max_value=2**53 + 2), st.text(max_size=2), st.none())
values = st.one_of(st.booleans(), st.integers(), st.text(max_size=3), st.none())
options = st.dictionaries(
    st.sampled_from(["acknowledge", "exclude_me", "disclose_me", "receive_progress", "progress",
                     "timeout", "retain", "x_custom"]), values, max_size=3)
payload = st.one_of(st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                    st.text(max_size=3), st.none())


def outcome(fn, raw):
    try:
        return ("ok", fn(raw).marshal())
    except InvalidUriRequest:
        return ("invalid_uri",)
    except ProtocolViolation:
        return ("violation",)


def autobahn(raw):
    try:
        return ("ok", codec.INBOUND[raw[0]].parse(raw).marshal())
    except Exception as e:
        from autobahn.wamp.exception import InvalidUriError

        if isinstance(e, InvalidUriError) and len(raw) > 1 and type(raw[1]) is int:
            return ("invalid_uri",)
        return ("violation",)


@settings(max_examples=400, deadline=None)
@given(mtype=st.sampled_from([16, 48]), request=ids, opts=options, uri=uris,
       rest=st.lists(payload, max_size=3))
def test_publish_and_call_agree_with_autobahn(mtype, request, opts, uri, rest):
    raw = [mtype, request, opts, uri, *rest]
    assert outcome(codec.parse, raw) == autobahn(raw)


@settings(max_examples=300, deadline=None)
@given(request=ids, opts=options, rest=st.lists(payload, max_size=3))
def test_yield_agrees_with_autobahn(request, opts, rest):
    raw = [70, request, opts, *rest]
    assert outcome(codec.parse, raw) == autobahn(raw)


@pytest.mark.parametrize("raw", [
    [16, 1, {}, "com.t"],
    [16, 1, {"acknowledge": True, "exclude_me": False}, "com.t", [1], {"a": 1}],
    [48, 2, {"receive_progress": True}, "com.p", [], {}],
    [70, 3, {"progress": True}, [b"\x00bin"]],
])
def test_common_forms_take_the_fast_path(raw):
    assert codec._FAST[raw[0]](raw) is not None
    assert codec.parse(raw).marshal() == codec.INBOUND[raw[0]].parse(raw).marshal()


def test_unusual_forms_fall_back():
    assert codec._fast_publish([16, 1, {"retain": True}, "com.t"]) is None
    assert codec._fast_publish([16, 1, {}, "bad uri"]) is None
    assert isinstance(codec.parse([16, 1, {"retain": True}, "com.t"]), m.Publish)
