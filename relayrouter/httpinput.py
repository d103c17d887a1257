"""What an HTTP handler reads from a request, read one way: JSON bodies bounded
in size and nesting, text that must be UTF-8, numbers within a range, fields
of the type they must have.

Stability: connectors (ours and users') may import this module; its names
and the codes and messages of :class:`BadInput` stay as they are.

Theory of operation
-------------------
Every reader raises :class:`BadInput` (a ``ValueError``) carrying the HTTP
status (400, 413 or 415), the *field* it is about (``"the body"``,
``"realm"``, ``"the Authorization header"``, ``"?before="``) and a message
that names it and, for a limit, the limit.  A resource's one error helper
turns it into its JSON error answer (``{"error": ..., "message": ...}``);
nothing a client sends reaches a handler as an exception it did not expect.

JSON: Python's decoder recurses once per nesting level and fails with
``RecursionError`` (not a ``ValueError``) past the interpreter's limit, a
few levels above 900.  :func:`json_value` decodes with it anyway, as it is
fast, turns a ``RecursionError`` into the same 400 as a value that is merely
deeper than ``max_depth``, and checks that depth without recursing (a
walk with its own stack), only when the text has more brackets than the
limit (else it cannot be that deep).  Values that pass are safe to hand to
``json.dumps``, to WAMP's serializers (see ``transport/inbound.py``: the
default bound is the same as ``limits.max_depth``'s) and to code that
recurses over them.
"""

import json
from typing import Any

from .transport.inbound import DEFAULT_MAX_DEPTH

MAX_DEPTH = DEFAULT_MAX_DEPTH  # nesting levels of a JSON body, the outermost value being level 1
SQLITE_INTEGERS = (-(2 ** 63), 2 ** 63 - 1)  # what an integer parameter that reaches SQLite may be


class BadInput(ValueError):
    """Hostile or malformed input: ``code`` (400, 413, 415), ``field`` and a message naming it."""

    def __init__(self, code: int, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message


# ------------------------------------------------------------------- JSON


def json_value(raw: bytes | str, max_depth: int = MAX_DEPTH, field: str = "the body") -> Any:
    """``raw`` decoded as JSON, or BadInput 400 naming ``field``: not JSON
    (not UTF-8 either), or nested more than ``max_depth`` levels."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise _too_deep(field, max_depth) from None
    except (ValueError, TypeError) as e:  # UnicodeDecodeError is a ValueError
        raise BadInput(400, field, f"{field} is not valid JSON ({_short(e)})") from None
    if _bracket_count(raw) > max_depth and deeper_than(value, max_depth):
        raise _too_deep(field, max_depth)
    return value


def json_body(request, limit: int, max_depth: int = MAX_DEPTH, empty: Any = None) -> Any:
    """The request's body as JSON (:func:`read_body`, then :func:`json_value`);
    ``empty`` for an empty (or blank) body."""
    raw = read_body(request, limit)
    if not raw.strip():
        return empty
    return json_value(raw, max_depth)


def json_object(request, limit: int, max_depth: int = MAX_DEPTH) -> dict:
    """The body as a JSON object; ``{}`` when empty, else BadInput 400."""
    value = json_body(request, limit, max_depth, empty={})
    if not isinstance(value, dict):
        raise BadInput(400, "the body", "the body must be a JSON object")
    return value


def read_body(request, limit: int) -> bytes:
    """The request's body, or BadInput 413 once it is over ``limit`` bytes."""
    length = request.getHeader(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BadInput(413, "the body", f"the body is {int(length)} bytes; the limit is {limit} bytes")
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    raw = content.read(limit + 1)
    content.seek(0)
    if len(raw) > limit:
        raise BadInput(413, "the body", f"the body is over the limit of {limit} bytes")
    return raw


def deeper_than(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``max_depth`` levels (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else None
        if children is None:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if type(child) in (list, dict))
    return False


def _bracket_count(raw: bytes | str) -> int:
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def _too_deep(field: str, max_depth: int) -> BadInput:
    return BadInput(400, field, f"{field} is nested more than {max_depth} levels deep (the limit)")


def _short(error: Exception) -> str:
    return str(error)[:120]


# ------------------------------------------------------- fields and text


def string_field(value: dict, name: str, default: str | None = None) -> str | None:
    """``value[name]`` when it is a string; ``default`` when absent or null; BadInput 400 otherwise."""
    found = value.get(name)
    if found is None:
        return default
    if not isinstance(found, str):
        raise BadInput(400, name, f"'{name}' must be a string, not {_kind(found)}")
    return found


def text(raw: bytes, field: str) -> str:
    """``raw`` as UTF-8 text, or BadInput 400 naming ``field``."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(400, field, f"{field} is not valid UTF-8") from None


def header(request, name: str) -> str | None:
    """A request header as text (UTF-8), or None; BadInput 400 when it is not UTF-8."""
    raw = request.getHeader(name.lower().encode("ascii"))
    title = "-".join(part.capitalize() for part in name.split("-"))
    return None if raw is None else text(raw, f"the {title} header")


def carried_header(request, name: str) -> str | None:
    """A header a proxy passes on rather than reads (a body's Content-Type): every
    byte kept, as latin-1, never an error."""
    raw = request.getHeader(name.lower().encode("ascii"))
    return None if raw is None else raw.decode("latin-1")


def bearer(request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None (no header, another scheme)."""
    value = header(request, "Authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def arg(request, name: str) -> str | None:
    """The first ``?name=`` query parameter as UTF-8 text, or None."""
    values = request.args.get(name.encode())
    return text(values[0], f"?{name}=") if values else None


def path_segment(raw: bytes, what: str = "the path") -> str:
    """A path segment as text: UTF-8 and without NUL or other control characters."""
    segment = text(raw, what)
    if any(ord(c) < 0x20 or c == "\x7f" for c in segment):
        raise BadInput(400, what, f"{what} holds a control character")
    return segment


def integer(value: str, field: str, low: int = SQLITE_INTEGERS[0], high: int = SQLITE_INTEGERS[1]) -> int:
    """``value`` as an integer between ``low`` and ``high``, or BadInput 400 naming ``field``."""
    stripped = value.strip()
    digits = stripped[1:] if stripped[:1] in "+-" else stripped
    if not digits.isascii() or not digits.isdigit() or len(digits) > 30:
        raise BadInput(400, field, f"{field} must be an integer between {low} and {high}")
    number = int(stripped)
    if not low <= number <= high:
        raise BadInput(400, field, f"{field} must be an integer between {low} and {high}")
    return number


def _kind(value: Any) -> str:
    return {list: "a list", dict: "an object", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)
