"""Content filters over JSON-like documents: dojot's ``fields`` projection and
``where`` conditions, compiled once and applied per message.

Theory of operation
-------------------
``compile_fields(text)`` turns a selection such as ``attrs(temperature,rain),
metadata/tenant`` into a tree: a dict from key to subtree, where ``None`` means
"the whole value" and the key ``"*"`` means "every key at this level".
Applying the tree to a document copies only what it selects; a selected key the
document lacks is simply absent, so ``attrs/humidity`` over a message without
humidity gives ``{"attrs": {}}`` (dojot's documented behaviour).  Lists are
projected element by element.  A sub-selection over a value that is not an
object (``a/b`` where ``a`` is 3) leaves that key out.

``compile_where(text)`` parses ``selector=operator:values;`` conditions
(``operator:`` optional, default ``eq``) into ``Condition`` values; a document
passes when every condition holds (AND).  A selector ``a.b`` names the path
``["a", "b"]``.  Operators:

  eq neq gt gte lt lte  one number; the document's value must be a number (or a
                        numeric string); a missing or non-numeric value fails
  in nin                one or more values; the document's value as text is
                        compared for equality with each (``nin`` holds when the
                        value is missing)
  bool                  one of true/false/1/0; the value must be that boolean

Values are separated by commas; a value in double quotes may contain commas,
semicolons and the escapes ``\\b \\f \\n \\r \\t`` (any other escaped
non-letter stands for itself; another escaped letter is an error).

Errors are ``FilterError`` with dojot's Kafka-WS close code (4000-4004), a WAMP
error URI and a message naming the position and the offending text.

Where we differ from dojot's implementation (its documentation is the
reference): a value of 0 or false is compared like any other (dojot's code
treats falsy values as missing); ``in``/``nin`` compare whole values (dojot's
code matches each listed value as a regular expression); numbers such as ``0``
and ``1e3`` are accepted as operands.
"""

import math
import re

_ANY = "*"

INVALID_SYNTAX = (4000, "relayrouter.error.filter.invalid_syntax")
INVALID_OPERATOR = (4001, "relayrouter.error.filter.invalid_operator")
INVALID_ESCAPE_VALUE = (4002, "relayrouter.error.filter.invalid_escape_value")
INVALID_OPERATOR_ARITY = (4003, "relayrouter.error.filter.invalid_operator_arity")
INVALID_VALUE = (4004, "relayrouter.error.filter.invalid_value")


class FilterError(ValueError):
    """A malformed ``fields`` or ``where`` expression."""

    def __init__(self, kind: tuple, message: str) -> None:
        super().__init__(message)
        self.code, self.uri = kind
        self.message = message


# ------------------------------------------------------------------- fields

_FIELD_SPECIALS = ",/()"


def compile_fields(text: str) -> dict:
    """The projection tree of a dojot ``fields`` selection."""
    if not isinstance(text, str):
        raise FilterError(INVALID_SYNTAX, f"fields must be a string, not {type(text).__name__}")
    parser = _FieldsParser(text)
    tree = parser.selections()
    if parser.pos != len(text):
        parser.fail(f"unexpected {text[parser.pos]!r}")
    return tree


