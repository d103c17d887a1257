"""Raw WAMP arrays to Autobahn message objects, with the peer's faults named."""

import re

from autobahn.wamp import message as m
from cbor2 import undefined as UNDEFINED
from autobahn.wamp.exception import InvalidUriError, ProtocolError

from .errors import InvalidUriRequest, ProtocolViolation

# What a router may receive from a client.
INBOUND = {
    cls.MESSAGE_TYPE: cls
    for cls in (
        m.Hello, m.Authenticate, m.Abort, m.Goodbye, m.Error,
        m.Publish, m.Subscribe, m.Unsubscribe,
        m.Call, m.Cancel, m.Register, m.Unregister, m.Yield,
    )
}

# Everything else the spec defines: valid WAMP, but never sent to a router.
OUTBOUND_ONLY = {
    cls.MESSAGE_TYPE: cls.__name__.upper()
    for cls in (
        m.Welcome, m.Challenge, m.Published, m.Subscribed, m.Unsubscribed,
        m.Event, m.Result, m.Registered, m.Unregistered, m.Invocation, m.Interrupt,
    )
}

# Requests whose invalid URI is answered with ERROR rather than ABORT.
_URI_REQUESTS = {m.Publish.MESSAGE_TYPE, m.Subscribe.MESSAGE_TYPE, m.Call.MESSAGE_TYPE, m.Register.MESSAGE_TYPE}


def parse(raw) -> m.Message:
    """Turn one decoded array into a message, or raise what the peer did wrong."""
    if type(raw) is not list or not raw:
        raise ProtocolViolation("a WAMP message must be a non-empty array")
    mtype = raw[0]
    if type(mtype) is not int:
        raise ProtocolViolation(_unexpected_type(mtype))
    fast = _FAST.get(mtype)
    if fast is not None:
        message = fast(raw)
        if message is not None:
            return message
    cls = INBOUND.get(mtype)
    if cls is None:
        raise ProtocolViolation(_unexpected_type(mtype))
    _drop_undefined_options(raw)
    if mtype in _PATTERN_REQUESTS:
        raw = _match_null_is_exact(raw)
    try:
        return cls.parse(raw)
    except InvalidUriError as e:
        if mtype in _URI_REQUESTS and len(raw) > 1 and type(raw[1]) is int:
            raise InvalidUriRequest(mtype, raw[1], _short(e)) from None
        raise ProtocolViolation(f"invalid URI in {cls.__name__.upper()}: {_short(e)}") from None
    except ProtocolError as e:
        raise ProtocolViolation(f"malformed {cls.__name__.upper()}: {_short(e)}") from None
    except Exception as e:  # Autobahn's parsers assert and index freely
        raise ProtocolViolation(f"malformed {cls.__name__.upper()} message ({type(e).__name__})") from None


# ---------------------------------------------------------------- fast path
#
# PUBLISH, CALL and YIELD carry the traffic.  In their common forms (plain
# options, a URI seen before) we check what the router relies on and call the
# message constructor directly; Autobahn's general parser re-validates every
# option and the URI with a regular expression each time.  Anything unusual
# returns None and takes the general path, which also words the errors.

_MAX_ID = 2**53
_KNOWN_URIS: dict[str, bool] = {}
_KNOWN_URIS_MAX = 10_000
_LOOSE_URI = re.compile(r"^([^\s.#]+\.)*([^\s.#]+)$")


def _uri_ok(uri) -> bool:
    if type(uri) is not str:
        return False
    known = _KNOWN_URIS.get(uri)
    if known is None:
        known = _LOOSE_URI.match(uri) is not None
        if len(_KNOWN_URIS) < _KNOWN_URIS_MAX:
            _KNOWN_URIS[uri] = known
    return known


def _simple_options(options, allowed: frozenset) -> bool:
    if type(options) is not dict:
        return False
    for key, value in options.items():
        if key not in allowed or type(value) is not bool:
            return False
    return True


def _payload(raw: list, at: int):
    """(args, kwargs) from raw[at:], or None when they are not list / dict."""
    n = len(raw)
    args = raw[at] if n > at else None
    kwargs = raw[at + 1] if n > at + 1 else None
    if n > at and type(args) is not list:
        return None
    if n > at + 1 and type(kwargs) is not dict:
        return None
    return args, kwargs


_PUBLISH_OPTIONS = frozenset(("acknowledge", "exclude_me", "disclose_me"))
_CALL_OPTIONS = frozenset(("receive_progress", "disclose_me"))
_YIELD_OPTIONS = frozenset(("progress",))


