"""REST requests and responses as WAMP values, and as Micronets proxy messages.

A pair's peers call each other's REST APIs through a procedure of the pair
(``relayrouter.pair.<subscriber>.<box>.rest.<class>``).  The call carries one
*request* and returns one *response*, plain values any WAMP client can build::

    request  = {"method": "GET", "path": "/micronets/v1/dhcp/subnets",
                "query": [["name", "value"], ...], "headers": [["Accept", "*/*"], ...],
                "content_type": "application/json", "body": {...}}
    response = {"status": 200, "reason": "OK", "headers": [...],
                "content_type": "application/json", "body": {...}}

Bodies keep their kind: a JSON body (``application/json`` or ``…+json``) is
the decoded JSON value, a text body (``text/*``) a string, anything else bytes
(WAMP binary, byte-exact).  ``Content-Length``, ``Content-Type`` and
``Content-Encoding`` never travel as headers: the type is ``content_type``, the
length is the body's, and a compressed body is decompressed before it is sent,
so the receiving side can build a correct HTTP message from the values.

The Micronets websocket proxy's ``REST:REQUEST`` / ``REST:RESPONSE`` messages
carry the same facts under other names (``queryStrings``, ``dataFormat``,
``messageBody`` with octet-stream bodies in base64, ``statusCode``,
``reasonPhrase``); the ``*_legacy`` functions translate both ways.
"""

import base64
import binascii
import json
import zlib
from typing import Any

from .httpinput import BadInput, json_value

