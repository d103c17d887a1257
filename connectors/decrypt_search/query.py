"""Search and analytics requests, parsed and checked; no I/O.

One parser serves the HTTP query string and the WAMP procedures' keyword
arguments.  A search is

* ``q``: full text.  Words must all occur; ``word*`` is a prefix,
  ``"two words"`` a phrase.  Words are runs of letters and digits, compared
  without case (and, in SQLite, without diacritics);
* field conditions: ``field=value`` (equal), ``field.gt=``, ``.gte=``,
  ``.lt=``, ``.lte=`` (numbers and dates), ``field.in=a,b,c``; all must hold;
* ``order``: a field, ``-field`` for descending (default ``-created``);
  records without the field come last either way, ties go by record id;
* ``limit`` (1-100, default 20) and ``cursor`` (from the previous page).

A refusal is a :class:`QueryError` naming the parameter.
"""

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass

from relayrouter.api import httpinput

from .config import Config
from .ingest import convert, parse_date

OPERATORS = ("eq", "gt", "gte", "lt", "lte", "in")
RANGE_OPERATORS = ("gt", "gte", "lt", "lte")
RESERVED = ("q", "order", "limit", "cursor")
WORD = re.compile(r"\w+", re.UNICODE)
BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}
MAX_LIMIT = 100
MAX_TERMS = 16
MAX_IN = 100
MAX_BUCKETS = 10000


class QueryError(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = f"{parameter}: {message}"


@dataclass(frozen=True)
class Term:
    words: tuple
    prefix: bool = False  # the last word is a prefix

    @property
    def phrase(self) -> bool:
        return len(self.words) > 1


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: object  # float / str, or a tuple of them for "in"


@dataclass(frozen=True)
class Search:
    terms: tuple
    conditions: tuple
    order: str  # field name
    descending: bool
    limit: int
    after: tuple | None  # (has_value, value, id) of the last record of the previous page

    @property
    def order_spec(self) -> str:
        return f"-{self.order}" if self.descending else self.order


@dataclass(frozen=True)
class Analytics:
    by: str  # topic, sender or an indexed field
    bucket: int  # seconds
    bucket_name: str
    start: float
    end: float
    conditions: tuple


# -------------------------------------------------------------- full text

def parse_q(text: str) -> tuple:
    if not isinstance(text, str):
        raise QueryError("q", "must be a string")
    terms, rest = [], text
    for phrase in re.findall(r'"([^"]*)"', text):
        words = tuple(w.lower() for w in WORD.findall(phrase))
        if words:
            terms.append(Term(words))
    rest = re.sub(r'"[^"]*"', " ", text).replace('"', " ")  # an unclosed quote: plain words
    for token in rest.split():
        words = tuple(w.lower() for w in WORD.findall(token))
        if words:
            terms.append(Term(words, prefix=token.endswith("*")))
    if len(terms) > MAX_TERMS:
        raise QueryError("q", f"{len(terms)} terms; at most {MAX_TERMS}")
    return tuple(terms)


def fts5_match(terms: tuple) -> str:
    """SQLite FTS5 MATCH syntax; every word quoted, so nothing in ``q`` is an operator."""
    parts = []
    for term in terms:
        quoted = '"' + " ".join(term.words) + '"'
        parts.append(quoted + ("*" if term.prefix else ""))
    return " AND ".join(parts)


# Word pairs (SQLite).  A phrase of two common words is rare, but FTS5 must read the position
# lists of both words in every record holding them to find it: 100s of ms at 1,000,000 records.
# ``records_pairs`` holds, per record, each pair of adjacent words as one token (``blue_vase``),
# so such a phrase is one token's list.  It is exact only where our split into words is FTS5's:
# ASCII text, whose words are the runs of letters and digits (unicode61 folds case, and the rest
# of ASCII separates words).  A record with any other character gets the token ``_`` alone
# (UNSURE), and a store holding one answers phrases from the full-text index as before.
ASCII_WORD = re.compile(r"[a-z0-9]+")
UNSURE = "_"


def word_pairs(text: str) -> str:
    """The body of a record's ``records_pairs`` row: its adjacent word pairs, or UNSURE."""
    if not text.isascii():
        return UNSURE
    words = ASCII_WORD.findall(text.lower())
    return " ".join(map("_".join, zip(words, words[1:])))  # a pair twice is one entry all the same


def pairs_match(terms: tuple) -> str | None:
    """``records_pairs`` MATCH syntax for ``terms`` when it is exact: every term a phrase of two
    ASCII words (not a prefix); None otherwise."""
    if not terms or not all(len(t.words) == 2 and not t.prefix and all(ASCII_WORD.fullmatch(w) for w in t.words)
                            for t in terms):
        return None
    return " AND ".join(f'"{t.words[0]}_{t.words[1]}"' for t in terms)


def pg_tsquery(terms: tuple) -> str:
    """PostgreSQL ``to_tsquery('simple', ...)`` syntax."""
    parts = []
    for term in terms:
        lexemes = [f"'{w}'" for w in term.words]
        if term.prefix:
            lexemes[-1] += ":*"
        parts.append("(" + " <-> ".join(lexemes) + ")" if term.phrase else lexemes[0])
    return " & ".join(parts)


# ------------------------------------------------------------- conditions

def parse_search(params: dict, config: Config) -> Search:
    params = flat_params(params)
    terms = parse_q(params["q"]) if params.get("q") else ()
    order, descending = parse_order(params.get("order", "-created"), config)
    limit = parse_limit(params.get("limit", 20))
    after = decode_cursor(params["cursor"], f"-{order}" if descending else order) if params.get("cursor") else None
    return Search(terms, parse_conditions(params, config), order, descending, limit, after)


def flat_params(params: dict) -> dict:
    """HTTP gives lists of strings (``request.args``); WAMP gives plain values."""
    if not isinstance(params, dict):
        raise QueryError("parameters", "must be a mapping")
    flat = {}
    for key, value in params.items():
        key = key.decode("utf8", "replace") if isinstance(key, bytes) else str(key)
        if isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode("utf8", "replace") for v in value]
            value = value[0] if len(value) == 1 else value
        flat[key] = value
    return flat


