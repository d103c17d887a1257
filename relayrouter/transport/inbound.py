"""Checks on decoded inbound messages that the codecs do not make themselves.

Each codec caps nesting on its own (orjson at 1024 levels, msgpack at 1024,
cbor2 at 400), and fails fast beyond; but what one peer may send, every
receiver must be able to get, whatever its serializer: msgpack's encoder
stops at 512 levels, and our JSON binary conversion recurses.  So one limit,
``limits.max_depth``, applies to every message, counting the WAMP array
itself as level 1.

CBOR can also carry shared values (tags 28/29): a small document may then
decode to a graph that is huge, or cyclic, once walked.  The walk below
visits at most as many containers as the payload has bytes (a tree decoded
from N bytes has fewer than N containers), so it is bounded by the message
size and never loops.

Most messages skip the walk: a JSON text with no more brackets than the
limit cannot be nested deeper than it; a MessagePack or CBOR document
shorter than the limit neither (unless CBOR value sharing is in it).
"""

from ..config.limits import DEFAULT_MAX_DEPTH  # noqa: F401 (the limit's default, read here by httpinput)

_CBOR_SHAREABLE = b"\xd8\x1c"  # tag 28, "mark value as shareable"


def too_deep(payload: bytes, messages: list, serializer: str, max_depth: int) -> str | None:
    """None, or what is wrong with the nesting of the decoded ``messages``."""
    if _surely_shallow(payload, serializer, max_depth):
        return None
    budget = len(payload) + 1
    for message in messages:
        problem = _walk(message, max_depth, budget)
        if problem is not None:
            return problem
    return None


def _surely_shallow(payload: bytes, serializer: str, max_depth: int) -> bool:
    if serializer == "json":
        return payload.count(b"[") + payload.count(b"{") <= max_depth
    if len(payload) > max_depth:
        return False
    return serializer != "cbor" or _CBOR_SHAREABLE not in payload


def _walk(root, max_depth: int, budget: int) -> str | None:
    if type(root) is not list and type(root) is not dict:
        return None  # not a WAMP message at all; the core says so
    stack = [(root, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        value, depth = pop()
        if depth > max_depth:
            return f"the message is nested more than {max_depth} levels deep (limits.max_depth)"
        budget -= 1
        if budget < 0:
            return "the message decodes to more values than its bytes can hold (shared or cyclic values)"
        children = value.values() if type(value) is dict else value
        for child in children:
            kind = type(child)
            if kind is list or kind is dict:
                push((child, depth + 1))
    return None
