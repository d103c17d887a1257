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


# ------------------------------------------------------ JavaScript undefined

U = codec.UNDEFINED

# (with undefined options, the same message without them): every inbound
# message type that has an options or details dict.
UNDEFINED_OPTIONS = [
    ([1, "realm1", {"roles": {"subscriber": {"features": {"x": U}}}, "authid": "a", "authextra": U}],
     [1, "realm1", {"roles": {"subscriber": {"features": {}}}, "authid": "a"}]),
    ([5, "signature", {"extra": U}], [5, "signature", {}]),
    ([3, {"message": U}, "wamp.error.not_authorized"], [3, {}, "wamp.error.not_authorized"]),
    ([6, {"message": U}, "wamp.close.normal"], [6, {}, "wamp.close.normal"]),
    ([8, 68, 7, {"_trace": U}, "com.example.error", ["x"]], [8, 68, 7, {}, "com.example.error", ["x"]]),
    ([16, 1, {"acknowledge": U, "exclude_me": False}, "com.t", [1]], [16, 1, {"exclude_me": False}, "com.t", [1]]),
    ([16, 1, {"retain": U, "eligible": [1]}, "com.t"], [16, 1, {"eligible": [1]}, "com.t"]),
    ([32, 2, {"match": U, "get_retained": U}, "com.t"], [32, 2, {}, "com.t"]),
    ([32, 2, {"match": "prefix", "get_retained": U}, "com."], [32, 2, {"match": "prefix"}, "com."]),
    ([48, 3, {"receive_progress": U, "timeout": U}, "com.p", [], {"k": 1}], [48, 3, {}, "com.p", [], {"k": 1}]),
    ([49, 3, {"mode": U}], [49, 3, {}]),
    ([64, 4, {"match": U, "invoke": U}, "com.p"], [64, 4, {}, "com.p"]),
    ([70, 5, {"progress": U}, ["r"]], [70, 5, {}, ["r"]]),
]


@pytest.mark.parametrize(("raw", "plain"), UNDEFINED_OPTIONS)
def test_an_undefined_option_is_an_absent_option(raw, plain):
    parsed = codec.parse(raw)
    assert parsed.marshal() == codec.parse(plain).marshal()
    assert raw == plain  # the roles read options from the raw array too


def test_undefined_in_a_payload_is_left_alone():
    raw = [16, 1, {}, "com.t", [U, 1], {"k": U}]
    assert codec.parse(raw).args == [U, 1]
    assert raw[5] == {"k": U}


def test_options_without_undefined_are_not_copied():
    options = {"match": "prefix"}
    raw = [32, 2, options, "com."]
    codec.parse(raw)
    assert raw[2] is options and options == {"match": "prefix"}


def test_a_session_subscribes_with_undefined_options_as_exact():
    from relayrouter.testing import join, make_router

    router = make_router()
    a, b = join(router), join(router)
    a.receive([32, 1, {"match": U, "get_retained": U}, "com.t"])
    assert isinstance(a.take()[-1], m.Subscribed)
    b.receive([16, 2, {"acknowledge": U}, "com.t", ["hi"]])
    assert b.take() == []  # acknowledge absent: no PUBLISHED
    [event] = a.take()
    assert isinstance(event, m.Event) and event.args == ["hi"]
    b.receive([16, 3, {}, "com.t.deeper"])
    assert a.take() == []  # exact, not prefix
