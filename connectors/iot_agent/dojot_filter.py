"""dojot v0.8.0 Kafka-WS filters, case for case: its ``where`` lexer and
grammar, its conditions over the flattened message, and its ``fields`` mask.

Theory of operation
-------------------
dojot tokenizes ``where`` with three rules tried in this order at each
position: a *parameter* (a run of ``[A-Za-z0-9 _-]``, then at least one of
``[.[A-Za-z0-9 _-]``, then any ``]``, then ``=``: so a selector needs two
characters, and a space after ``=`` belongs to the value), an *operator*
(lowercase letters and ``:``) and *values* (anything up to the first ``;``,
on one line).  The grammar is ``(parameter operator? values)*``.  Each
token is checked against the grammar as it is read, so the first problem in
the text decides the code:

  ======================================  =========  =======================
  problem                                 dojot      ``compat="relayrouter"``
  ======================================  =========  =======================
  no rule matches here                    4000       4000
  lowercase operator that is not known    4999       4001
  a token the grammar does not expect     4999       4000
  the text ends inside a condition        4999       4000
  ``\\`` at the end of a quoted value      4999       4002
  escape of a letter other than bfnrt     4002       4002
  numeric/bool operator, not one value    4003       4003
  not a number / not a boolean            4004       4004
  ======================================  =========  =======================

``IN:`` (not lowercase) is no operator: it is part of the value of an
``eq`` condition, which is then no number (4004).  Values are split at
commas; quoted values are taken out first (their escapes resolved), the
rest split and emptied strings dropped; without quotes empty strings stay
(``in:ok,;`` is the two values ``ok`` and the empty string).

A condition reads the message *flattened* (``attrs.list.0``; an empty
object or list is a leaf) under the selector exactly as written.  Numeric
operators convert both sides as JavaScript's ``Number`` does (``" 3"``,
``"0x10"``, ``true`` and ``""`` are numbers; ``null`` is not).  ``bool``
reads ``true``/``1``/``false``/``0`` in any case around spaces; anything
else drops the message.  dojot's ``in``/``nin`` take each value as a
regular expression searched in the value's text and treat falsy values
(``0``, ``false``, ``""``, ``null``) as missing; ``compat="relayrouter"``
compares the whole text instead and counts falsy values like any other.

``fields`` is json-mask 1.0.4: ``a,b``, ``a/b``, ``a(b,c)``, ``*``; a later
selection of the same key replaces an earlier one; a falsy value (``0``,
``false``, ``""``, ``null``) under a sub-selection is kept as it is, another
scalar is left out; list elements are masked one by one, those left out
dropped, and a list left empty is left out.  Selecting inside a non-empty
string what it has (``*`` as the last step, ``length``, an index) makes
dojot fail on the message and drop it; ``compat="relayrouter"`` leaves that
key out.

What no mode reproduces: dojot rebuilds a passing message from its
flattened form (a key with a dot becomes nested objects, a numeric key an
array index); the agent sends the message as it came.
"""

import math
import re
from collections import deque

from relayrouter.api import FilterError

from .jsvalues import js_boolean, js_number, js_string

COMPAT_MODES = ("relayrouter", "dojot")

INVALID_SYNTAX = 4000
INVALID_OPERATOR = 4001
INVALID_ESCAPE_VALUE = 4002
INVALID_OPERATOR_ARITY = 4003
INVALID_VALUE = 4004
INTERNAL = 4999

_URIS = {4000: "invalid_syntax", 4001: "invalid_operator", 4002: "invalid_escape_value",
         4003: "invalid_operator_arity", 4004: "invalid_value", 4999: "internal"}

NUMERIC_OPERATORS = ("gt", "gte", "lt", "lte", "eq", "neq")
SET_OPERATORS = ("in", "nin")
OPERATORS = NUMERIC_OPERATORS + SET_OPERATORS + ("bool",)

_PARAMETER = re.compile(r"[a-zA-Z0-9 _-]+[.\[a-zA-Z0-9 _-]+\]*=")
_OPERATOR = re.compile(r"[a-z]+:")
_VALUES = re.compile(r"[^\n\r\u2028\u2029]+?;")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _error(code: int, reason: str, compat: str, improved: tuple | None = None) -> FilterError:
    """dojot's close code and reason, or ``improved`` (code, reason) outside compat "dojot"."""
    if compat != "dojot" and improved is not None:
        code, reason = improved
    return FilterError((code, f"relayrouter.error.filter.{_URIS[code]}"), reason)


def _internal(compat: str, code: int, reason: str) -> FilterError:
    """What dojot answers with 4999 (an exception of its own) though the client erred."""
    return _error(INTERNAL, "Internal error", compat, (code, reason))


# ------------------------------------------------------------------- where

