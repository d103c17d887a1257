"""dojot v0.8.0's HTTP conventions, free of I/O: the HTTP agent's JSON
schemas and their error reports, the retriever's reading of ``limit`` and
``page``, its ``Accept`` negotiation and CSV, and each service's error body.

Error bodies, per service (dojot's SDK and services):

* HTTP agent and retriever: ``{"error": text}``, a schema failure
  ``{"error": "Input data schema validation failure.", "detail": {"schemaId",
  "schemaErrors": [ajv errors]}}``, a 406 ``{"error", "detail": "Not Acceptable"}``;
* Kafka-WS (HTTP side): ``{"message": text}``;
* history proxy: ``{"title": reason phrase, "description": text}``.
"""

import re
from http import HTTPStatus

from connectors.common import HttpError

from .jsvalues import js_json, js_number, js_parse_int, js_string
from .normalize import parse_date_time

SINGLE_SCHEMA_ID = "2674a775-5e93-4370-8f1f-2e6f9d102e1f"
MANY_SCHEMA_ID = "65b79e1a-0c6e-4fdd-9eba-7e5f2a4373fb"
SCHEMA_FAILURE = "Input data schema validation failure."
MANY_MAX_ITEMS = 64  # dojot's create-many schema
MAX_PAGE = 2 ** 31  # a page past any data (its offset stays an integer SQL can hold)
MAX_SCHEMA_ERRORS = 100  # a hostile body's report stays small (ajv would list every error)


class DojotError(HttpError):
    """An HttpError whose body is written in the service's own shape."""

    def __init__(self, code: int, message, detail=None, headers: dict | None = None) -> None:
        super().__init__(code, message if isinstance(message, str) else js_json(message), headers=headers)
        self.value = message  # a text, or (create-many) {index: text}
        self.detail = detail


def body_of(e, shape: str) -> dict:
    """The error body ``shape`` ("error", "message", "title" or "relayrouter") gives ``e``
    (an HttpError, or relayrouter.httpinput's BadInput)."""
    value = getattr(e, "value", e.message)
    detail = getattr(e, "detail", None)
    if shape == "error":
        return {"error": value} if detail is None else {"error": value, "detail": detail}
    if shape == "message":
        return {"message": e.message}
    if shape == "title":
        return {"title": getattr(e, "title", None) or _phrase(e.code), "description": e.message}
    return {"error": getattr(e, "error", None) or _slug(e.code), "message": e.message}


def _slug(code: int) -> str:
    return HttpError(code, "").error


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


# ---------------------------------------------------------- message schemas

def _ajv(path: str, schema_path: str, keyword: str, params: dict, message: str) -> dict:
    return {"instancePath": path, "schemaPath": schema_path, "keyword": keyword, "params": params,
            "message": message}


def _kind_errors(value, path: str, schema: str) -> list:
    """Errors of one message object (``schema`` is its schema path prefix)."""
    if not isinstance(value, dict):
        return [_ajv(path, f"{schema}/type", "type", {"type": "object"}, "must be object")]
    errors = []
    required = ("data",) if schema == "#" else ("ts", "data")
    for name in required:
        if name not in value:
            errors.append(_ajv(path, f"{schema}/required", "required", {"missingProperty": name},
                               f"must have required property '{name}'"))
    if "ts" in value:
        errors += _ts_errors(value["ts"], f"{path}/ts", f"{schema}/properties/ts/anyOf")
    if "data" in value and not isinstance(value["data"], dict):
        errors.append(_ajv(f"{path}/data", f"{schema}/properties/data/type", "type", {"type": "object"},
                           "must be object"))
    return errors


def _ts_errors(ts, path: str, schema: str) -> list:
    if isinstance(ts, str):
        if parse_date_time(ts) is not None:
            return []
        first = _ajv(path, f"{schema}/0/format", "format", {"format": "date-time"}, 'must match format "date-time"')
    else:
        first = _ajv(path, f"{schema}/0/type", "type", {"type": "string"}, "must be string")
    integer = isinstance(ts, (int, float)) and not isinstance(ts, bool) and float(ts).is_integer()
    if integer and ts >= 0:
        return []
    if integer:
        second = _ajv(path, f"{schema}/1/minimum", "minimum", {"comparison": ">=", "limit": 0}, "must be >= 0")
    else:
        second = _ajv(path, f"{schema}/1/type", "type", {"type": "integer"}, "must be integer")
    return [first, second, _ajv(path, schema, "anyOf", {}, "must match a schema in anyOf")]


def check_single(body) -> None:
    """dojot's single-message schema; DojotError 400 with ajv's report."""
    errors = _kind_errors(body, "", "#")
    if errors:
        raise DojotError(400, SCHEMA_FAILURE,
                         {"schemaId": SINGLE_SCHEMA_ID, "schemaErrors": errors[:MAX_SCHEMA_ERRORS]})


