"""One check for a refusal: the right URI, and a reason a person can act on.

Takes what a test holds: an Autobahn ERROR or ABORT message object, a raw
WAMP array ([8, ...] or [3, ...]) or an ``ApplicationError`` raised to a client."""

from autobahn.wamp import message as m
from autobahn.wamp.exception import ApplicationError

ERROR, ABORT = 8, 3


def uri_and_text(reply) -> tuple[str, object]:
    if isinstance(reply, m.Error):
        return reply.error, reply.args[0] if reply.args else None
    if isinstance(reply, m.Abort):
        return reply.reason, reply.message
    if isinstance(reply, ApplicationError):
        return reply.error, reply.args[0] if reply.args else None
    if hasattr(reply, "reason") and hasattr(reply, "message"):  # support.LeftBeforeJoining
        return reply.reason, reply.message
    if isinstance(reply, list) and reply[:1] == [ERROR]:
        args = reply[5] if len(reply) > 5 else []
        return reply[4], args[0] if args else None
    if isinstance(reply, list) and reply[:1] == [ABORT]:
        return reply[2], reply[1].get("message")
    raise AssertionError(f"not a refusal: {getattr(reply, 'marshal', lambda: reply)()!r}")


def assert_refused(reply, uri: str, *fragments: str) -> str:
    """``reply`` refuses with ``uri`` and a reason containing each fragment; returns the reason."""
    got, text = uri_and_text(reply)
    assert got == uri, f"refused with {got}, expected {uri} ({text!r})"
    assert isinstance(text, str) and text.strip(), f"{uri} without a reason"
    for fragment in fragments:
        assert fragment in text, f"{uri}: {fragment!r} not in the reason {text!r}"
    return text