def _tokens(text: str, compat: str):
    """(kind, value) tokens, one at a time, as dojot's lexer gives them."""
    pos = 0
    while pos < len(text):
        for kind, rule in (("parameter", _PARAMETER), ("operator", _OPERATOR), ("values", _VALUES)):
            found = rule.match(text, pos)
            if found is not None:
                break
        else:
            raise _error(INVALID_SYNTAX, "invalid syntax", compat)
        word = found.group()[:-1]
        if kind == "operator" and word not in OPERATORS:
            raise _internal(compat, INVALID_OPERATOR, f"invalid operator '{word}'")
        pos = found.end()
        yield kind, word


# The grammar: state -> {token kind: next state}; state 0 accepts the end.
_GRAMMAR = {0: {"parameter": 1}, 1: {"operator": 2, "values": 0}, 2: {"values": 0}}


def parse_where(text: str, compat: str = "relayrouter") -> list[tuple[str, str, list]]:
    """[(parameter, operator, values)] of a dojot ``where``; FilterError otherwise."""
    if not text:
        return []
    raw: list[list] = []
    state = 0
    for kind, word in _tokens(text, compat):
        state_next = _GRAMMAR[state].get(kind)
        if state_next is None:
            raise _internal(compat, INVALID_SYNTAX, f"invalid syntax: unexpected {kind} {word!r}")
        if kind == "parameter":
            raw.append([word, "eq", None])
        elif kind == "operator":
            raw[-1][1] = word
        else:
            raw[-1][2] = word
        state = state_next
    if state != 0:
        raise _internal(compat, INVALID_SYNTAX, "invalid syntax: the last condition has no values")
    return [(parameter, operator, _checked(operator, _separate(values, compat), compat))
            for parameter, operator, values in raw]


def _separate(values: str, compat: str) -> list[str]:
    if '"' not in values:
        return values.split(",")
    quoted = _quoted(values)
    rest = values
    for value in quoted:
        rest = rest.replace(f'"{value}"', "", 1)
    return [_unescape(value, compat) for value in quoted] + [v for v in rest.split(",") if v]


def _quoted(values: str) -> list[str]:
    """dojot's reading of quoted values: a quote opens; the next quote that is
    not after a backslash (and not the third character) closes."""
    out, current = [], ""
    for i, char in enumerate(values):
        if current:
            if char == '"' and i - 1 > 0 and values[i - 1] != "\\":
                out.append(current[1:])
                current = ""
            else:
                current += char
        elif char == '"':
            current = char
    return out


def _unescape(value: str, compat: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] != "\\":
            out.append(value[i])
            i += 1
            continue
        if i + 1 >= len(value):
            raise _internal(compat, INVALID_ESCAPE_VALUE, "invalid escape value \\")
        escaped = value[i + 1]
        if re.fullmatch(r"[a-zA-Z]", escaped):
            if escaped not in _ESCAPES:
                raise _error(INVALID_ESCAPE_VALUE, f"invalid escape value \\{escaped}", compat)
            escaped = _ESCAPES[escaped]
        out.append(escaped)
        i += 2
    return "".join(out)


def _checked(operator: str, values: list[str], compat: str) -> list:
    if operator in SET_OPERATORS:
        return values
    if len(values) != 1:
        raise _error(INVALID_OPERATOR_ARITY, f"invalid arity {len(values)} for '{operator}'", compat)
    if operator == "bool":
        value = js_boolean(values[0])
        if value is None:
            raise _error(INVALID_VALUE, f"invalid value {values[0]} for operator 'bool'", compat)
        return [value]
    number = js_number(values[0])
    if not math.isfinite(number):
        raise _error(INVALID_VALUE, f"invalid value {values[0]} for operator '{operator}'", compat)
    return [number]


def _js_truthy(value) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return value not in (None, False, 0, "") or isinstance(value, (list, dict))


def flatten(document) -> dict:
    """The npm ``flat`` view of a message: dotted keys, non-empty objects and lists opened."""
    out: dict = {}

    def step(value, prefix):
        items = value.items() if isinstance(value, dict) else ((str(i), v) for i, v in enumerate(value))
        for key, item in items:
            name = f"{prefix}.{key}" if prefix else key
            if isinstance(item, (dict, list)) and item:
                step(item, name)
            else:
                out[name] = item
    if isinstance(document, (dict, list)):
        step(document, "")
    return out


# --------------------------------------------------------------- conditions

class _Dropped(Exception):
    """dojot failed on this message (an exception in its filter): not sent."""


_MISSING = object()


def _numeric(compare):
    def test(value, operands, compat) -> bool:
        if value is _MISSING or value is None:
            return False
        number = js_number(value)
        return math.isfinite(number) and compare(number, operands[0])
    return test