def _fast_publish(raw: list):
    if not 4 <= len(raw) <= 6 or type(raw[1]) is not int or not 0 < raw[1] <= _MAX_ID:
        return None
    options = raw[2]
    if not _simple_options(options, _PUBLISH_OPTIONS) or not _uri_ok(raw[3]):
        return None
    payload = _payload(raw, 4)
    if payload is None:
        return None
    return m.Publish(raw[1], raw[3], args=payload[0], kwargs=payload[1],
                     acknowledge=options.get("acknowledge"), exclude_me=options.get("exclude_me"))


def _fast_call(raw: list):
    if not 4 <= len(raw) <= 6 or type(raw[1]) is not int or not 0 < raw[1] <= _MAX_ID:
        return None
    options = raw[2]
    if not _simple_options(options, _CALL_OPTIONS) or not _uri_ok(raw[3]):
        return None
    payload = _payload(raw, 4)
    if payload is None:
        return None
    return m.Call(raw[1], raw[3], args=payload[0], kwargs=payload[1],
                  receive_progress=options.get("receive_progress"))


def _fast_yield(raw: list):
    if not 3 <= len(raw) <= 5 or type(raw[1]) is not int or not 0 < raw[1] <= _MAX_ID:
        return None
    options = raw[2]
    if not _simple_options(options, _YIELD_OPTIONS):
        return None
    payload = _payload(raw, 3)
    if payload is None:
        return None
    return m.Yield(raw[1], args=payload[0], kwargs=payload[1], progress=options.get("progress"))


_FAST = {
    m.Publish.MESSAGE_TYPE: _fast_publish,
    m.Call.MESSAGE_TYPE: _fast_call,
    m.Yield.MESSAGE_TYPE: _fast_yield,
}

_PATTERN_REQUESTS = {m.Subscribe.MESSAGE_TYPE, m.Register.MESSAGE_TYPE}

# ------------------------------------------------------ JavaScript undefined
#
# JavaScript clients put `undefined` in options nobody set: wampy sends
# SUBSCRIBE {"match": undefined, "get_retained": undefined}.  JSON drops such
# keys, but MessagePack (msgpackr: extension type 0) and CBOR (simple value 23)
# carry them; the transport decodes both to UNDEFINED, cbor2's singleton.  An
# undefined option means the option is absent, in every options or details
# dict of every message, nested dicts included (HELLO's roles and authextra).
# The fast path never sees one: its options must all be booleans.

# Where each inbound message keeps its options or details: type -> index.
_OPTIONS_AT = {
    m.Hello.MESSAGE_TYPE: 2, m.Authenticate.MESSAGE_TYPE: 2, m.Abort.MESSAGE_TYPE: 1,
    m.Goodbye.MESSAGE_TYPE: 1, m.Error.MESSAGE_TYPE: 3, m.Publish.MESSAGE_TYPE: 2,
    m.Subscribe.MESSAGE_TYPE: 2, m.Call.MESSAGE_TYPE: 2, m.Cancel.MESSAGE_TYPE: 2,
    m.Register.MESSAGE_TYPE: 2, m.Yield.MESSAGE_TYPE: 2,
}


def _drop_undefined_options(raw: list) -> None:
    """Remove undefined values from the message's options dict, in place (the
    decoded array is the router's own, and the roles read options from it)."""
    at = _OPTIONS_AT.get(raw[0])
    if at is not None and len(raw) > at and type(raw[at]) is dict:
        _drop_undefined(raw[at])


def _drop_undefined(options: dict) -> None:
    undefined = None
    for key, value in options.items():
        if value is UNDEFINED:
            undefined = [key] if undefined is None else [*undefined, key]
        elif type(value) is dict:
            _drop_undefined(value)
    if undefined is not None:
        for key in undefined:
            del options[key]


def _match_null_is_exact(raw: list) -> list:
    # Some clients send "match": null for exact matching; Autobahn's parser refuses it.
    if len(raw) > 2 and type(raw[2]) is dict and "match" in raw[2] and raw[2]["match"] is None:
        options = {k: v for k, v in raw[2].items() if k != "match"}
        return [raw[0], raw[1], options, *raw[3:]]
    return raw


def _unexpected_type(mtype) -> str:
    if type(mtype) is not int:
        return f"the message type must be an integer, got {type(mtype).__name__}"
    name = OUTBOUND_ONLY.get(mtype)
    if name is not None:
        return f"{name} (type {mtype}) is sent by routers, never to them"
    return f"unknown WAMP message type {mtype}"


def _short(e: Exception) -> str:
    text = str(e)
    # Autobahn appends the regular expression it used; users need the value, not that.
    cut = text.find(" (did not match pattern")
    return text[:cut] if cut > 0 else text