# Carried by content_type and the body itself, never as headers (Micronets README 5.3),
# and the hop-by-hop headers no forwarder passes on (RFC 9110 7.6.1).
NOT_FORWARDED = frozenset({"content-length", "content-type", "content-encoding", "host", "connection",
                           "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                           "proxy-connection", "proxy-authorization", "proxy-authenticate"})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OCTET_STREAM = "application/octet-stream"


class RestError(ValueError):
    """A request or response that cannot be forwarded; the message says which part."""


# ------------------------------------------------------------------- bodies


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    kind = media_type(content_type)
    return kind == "application/json" or kind.endswith("+json")


def _charset(content_type: str | None) -> str:
    for part in (content_type or "").split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def body_value(raw: bytes, content_type: str | None) -> Any:
    """The WAMP value for an HTTP body: JSON decoded, text as str, else bytes."""
    if not raw:
        return None
    if is_json(content_type):
        try:
            return json_value(raw)
        except BadInput:
            return bytes(raw)  # not the JSON it claims to be (or nested too deep): passed on untouched
    if media_type(content_type).startswith("text/"):
        try:
            return raw.decode(_charset(content_type))
        except (UnicodeDecodeError, LookupError):
            return bytes(raw)
    return bytes(raw)


def body_bytes(value: Any, content_type: str | None) -> bytes:
    """The HTTP body for a WAMP value (the inverse of :func:`body_value`)."""
    if value is None:
        return b""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and not is_json(content_type):
        return value.encode(_charset(content_type))
    return json.dumps(value, separators=(",", ":")).encode()


def decoded(raw: bytes, content_encoding: str | None) -> bytes:
    """The body without its Content-Encoding (gzip, deflate); others are refused."""
    coding = (content_encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return raw
    if coding in ("gzip", "x-gzip", "deflate"):
        try:
            return zlib.decompress(raw, 47 if "gzip" in coding else 15)
        except zlib.error as e:
            raise RestError(f"the body is not valid {coding} data: {e}") from None
    raise RestError(f"content encoding '{coding}' is not supported (gzip, deflate or identity)")


# ----------------------------------------------------------------- messages


def pairs_of(items: Any, name: str) -> list[list[str]]:
    """``[[name, value], ...]`` from that form, from ``[{"name", "value"}]`` or from a dict."""
    if items is None:
        return []
    if isinstance(items, dict):
        items = list(items.items())
    if not isinstance(items, list):
        raise RestError(f"{name} must be a list of [name, value] pairs")
    result = []
    for item in items:
        if isinstance(item, dict):
            item = [item.get("name"), item.get("value")]
        if (not isinstance(item, (list, tuple)) or len(item) != 2
                or not all(isinstance(v, str) for v in item)):
            raise RestError(f"each of {name} must be a [name, value] pair of strings, not {item!r}")
        result.append([item[0], item[1]])
    return result


def forwarded_headers(headers: list[list[str]]) -> list[list[str]]:
    return [[n, v] for n, v in headers if n.lower() not in NOT_FORWARDED]


def request(value: Any) -> dict:
    """A checked request value (the procedure's argument)."""
    if not isinstance(value, dict):
        raise RestError("the call's first argument must be a request object {method, path, ...}")
    method = value.get("method")
    path = value.get("path")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise RestError(f"method must be one of {', '.join(sorted(METHODS))}, not {method!r}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise RestError(f"path must be a string starting with '/', not {path!r}")
    content_type = value.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        raise RestError("content_type must be a string")
    return {"method": method.upper(), "path": path, "query": pairs_of(value.get("query"), "query"),
            "headers": forwarded_headers(pairs_of(value.get("headers"), "headers")),
            "content_type": content_type, "body": value.get("body")}


def response(value: Any) -> dict:
    """A checked response value (the procedure's result)."""
    if not isinstance(value, dict):
        raise RestError("the REST procedure must return a response object {status, ...}")
    status = value.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise RestError(f"status must be an HTTP status code, not {status!r}")
    reason = value.get("reason")
    content_type = value.get("content_type")
    return {"status": status, "reason": reason if isinstance(reason, str) else None,
            "headers": forwarded_headers(pairs_of(value.get("headers"), "headers")),
            "content_type": content_type if isinstance(content_type, str) else None,
            "body": value.get("body")}


# The slug an error body names its status by (the connectors' HTTP errors use the same words).
ERROR_SLUGS = {400: "bad_request", 403: "forbidden", 404: "not_found", 413: "too_large", 500: "internal_error",
               502: "bad_gateway", 503: "unavailable", 504: "gateway_timeout"}


def error_response(status: int, reason: str, message: str) -> dict:
    """A response the bridge makes itself: the status line's ``reason``, and a body
    ``{"error": <slug>, "message": ...}``."""
    return {"status": status, "reason": reason, "headers": [], "content_type": "application/json",
            "body": {"error": ERROR_SLUGS.get(status, "error"), "message": message}}


# ------------------------------------------------- the Micronets proxy's form


def legacy_body(message: dict) -> tuple[str | None, Any]:
    data_format = message.get("dataFormat")
    if data_format is not None and not isinstance(data_format, str):
        raise RestError("dataFormat must be a string")
    body = message.get("messageBody")
    if media_type(data_format) == OCTET_STREAM and isinstance(body, str):
        try:
            body = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise RestError("messageBody of an application/octet-stream message must be base64") from None
    return data_format, body


def legacy_body_fields(content_type: str | None, body: Any) -> dict:
    if body is None:
        return {"dataFormat": content_type} if content_type else {}
    if isinstance(body, (bytes, bytearray)):
        if is_json(content_type) or media_type(content_type).startswith("text/"):
            body = bytes(body).decode(_charset(content_type), errors="replace")
        else:
            return {"dataFormat": content_type or OCTET_STREAM,
                    "messageBody": base64.b64encode(bytes(body)).decode()}
    return {"dataFormat": content_type or ("application/json" if not isinstance(body, str)
                                           else "text/plain"), "messageBody": body}


def _legacy_pairs(items: list[list[str]]) -> list[dict]:
    return [{"name": n, "value": v} for n, v in items]


def request_from_legacy(message: dict) -> dict:
    content_type, body = legacy_body(message)
    return request({"method": message.get("method"), "path": message.get("path"),
                    "query": message.get("queryStrings"), "headers": message.get("headers"),
                    "content_type": content_type, "body": body})


def request_to_legacy(req: dict, message_id: int) -> dict:
    return {"message": {"messageId": message_id, "messageType": "REST:REQUEST", "requiresResponse": True,
                        "method": req["method"], "path": req["path"],
                        "queryStrings": _legacy_pairs(req["query"]),
                        "headers": _legacy_pairs(req["headers"]),
                        **legacy_body_fields(req["content_type"], req["body"])}}


def response_from_legacy(message: dict) -> dict:
    content_type, body = legacy_body(message)
    return response({"status": message.get("statusCode"), "reason": message.get("reasonPhrase"),
                     "headers": message.get("headers"), "content_type": content_type, "body": body})


def response_to_legacy(resp: dict, message_id: int, in_response_to: Any) -> dict:
    return {"message": {"messageId": message_id, "messageType": "REST:RESPONSE",
                        "inResponseTo": in_response_to, "requiresResponse": False,
                        "statusCode": resp["status"], "reasonPhrase": resp["reason"],
                        "headers": _legacy_pairs(resp["headers"]),
                        **legacy_body_fields(resp["content_type"], resp["body"])}}