def _matches(value, operands, compat) -> bool:
    if compat == "dojot":
        if not _js_truthy(value) or value is _MISSING:
            return False
        text = js_string(value)
        for operand in operands:
            try:
                if re.search(operand, text):
                    return True
            except re.error:
                raise _Dropped() from None
        return False
    return value is not _MISSING and js_string(value) in operands


def _bool(value, operands, compat) -> bool:
    value = js_boolean(None if value is _MISSING else value)
    if value is None:
        raise _Dropped()
    return value is operands[0]


_TESTS = {
    "gt": _numeric(lambda a, b: a > b), "gte": _numeric(lambda a, b: a >= b),
    "lt": _numeric(lambda a, b: a < b), "lte": _numeric(lambda a, b: a <= b),
    "eq": _numeric(lambda a, b: a == b), "neq": _numeric(lambda a, b: a != b),
    "in": _matches, "nin": lambda value, operands, compat: not _matches(value, operands, compat),
    "bool": _bool,
}


# -------------------------------------------------------------------- fields

def compile_mask(text: str | None):
    """json-mask's tree: {key: subtree or None}; None when there is no mask."""
    if not text:
        return None
    tokens = deque()
    name = ""
    for char in text:
        if char in ",/()":
            if name:
                tokens.append(("name", name))
                name = ""
            tokens.append((char, None))
        else:
            name += char
    if name:
        tokens.append(("name", name))
    return _build(tokens, {"child": False})


def _build(tokens: deque, parent: dict) -> dict:
    props: dict = {}
    while tokens:
        tag, name = tokens.popleft()
        if tag == "name":
            node = {"child": False}
            sub = _build(tokens, node)
            props[name] = sub or None
            if parent["child"]:
                return props
        elif tag in ",)":
            return props
        elif tag == "/":
            parent["child"] = True
    return props


_UNDEFINED = object()


def _get(obj, key: str):
    if isinstance(obj, dict):
        return obj.get(key, _UNDEFINED)
    if isinstance(obj, (list, str)):
        if key == "length":
            return len(obj)
        if key.isdigit() and (key == "0" or not key.startswith("0")) and int(key) < len(obj):
            return obj[int(key)]
    return _UNDEFINED


def _keys(obj):
    if isinstance(obj, dict):
        return list(obj)
    if isinstance(obj, (list, str)):
        return [str(i) for i in range(len(obj))]
    return []


def _properties(obj, mask, compat):
    if obj is _UNDEFINED or not _js_truthy(obj) or mask is None:
        return obj
    masked = [] if isinstance(obj, list) else ({} if isinstance(obj, dict) else _UNDEFINED)
    for key, sub in mask.items():
        if key == "*":
            found = {k: v for k in _keys(obj) if (v := _object(obj, k, sub, compat)) is not _UNDEFINED}
        else:
            value = _object(obj, key, sub, compat)
            found = {} if value is _UNDEFINED else {key: value}
        for name, value in found.items():
            masked = _assign(masked, name, value, compat)
    return masked


def _assign(masked, key, value, compat):
    if masked is _UNDEFINED:  # JavaScript: a property set on undefined throws
        if compat == "dojot":
            raise _Dropped()
        return masked
    if isinstance(masked, dict):
        masked[key] = value
    elif key.isdigit():
        index = int(key)
        masked.extend([None] * (index + 1 - len(masked)))
        masked[index] = value
    return masked


def _object(obj, key, mask, compat):
    value = _get(obj, key)
    if isinstance(value, list):
        return _array(value, mask, compat)
    return _properties(value, mask, compat) if mask else value


def _array(items: list, mask, compat):
    if not items:
        return items
    out = [masked for item in items if (masked := _properties(item, mask, compat)) is not _UNDEFINED]
    return out if out else _UNDEFINED


def mask(document, tree, compat: str = "relayrouter"):
    if tree is None:
        return document
    return _properties(document, tree, compat)


# ------------------------------------------------------------------ filter

class DojotFilter:
    """``where`` then ``fields`` as dojot's Kafka-WS applies them: ``apply``
    returns what to send, or None (a condition failed, the result is empty,
    or dojot would have failed on the message)."""

    __slots__ = ("conditions", "tree", "compat")

    def __init__(self, fields: str | None = None, where: str | None = None, compat: str = "relayrouter") -> None:
        if compat not in COMPAT_MODES:
            raise ValueError(f"compat must be one of {', '.join(COMPAT_MODES)}, not {compat!r}")
        self.compat = compat
        self.conditions = parse_where(where or "", compat)
        self.tree = compile_mask(fields)

    def apply(self, document):
        try:
            if self.conditions:
                flat = flatten(document)
                for parameter, operator, operands in self.conditions:
                    if not _TESTS[operator](flat.get(parameter, _MISSING), operands, self.compat):
                        return None
            out = mask(document, self.tree, self.compat)
        except _Dropped:
            return None
        return out if isinstance(out, dict) and out else None
