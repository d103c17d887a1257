"""Raw WAMP arrays to Autobahn message objects, with the peer's faults named."""

from autobahn.wamp import message as m
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
    cls = INBOUND.get(mtype) if type(mtype) is int else None
    if cls is None:
        raise ProtocolViolation(_unexpected_type(mtype))
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


_PATTERN_REQUESTS = {m.Subscribe.MESSAGE_TYPE, m.Register.MESSAGE_TYPE}


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