def parse_order(text, config: Config) -> tuple:
    if not isinstance(text, str) or not text:
        raise QueryError("order", "must be a field name, or -name for descending")
    descending = text.startswith("-")
    name = text[1:] if descending else text
    if config.field(name) is None:
        raise QueryError("order", f"'{name}' is not an indexed field ({', '.join(_fields(config))})")
    return name, descending


def _fields(config: Config) -> list:
    return ["topic", "sender", "created", "received"] + [f.name for f in config.index]


def parse_limit(value) -> int:
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise QueryError("limit", f"{value!r} is not a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError("limit", f"must be 1 to {MAX_LIMIT}, not {limit}")
    return limit


def parse_conditions(params: dict, config: Config, reserved=RESERVED) -> tuple:
    conditions = []
    for key, value in params.items():
        if key in reserved:
            continue
        name, _, op = key.partition(".")
        op = op or "eq"
        kind = config.field(name)
        if kind is None:
            raise QueryError(key, f"'{name}' is not an indexed field ({', '.join(_fields(config))})")
        if op not in OPERATORS:
            raise QueryError(key, f"unknown operator '{op}' (use {', '.join(OPERATORS)})")
        if op in RANGE_OPERATORS and kind == "keyword":
            raise QueryError(key, f"'{name}' is a keyword field: ranges are for numbers and dates")
        conditions.append(Condition(name, op, _values(key, value, kind, op)))
    return tuple(conditions)


def _values(key: str, value, kind: str, op: str):
    if op == "in":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not items or len(items) > MAX_IN:
            raise QueryError(key, f"'in' takes 1 to {MAX_IN} comma-separated values")
        return tuple(_value(key, item, kind) for item in items)
    if isinstance(value, list):
        raise QueryError(key, "given more than once")
    return _value(key, value, kind)


def _value(key: str, value, kind: str):
    if kind == "keyword":
        if not isinstance(value, str):
            raise QueryError(key, f"{value!r} is not a string")
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        if kind == "date":
            parsed = parse_date(text)
            if parsed is not None:
                return parsed
        raise QueryError(key, f"{value!r} is not a {'number' if kind == 'number' else 'date (ISO 8601 or epoch seconds)'}")
    converted = convert(value, kind)
    if converted is None:
        raise QueryError(key, f"{value!r} is not a {kind}")
    return converted


# ---------------------------------------------------------------- cursors

def encode_cursor(order_spec: str, position: tuple) -> str:
    raw = json.dumps({"o": order_spec, "k": list(position)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text, order_spec: str) -> tuple:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = httpinput.json_value(raw, field="cursor")  # BadInput is a ValueError
        position = data["k"]
        ok = data["o"] == order_spec and len(position) == 3 and isinstance(position[2], int)
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError):
        ok = False
    if not ok:
        raise QueryError("cursor", "not a cursor of this search order (take next_cursor from the previous page)")
    return tuple(position)


@dataclass(frozen=True)
class ReportQuery:
    report: object  # config.Report
    start: float
    end: float
    conditions: tuple
    terms: tuple


# -------------------------------------------------------------- analytics

def parse_analytics(params: dict, config: Config, now: float | None = None) -> Analytics:
    params = flat_params(params)
    by = params.get("by", "topic")
    if not isinstance(by, str) or config.field(by) is None or by in ("created", "received"):
        raise QueryError("by", f"{by!r}: topic, sender or an indexed field")
    name = params.get("bucket", "hour")
    if name not in BUCKETS:
        raise QueryError("bucket", f"{name!r}: minute, hour or day")
    now = time.time() if now is None else now
    end = _value("to", params["to"], "date") if "to" in params else now
    start = _value("from", params["from"], "date") if "from" in params else end - 86400
    if end <= start:
        raise QueryError("from", "must be before to")
    if (end - start) / BUCKETS[name] > MAX_BUCKETS:
        raise QueryError("bucket", f"more than {MAX_BUCKETS} {name}s in the range: take a larger bucket")
    conditions = parse_conditions(params, config, reserved=("by", "bucket", "from", "to"))
    return Analytics(by, BUCKETS[name], name, start, end, conditions)


# ---------------------------------------------------------------- reports

def parse_report(name, params: dict, config: Config, now: float | None = None) -> ReportQuery:
    """A configured report over ``from``/``to`` (default the last 24 hours), with the search's
    filters: ``q`` and field conditions."""
    report = config.report(name) if isinstance(name, str) else None
    if report is None:
        raise QueryError("name", f"{str(name)[:40]!r} is not a configured report "
                                 f"({', '.join(r.name for r in config.reports) or 'none configured'})")
    params = flat_params(params)
    now = time.time() if now is None else now
    end = _value("to", params["to"], "date") if "to" in params else now
    start = _value("from", params["from"], "date") if "from" in params else end - 86400
    if end <= start:
        raise QueryError("from", "must be before to")
    if report.bucket and (end - start) / BUCKETS[report.bucket] > MAX_BUCKETS:
        raise QueryError("from", f"more than {MAX_BUCKETS} {report.bucket}s in the range: take a shorter one")
    terms = parse_q(params["q"]) if params.get("q") else ()
    conditions = parse_conditions(params, config, reserved=("from", "to", "q", "name"))
    return ReportQuery(report, start, end, conditions, terms)