class _FieldsParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str):
        raise FilterError(INVALID_SYNTAX, f"fields: {what} at position {self.pos} in {self.text!r}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def selections(self) -> dict:
        tree: dict = {}
        while True:
            _merge(tree, self.selection())
            if self.peek() != ",":
                return tree
            self.pos += 1

    def selection(self) -> dict:
        key = self.name()
        if self.peek() == "/":
            self.pos += 1
            return {key: self.selection()}
        if self.peek() == "(":
            self.pos += 1
            inner = self.selections()
            if self.peek() != ")":
                self.fail("missing ')'" if not self.peek() else f"expected ')' but found {self.peek()!r}")
            self.pos += 1
            return {key: inner}
        return {key: None}

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _FIELD_SPECIALS:
            self.pos += 1
        key = self.text[start:self.pos]
        if not key:
            found = self.peek()
            self.fail(f"empty field name before {found!r}" if found else "empty field name at the end")
        if _ANY in key and key != _ANY:
            self.pos = start
            self.fail(f"'*' must stand alone, not inside {key!r}")
        return key


def _merge(tree: dict, addition: dict) -> None:
    for key, sub in addition.items():
        if key not in tree:
            tree[key] = sub
        elif tree[key] is None or sub is None:
            tree[key] = None  # the whole value wins over a part of it
        else:
            _merge(tree[key], sub)


def project(tree: dict, value):
    """``value`` reduced to what ``tree`` selects (a new object)."""
    if isinstance(value, list):
        return [project(tree, item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict = {}
    wildcard = tree.get(_ANY, _MISSING)
    for key, sub in tree.items():
        if key == _ANY or key not in value:
            continue
        _put(out, key, sub, value[key])
    if wildcard is not _MISSING:
        for key, item in value.items():
            if key not in out:
                _put(out, key, wildcard, item)
    return out


def _put(out: dict, key: str, sub, item) -> None:
    if sub is None:
        out[key] = item
    elif isinstance(item, (dict, list)):
        out[key] = project(sub, item)


_MISSING = object()

# -------------------------------------------------------------------- where

NUMERIC_OPERATORS = frozenset(("eq", "neq", "gt", "gte", "lt", "lte"))
SET_OPERATORS = frozenset(("in", "nin"))
OPERATORS = NUMERIC_OPERATORS | SET_OPERATORS | {"bool"}

_SELECTOR = re.compile(r"[A-Za-z0-9 _-]+(?:\.[A-Za-z0-9 _-]+)*")
_OPERATOR = re.compile(r"([A-Za-z]+):")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


class Condition:
    __slots__ = ("path", "operator", "values", "selector")

    def __init__(self, selector: str, operator: str, values: tuple) -> None:
        self.selector = selector
        self.path = tuple(selector.split("."))
        self.operator = operator
        self.values = values

    def __repr__(self) -> str:
        return f"Condition({self.selector!r}, {self.operator!r}, {self.values!r})"

    def __eq__(self, other) -> bool:
        return (isinstance(other, Condition) and other.selector == self.selector
                and other.operator == self.operator and other.values == self.values)

    def holds(self, document) -> bool:
        value = _lookup(document, self.path)
        return _TESTS[self.operator](value, self.values)


def compile_where(text: str) -> tuple[Condition, ...]:
    """The conditions of a dojot ``where`` expression (empty text: none)."""
    if not isinstance(text, str):
        raise FilterError(INVALID_SYNTAX, f"where must be a string, not {type(text).__name__}")
    conditions = []
    pos = 0
    while pos < len(text):
        condition, pos = _condition(text, pos)
        conditions.append(condition)
    return tuple(conditions)


def _syntax(text: str, pos: int, what: str):
    raise FilterError(INVALID_SYNTAX, f"where: {what} at position {pos} in {text!r}")


def _condition(text: str, pos: int) -> tuple[Condition, int]:
    found = _SELECTOR.match(text, pos)
    if found is None:
        _syntax(text, pos, "expected a selector (letters, digits, ' ', '_', '-', separated by '.')")
    selector = found.group().strip()
    pos = found.end()
    if not selector or any(not part.strip() for part in selector.split(".")):
        _syntax(text, found.start(), f"empty name in selector {found.group()!r}")
    if text[pos:pos + 1] != "=":
        _syntax(text, pos, f"expected '=' after selector {selector!r}")
    pos += 1
    operator = "eq"
    op = _OPERATOR.match(text, pos)
    if op is not None:
        operator = op.group(1)
        if operator not in OPERATORS:
            raise FilterError(INVALID_OPERATOR, f"where: unknown operator {operator!r} for {selector!r} "
                              f"(use one of {', '.join(sorted(OPERATORS))})")
        pos = op.end()
    raw, pos = _values(text, pos, selector)
    return Condition(selector, operator, _typed(operator, raw, selector)), pos


def _values(text: str, pos: int, selector: str) -> tuple[list, int]:
    """Comma-separated values up to the closing ';' (quotes protect ',' and ';')."""
    values: list[str] = []
    current: list[str] = []
    quoted = False  # a quoted value may be empty; a bare one may not
    while pos < len(text):
        char = text[pos]
        if char == '"':
            part, pos = _quoted(text, pos)
            current.append(part)
            quoted = True
            continue
        if char in ",;":
            if not current and not quoted:
                what = "no value" if char == ";" and not values else "empty value in the list"
                _syntax(text, pos, f"{what} for {selector!r}")
            values.append("".join(current))
            current, quoted = [], False
            if char == ";":
                return values, pos + 1
        else:
            current.append(char)
        pos += 1
    _syntax(text, pos, f"missing ';' after the values of {selector!r}")


def _quoted(text: str, pos: int) -> tuple[str, int]:
    out: list[str] = []
    opening = pos
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":
            if pos + 1 >= len(text):
                break
            escaped = text[pos + 1]
            if escaped.isalpha():
                if escaped not in _ESCAPES:
                    raise FilterError(INVALID_ESCAPE_VALUE,
                                      f"where: unsupported escape '\\{escaped}' at position {pos} "
                                      f"(supported: \\b \\f \\n \\r \\t, or \\ before a non-letter)")
                out.append(_ESCAPES[escaped])
            else:
                out.append(escaped)
            pos += 2
            continue
        out.append(char)
        pos += 1
    _syntax(text, opening, "unterminated quoted value")


def _typed(operator: str, raw: list, selector: str) -> tuple:
    if operator in SET_OPERATORS:
        return tuple(raw)
    if len(raw) != 1:
        raise FilterError(INVALID_OPERATOR_ARITY,
                          f"where: operator {operator!r} takes exactly 1 value, {len(raw)} given for {selector!r}")
    value = raw[0]
    if operator == "bool":
        if value.lower() not in _BOOLEANS:
            raise FilterError(INVALID_VALUE, f"where: operator 'bool' needs true or false, not {value!r} "
                              f"for {selector!r}")
        return (_BOOLEANS[value.lower()],)
    if _NUMBER.fullmatch(value) is None:
        raise FilterError(INVALID_VALUE, f"where: operator {operator!r} needs a number, not {value!r} "
                          f"for {selector!r}")
    return (float(value),)


def _lookup(document, path: tuple):
    value = document
    for key in path:
        if not isinstance(value, dict):
            return _MISSING
        value = value.get(key, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def _number(value):
    if isinstance(value, bool) or value is _MISSING:
        return None
    if isinstance(value, (int, float)):
        return None if isinstance(value, float) and math.isnan(value) else value
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return None


def _text(value) -> str:
    """A value as dojot (JavaScript) would print it."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _numeric(compare):
    def test(value, operands) -> bool:
        number = _number(value)
        return number is not None and compare(number, operands[0])
    return test


def _in(value, operands) -> bool:
    return value is not _MISSING and _text(value) in operands


def _nin(value, operands) -> bool:
    return value is _MISSING or _text(value) not in operands


def _bool(value, operands) -> bool:
    return isinstance(value, bool) and value is operands[0]


_TESTS = {
    "eq": _numeric(lambda a, b: a == b),
    "neq": _numeric(lambda a, b: a != b),
    "gt": _numeric(lambda a, b: a > b),
    "gte": _numeric(lambda a, b: a >= b),
    "lt": _numeric(lambda a, b: a < b),
    "lte": _numeric(lambda a, b: a <= b),
    "in": _in,
    "nin": _nin,
    "bool": _bool,
}

# ------------------------------------------------------------------ filters


class ContentFilter:
    """``where`` then ``fields``, as dojot applies them: ``apply`` returns the
    projected document, or None when a condition fails."""

    __slots__ = ("fields", "conditions", "key")

    def __init__(self, fields: str | None = None, where: str | None = None) -> None:
        self.fields = compile_fields(fields) if fields else None
        self.conditions = compile_where(where) if where else ()
        # Equal expressions share one key, whatever their spelling of order.
        self.key = (_freeze(self.fields),
                    tuple(sorted((c.selector, c.operator, tuple(map(str, c.values)))
                                 for c in self.conditions)))

    def apply(self, document):
        for condition in self.conditions:
            if not condition.holds(document):
                return None
        if self.fields is None:
            return document
        return project(self.fields, document)


def _freeze(tree):
    if tree is None:
        return None
    return tuple(sorted((key, _freeze(sub)) for key, sub in tree.items()))