def check_many(body, max_items: int = MANY_MAX_ITEMS) -> None:
    """dojot's create-many schema: 1..``max_items`` distinct messages, each with ``ts`` and ``data``."""
    if not isinstance(body, list):
        errors = [_ajv("", "#/type", "type", {"type": "array"}, "must be array")]
    else:
        errors = []
        for index, item in enumerate(body):
            errors += _kind_errors(item, f"/{index}", "#/items")
            if len(errors) >= MAX_SCHEMA_ERRORS:
                break
        if not body:
            errors.append(_ajv("", "#/minItems", "minItems", {"limit": 1}, "must NOT have fewer than 1 items"))
        if len(body) > max_items:
            errors.append(_ajv("", "#/maxItems", "maxItems", {"limit": max_items},
                               f"must NOT have more than {max_items} items"))
        errors += _duplicates(body)
    if errors:
        raise DojotError(400, SCHEMA_FAILURE,
                         {"schemaId": MANY_SCHEMA_ID, "schemaErrors": errors[:MAX_SCHEMA_ERRORS]})


def _duplicates(items: list) -> list:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        key = js_json(_sorted(item))
        if key in seen:
            return [_ajv("", "#/uniqueItems", "uniqueItems", {"i": index, "j": seen[key]},
                         f"must NOT have duplicate items (items ## {seen[key]} and {index} are identical)")]
        seen[key] = index
    return []


def _sorted(value):
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


# ------------------------------------------------------------ the retriever

def page_limit(text: str | None, default: int, maximum: int) -> int:
    """The retriever's page size: over ``maximum`` (as a number) is a 400;
    otherwise the leading integer, capped, and ``default`` for 0, negative or none."""
    if text is None:
        return default
    if js_number(text) > maximum:
        raise DojotError(400, f"The configured maximum limit is {maximum}")
    limit = js_parse_int(text) or 0
    limit = min(limit, maximum)
    return default if limit < 1 else limit


def page_number(text: str | None) -> int:
    """The retriever's page: the leading integer (at most MAX_PAGE), 1 for none or below 1."""
    number = js_parse_int(text) if text is not None else None
    return min(number, MAX_PAGE) if number is not None and number >= 1 else 1


_MEDIA = re.compile(r"\s*([^\s/;]+)/([^\s;]+)\s*(?:;(.*))?")
_OFFERED = (("json", "application", "json"), ("csv", "text", "csv"))


def acceptable(accept: str | None) -> str | None:
    """"json" or "csv" by the ``Accept`` header as Express negotiates them
    (per type its most specific entry, then q, then the later one; between
    types q, specificity, the header's order, json first); None: 406."""
    if not accept:
        return "json"
    entries = [entry for index, part in enumerate(accept.split(",")) if (entry := _media(part, index))]
    ranked = []
    for order, (name, kind, subtype) in enumerate(_OFFERED):
        best = None
        for q, entry_kind, entry_subtype, params, index in entries:
            specificity = _specificity(kind, subtype, entry_kind, entry_subtype, params)
            if specificity is None:
                continue
            if best is None or (specificity, q, index) > best:
                best = (specificity, q, index)
        if best is not None and best[1] > 0:
            ranked.append((-best[1], -best[0], best[2], order, name))
    return min(ranked)[-1] if ranked else None


def _media(part: str, index: int):
    found = _MEDIA.fullmatch(part)
    if found is None:
        return None
    q, params = 1.0, {}
    for param in (found.group(3) or "").split(";"):
        key, _, value = param.strip().partition("=")
        if not key:
            continue
        if key.lower() == "q":
            number = re.match(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", value.strip('"'))
            q = float(number.group()) if number else 0.0
            break
        params[key.lower()] = value.strip('"')
    return q, found.group(1).lower(), found.group(2).lower(), params, index


def _specificity(kind, subtype, entry_kind, entry_subtype, params) -> int | None:
    score = 0
    if entry_kind == kind:
        score |= 4
    elif entry_kind != "*":
        return None
    if entry_subtype == subtype:
        score |= 2
    elif entry_subtype != "*":
        return None
    if params:
        if any(v != "*" for v in params.values()):
            return None  # the offered types carry no parameters
        score |= 1
    return score


def not_acceptable(accept: str) -> DojotError:
    return DojotError(406, f"This server does not support {accept}", "Not Acceptable")


def csv_text(rows: list[dict]) -> str:
    """json2csv (v5) of ``rows``: columns in the order keys first appear, every
    label and text quoted, ``""`` inside, objects as JSON, nothing for null."""
    if not rows:
        return ""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = [",".join(_cell(c) for c in columns)]
    for row in rows:
        lines.append(",".join(_cell(row.get(c)) for c in columns))
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        value = js_json(value)
    elif not isinstance(value, str):
        return js_string(value)
    return '"' + value.replace('"', '""') + '"'
