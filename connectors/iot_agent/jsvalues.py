"""How JavaScript reads and prints JSON values, where dojot's behaviour
depends on it: ``Number(x)``, ``String(x)``, ``parseInt(x, 10)``,
``JSON.stringify`` of numbers, and dojot's ``parseBoolean``."""

import json
import math
import re
from decimal import Decimal


_JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
            "\u2028\u2029\u202f\u205f\u3000\ufeff"
_DECIMAL = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_RADIX = {"x": (16, re.compile(r"0[xX][0-9a-fA-F]+")), "o": (8, re.compile(r"0[oO][0-7]+")),
          "b": (2, re.compile(r"0[bB][01]+"))}


def js_number(value) -> float:
    """JavaScript's ``Number(value)`` for JSON values (NaN when it is none)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return 0.0 if not value else math.nan  # only empty lists are leaves
    if not isinstance(value, str):
        return math.nan
    text = value.strip(_JS_SPACE)
    if not text:
        return 0.0
    if _DECIMAL.fullmatch(text):
        return float(text.replace("Infinity", "inf"))
    if len(text) > 2 and text[1].lower() in _RADIX:
        base, pattern = _RADIX[text[1].lower()]
        if pattern.fullmatch(text):
            try:
                return float(int(text[2:], base))
            except OverflowError:  # beyond a double, as JavaScript reads it
                return math.inf
    return math.nan


def js_boolean(value):
    """dojot's parseBoolean: True, False, or None where it throws."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    text = js_string(value).lower().strip(_JS_SPACE)
    return {"true": True, "1": True, "false": False, "0": False}.get(text)


def js_string(value) -> str:
    """JavaScript's ``String(value)`` for JSON values."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _js_float(value)
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return value


def _js_float(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    text = "".join(map(str, digits))
    k, n = len(text), exponent + len(text)
    minus = "-" if x < 0 else ""
    if k <= n <= 21:
        return minus + text + "0" * (n - k)
    if 0 < n <= 21:
        return minus + text[:n] + "." + text[n:]
    if -6 < n <= 0:
        return minus + "0." + "0" * -n + text
    e = n - 1
    mantissa = text if k == 1 else text[0] + "." + text[1:]
    return f"{minus}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def js_parse_int(text: str) -> int | None:
    """``parseInt(text, 10)``; None for NaN."""
    found = re.match(r"([+-]?)0*(\d+)", text.lstrip(_JS_SPACE))
    if found is None:
        return None
    digits = found.group(2)[:20]  # more digits than a page count can use: any value this large does
    return int(found.group(1) + digits)


def js_json(value) -> str:
    """``JSON.stringify(value)`` (numbers printed as JavaScript prints them)."""
    if isinstance(value, float):
        return _js_float(value) if math.isfinite(value) else "null"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{js_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(js_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)
