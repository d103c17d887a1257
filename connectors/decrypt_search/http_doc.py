"""The decrypt-search HTTP API as OpenAPI path items (``GET /openapi.json``:
relayrouter.api.openapi walks the site; each resource of http.py and feed.py
points at its entry here)."""

from relayrouter.api import openapi

obj, operation, response, refusals = openapi.obj, openapi.operation, openapi.response, openapi.refusals
path_param, query_param, request_body = openapi.path_param, openapi.query_param, openapi.request_body

TITLE = "decrypt-search"
DESCRIPTION = ("The decrypt-search connector's local API: search, records, analytics, reports and the live "
               "feed of decrypted, validated records, the quarantine, publishing sealed documents, and its "
               "status.  Every endpoint needs a bearer JWT with its scope (search, quarantine, publish, "
               "status).  GET /openapi.json is open to anyone: the endpoints' 401s tell which paths exist "
               "anyway, and no configured value is in it.  Field conditions are query parameters "
               "<field>.<op>=<value> (op: eq, gt, gte, lt, lte, in).")
SECURITY_SCHEMES = {"jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                            "description": "a JWT [http.auth] verifies, with the endpoint's scope in its scope "
                                           "claim"}}

_GUARDED = refusals(400, 401, 403, 503)
_RECORD = obj({"id": {"type": "integer"}, "publication": {}, "topic": {"type": "string"},
               "message_id": {"type": "string"}, "sender": {}, "created": {}, "received": {}, "document": {}},
              ("id", "topic", "document"))
_FILTERS = [query_param("q", "full-text query")]
_SECURITY = ["jwt"]  # http.listen needs [http.auth]


def _get(summary: str, answer: dict, tags: list, parameters: list | None = None, description: str | None = None,
         extra: dict | None = None) -> dict:
    return {"get": operation(summary, {"200": answer, **_GUARDED, **(extra or {})}, parameters=parameters,
                             description=description, security=_SECURITY, tags=tags)}


SEARCH = {"": _get("Search the records", response("A page of records", obj(
    {"records": {"type": "array", "items": _RECORD}, "next_cursor": {"type": ["string", "null"]}},
    ("records", "next_cursor"))), ["search"], _FILTERS + [
    query_param("order", "a field to order by"), query_param("limit", "records per page"),
    query_param("cursor", "next_cursor of the previous page")], "Scope search.")}
RECORDS = {"/{id}": _get("One record", response("The record", _RECORD), ["search"],
                         [path_param("id", "the record id")], "Scope search.", refusals(404))}
ANALYTICS = {"": _get("Counts and values per time bucket", response("The buckets", obj(
    {"buckets": {"type": "array", "items": obj({"start": {}, "value": {}, "count": {"type": "integer"}})}},
    ("buckets",))), ["search"], _FILTERS + [
    query_param("by", "the field to aggregate"), query_param("bucket", "the bucket's length"),
    query_param("from", "start"), query_param("to", "end")], "Scope search.")}
REPORTS = {"/{name}": _get("A configured report ([[reports]])", response("Its groups", obj(
    {"name": {"type": "string"}, "groups": {"type": "array", "items": {"type": "object"}}}, ("name", "groups"))),
    ["search"], [path_param("name", "a report's name"), query_param("from", "start"), query_param("to", "end")]
    + _FILTERS, "Scope search.", refusals(404))}
FEED = {"": _get("The live feed (Server-Sent Events), resumable", response(
    "One event per record committed: id, event: record, data: the record", {"type": "string"},
    media="text/event-stream"), ["search"], _FILTERS + [
    query_param("after", "replay the records after this id first (or the Last-Event-ID header)")],
    "Scope search.")}
QUARANTINE = {"": _get("What was refused, and why", response("A page of entries", obj(
    {"entries": {"type": "array", "items": {"type": "object"}}, "next_before": {"type": ["integer", "null"]}},
    ("entries", "next_before"))), ["quarantine"], [
    query_param("reason", "only this reason"), query_param("limit", "entries per page"),
    query_param("before", "next_before of the previous page")], "Scope quarantine.")}
PUBLISH = {"": {"post": operation("Seal a document and publish it on an end-to-end topic", {
    "200": response("Published", obj({"publication": {"type": "integer"}, "topic": {"type": "string"},
                                      "message_id": {"type": "string"},
                                      "recipients": {"type": "array", "items": {"type": "string"}}},
                                     ("publication", "topic", "message_id", "recipients"))),
    **_GUARDED, **refusals(413, 415)},
    body=request_body(obj({"topic": {"type": "string"}, "document": {},
                           "recipients": {"type": "array", "items": {"type": "string"}}}, ("topic", "document"),
                          extra=False)),
    description="Scope publish.", security=_SECURITY, tags=["publish"])}}
STATUS = {"": _get("Counters, the router connection, the store", response("The status", obj(
    {"organisation": {"type": "string"}, "encryption_kid": {"type": "string"}, "signing_kid": {"type": "string"},
     "keys": {"type": "object"}, "router": {"type": "object"}, "store": obj({"backend": {"type": "string"}},
                                                                            ("backend",)),
     "replication": {"type": "object"}, "hooks": {}, "feed": {"type": ["object", "null"]},
     "directory": {"type": ["object", "null"]}},
    ("organisation", "encryption_kid", "signing_kid", "keys", "router", "store", "replication"))),
    ["status"], description="Scope status.")}
