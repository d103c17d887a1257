"""What each resource of the router's HTTP site serves, as OpenAPI path items
(relayrouter/openapi.py: each resource class points at its entry here, and
``GET /openapi.json`` is the document of what the configuration mounts).

:func:`reference_document` is the document of a router with every feature
on, each resource at its default place: what docs/reference/http.md shows.
"""

from .. import __version__
from ..openapi import (ERROR, OPENAPI_PATH, REASONS, document, obj, operation, path_param, query_param, refusals,
                       request_body, response)

TITLE = "relayrouter"
DESCRIPTION = ("The HTTP site of a relayrouter WebSocket listener: the WAMP endpoint, operations "
               "(/health, /ready, /metrics), one-time tickets, the deny list, tenants, mailboxes, the "
               "HTTP bridge, the web console, the remote-lab relay and the Micronets endpoint, each as "
               "the configuration turns it on.  Paths a configuration places a service at (the WAMP "
               "endpoint, the Micronets endpoint) are written as configured; names a configuration "
               "lists (webhooks, relay prefixes, mailboxes, realms) are path parameters.")

SECURITY_SCHEMES = {
    "jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "a JWT the realm's [realms.auth.jwt] settings verify"},
    "metricsToken": {"type": "http", "scheme": "bearer",
                     "description": "the [metrics] token (secret_env or secret_file); loopback callers need "
                                    "none unless loopback_open = false"},
    "mailboxToken": {"type": "http", "scheme": "bearer",
                     "description": "the mailbox's token (mailboxes with http = \"token\"); also ?token="},
    "bridgeSignature": {"type": "apiKey", "in": "query", "name": "signature",
                        "description": "a request signed with an [http_bridge] key, as Crossbar's bridge signs: "
                                       "the query parameters key, timestamp, seq, nonce and signature"},
    "githubSignature": {"type": "apiKey", "in": "header", "name": "X-Hub-Signature-256",
                        "description": "GitHub's HMAC of the body, for a webhook with github_secret_env"},
    "relayToken": {"type": "apiKey", "in": "header", "name": "Authorization",
                   "description": "a relay JWT, with or without the Bearer scheme (practable's form)"},
}

ANY_JSON = {}  # any JSON value
_CORS = "Browsers get CORS headers for allowed origins ([http] origins); other origins get 403."


def _options(what: str) -> dict:
    return operation(f"CORS preflight for {what}", {"204": response("Allowed origin: CORS headers, no body"),
                                                   **refusals(403)}, security=[])


# ---------------------------------------------------------------- operations

HEALTH = {"": {"get": operation(
    "The process and its reactor answer",
    {"200": response("Alive; loopback callers and bearers of the metrics token also get the details", obj({
        "status": {"const": "ok"}, "version": {"type": "string"}, "uptime": {"type": "number"},
        "realms": {"type": "object", "additionalProperties": {"type": "integer"},
                   "description": "sessions per realm"}}, ("status",), extra=False))},
    security=[{}, "metricsToken"], tags=["operations"])}}

READY = {"": {"get": operation(
    "Every listener bound, the store writable, JWKS keys loaded, not shutting down",
    {"200": response("Ready", obj({"ready": {"const": True}, "problems": {"type": "array", "maxItems": 0}},
                                  ("ready",), extra=False)),
     "503": response("Not ready; loopback callers and bearers of the metrics token also get the problems",
                     obj({"ready": {"const": False}, "problems": {"type": "array", "items": {"type": "string"}}},
                         ("ready",), extra=False))},
    security=[{}, "metricsToken"], tags=["operations"])}}

METRICS = {"": {"get": operation(
    "Prometheus metrics (text exposition format)",
    {"200": response("The metrics", {"type": "string"}, media="text/plain"), **refusals(401, 403)},
    description="Open to loopback callers (unless [metrics] loopback_open = false) and to the metrics token; "
                "a wrong token is 401, no token configured and not on loopback is 403.",
    security=[{}, "metricsToken"], tags=["operations"])}}

TICKET = {"": {
    "post": operation(
        "Trade a JWT for a one-time ticket (browsers)",
        {"200": response("The ticket and the URL to connect with it", obj({
            "ticket": {"type": "string"}, "expires_in": {"type": "number"}, "realm": {"type": "string"},
            "scope": {}, "url": {"type": "string"}, "ticket_url": {"type": "string"}},
            ("ticket", "expires_in", "realm", "url", "ticket_url"))),
         **refusals(400, 401, 403, 413, 429, 503)},
        description="The realm is ?realm=, a JSON body {\"realm\": ...}, else the one realm with one-time "
                    "tickets. " + _CORS,
        parameters=[query_param("realm", "the realm to join")],
        body=request_body(obj({"realm": {"type": "string"}}), required=False),
        security=["jwt"], tags=["tickets"]),
    "options": _options("/ticket")}}

_ENTRY = obj({"claim": {"type": "string"}, "value": {"type": "string"}, "expires_at": {"type": "number"},
              "reason": {"type": "string"}})
_DENY_FIELDS = obj({"claim": {"type": "string"}, "value": {"type": "string"},
                    "ttl": {"type": "number", "exclusiveMinimum": 0}, "expires_at": {"type": "number"},
                    "reason": {"type": "string"}})
_ADMIN_REFUSALS = refusals(400, 401, 403, 413, 429)
DENYLIST = {"": {
    "get": operation("The deny list", {"200": response("Its entries", obj(
        {"entries": {"type": "array", "items": _ENTRY}}, ("entries",))), **_ADMIN_REFUSALS},
        description="An admin JWT (revocation.admin_roles on revocation.admin_realm). " + _CORS,
        security=["jwt"], tags=["deny list"]),
    "post": operation("Deny a claim's value (closes the sessions it matches)", {"200": response(
        "The entry and the sessions closed", obj({"entry": _ENTRY, "sessions_closed": {"type": "integer"}},
                                                ("entry", "sessions_closed"))), **_ADMIN_REFUSALS},
        parameters=[query_param("claim", "the claim (else in the body)"),
                    query_param("value", "its value (else in the body)")],
        body=request_body(_DENY_FIELDS, required=False), security=["jwt"], tags=["deny list"]),
    "delete": operation("Lift a denial", {"200": response("Whether there was one", obj(
        {"removed": {"type": "boolean"}}, ("removed",))), **_ADMIN_REFUSALS},
        parameters=[query_param("claim", "the claim (else in the body)"),
                    query_param("value", "its value (else in the body)")],
        body=request_body(_DENY_FIELDS, required=False), security=["jwt"], tags=["deny list"]),
    "options": _options("/denylist")}}

_TENANT_REFUSALS = refusals(400, 401, 403, 404, 409, 413, 429, 503)
_REALMS_GET_POST = {
    "get": operation("The tenants", {"200": response("Tenant names and the change sequence", obj(
        {"tenants": {"type": "array", "items": {"type": "string"}}, "seq": {"type": "integer"}},
        ("tenants", "seq"))), **_TENANT_REFUSALS},
        description="An admin JWT ([tenants] admin_roles on revocation.admin_realm). " + _CORS,
        security=["jwt"], tags=["tenants"]),
    "post": operation("Make a tenant realm from a template", {"200": response("Made", obj(
        {"tenant": {"type": "string"}, "template": {"type": ["string", "null"]}, "seq": {"type": "integer"}},
        ("tenant", "seq"))), **_TENANT_REFUSALS},
        parameters=[query_param("name", "the tenant (else in the body)"),
                    query_param("template", "the template (else in the body)")],
        body=request_body(obj({"name": {"type": "string"}, "template": {"type": "string"}}), required=False),
        security=["jwt"], tags=["tenants"]),
    "delete": operation("Delete a tenant named by ?name=", {"200": response("Deleted", obj(
        {"tenant": {"type": "string"}, "seq": {"type": "integer"}, "sessions_closed": {"type": "integer"}},
        ("tenant", "seq", "sessions_closed"))), **_TENANT_REFUSALS},
        parameters=[query_param("name", "the tenant"), query_param("reason", "told to its sessions")],
        security=["jwt"], tags=["tenants"]),
    "options": _options("/realms")}
REALMS = {"": _REALMS_GET_POST, "/{name}": {
    "delete": operation("Delete a tenant (closes its sessions)", _REALMS_GET_POST["delete"]["responses"],
                        parameters=[path_param("name", "the tenant"), query_param("reason", "told to its sessions")],
                        security=["jwt"], tags=["tenants"]),
    "options": {**_options("/realms/{name}"), "parameters": [path_param("name", "the tenant")]}}}

_MAILBOX_ACCEPTED = response("Stored durably", obj({"id": {}, "mailbox": {"type": "string"}}, ("id", "mailbox")))
_MAILBOX_REFUSALS = {**refusals(400, 401, 403, 404, 413, 429, 503, 507),
                     "405": response(REASONS[405],
                                     ERROR)}
_ANY_BODY = request_body({}, media="*/*", description="kept opaque, with its Content-Type")
MAILBOX = {
    "/{name}": {"post": operation(
        "Put a message in a mailbox", {"202": _MAILBOX_ACCEPTED, **_MAILBOX_REFUSALS},
        description="The realm is ?realm=, or the one realm with mailboxes; the mailbox's token is "
                    "Authorization: Bearer, ?token= or the /{name}/{token} form.",
        parameters=[path_param("name", "the mailbox's URI"), query_param("realm", "the realm"),
                    query_param("token", "the mailbox's token")],
        body=_ANY_BODY, security=[{}, "mailboxToken"], tags=["mailboxes"])},
    "/{name}/{token}": {"post": operation(
        "Put a message in a mailbox, the token in the path (the URL relayrouter.mailbox.endpoint hands out)",
        {"202": _MAILBOX_ACCEPTED, **_MAILBOX_REFUSALS},
        parameters=[path_param("name", "the mailbox's URI"), path_param("token", "the mailbox's token")],
        body=_ANY_BODY, security=[], tags=["mailboxes"])}}

_BRIDGE_ERROR = obj({"error": {"type": "string"}, "args": {"type": "array"}, "kwargs": {"type": "object"}},
                    ("error",), description="Crossbar's error shape: a WAMP error URI, args, kwargs")
_SIGNED = [query_param("key", "a signing key's name (signed requests, as Crossbar's bridge)"),
           query_param("timestamp", "UTC ISO-8601 with milliseconds"), query_param("seq", "a sequence number"),
           query_param("nonce", "a number used once"),
           query_param("signature", "base64url(HMAC-SHA256(secret, key + timestamp + seq + nonce + body))"),
           query_param("realm", "the realm (bearer JWTs)")]
_BRIDGE_REFUSALS = refusals(400, 401, 403, 404, 405, 413, 429, 502, 503, 504, schema=_BRIDGE_ERROR)
_WAMP_PAYLOAD = {"args": {"type": "array"}, "kwargs": {"type": "object"}, "options": {"type": "object"}}


def _bridge(summary: str, body: dict, answer: dict, description: str) -> dict:
    op = operation(summary, {"200": answer, **_BRIDGE_REFUSALS}, description=description + " " + _CORS,
                   parameters=_SIGNED, body=request_body(body), security=["jwt", "bridgeSignature"],
                   tags=["HTTP bridge"])
    return {"post": op, "put": {**op, "summary": op["summary"] + " (PUT is POST, as in Crossbar)"},
            "options": _options("the HTTP bridge")}


PUBLISH = {"": _bridge("Publish an event", obj({"topic": {"type": "string"}, **_WAMP_PAYLOAD}, ("topic",)),
                       response("Published (or a WAMP error, with error_status = \"crossbar\")", {"oneOf": [
                           obj({"id": {"type": "integer"}}, ("id",)), _BRIDGE_ERROR]}),
                       "A bearer JWT or a signed request.")}
CALL = {"": _bridge("Call a procedure", obj({"procedure": {"type": "string"}, **_WAMP_PAYLOAD}, ("procedure",)),
                    response("The result (or a WAMP error, with error_status = \"crossbar\")",
                             obj({"args": {"type": "array"}, "kwargs": {"type": "object"},
                                  "error": {"type": "string"}})),
                    "A bearer JWT or a signed request; options.timeout in ms.")}
_HOOK = operation("Publish any body as an event on the webhook's topic",
                  {"202": response("Published", obj({"id": {"type": "integer"}}, ("id",))), **_BRIDGE_REFUSALS},
                  description="A webhook with a github_secret checks X-Hub-Signature-256. " + _CORS,
                  body=request_body({}, media="*/*"), security=[{}, "githubSignature"], tags=["HTTP bridge"])
_HOOK_PUT = {**_HOOK, "summary": "The same as POST (as in Crossbar)"}
WEBHOOK = {"": {"post": {**_HOOK, "summary": _HOOK["summary"] + " (the webhook with no name)"},
                "put": _HOOK_PUT, "options": _options("webhooks")},
           "/{name}": {"post": _HOOK, "put": _HOOK_PUT, "options": _options("webhooks"),
                       "parameters": [path_param("name", "the webhook's name")]}}

CONSOLE = {
    "": {"get": operation("The web console: redirects to /console/", {
        "302": response("To /console/ (Location), with a page linking there", {"type": "string"},
                        media="text/html")}, security=[], tags=["console"])},
    "/": {"get": operation("The console's page", {
        "200": response("The page", {"type": "string"}, media="text/html")}, security=[], tags=["console"])},
    "/{file}": {"get": operation("The console's page and its assets", {
        "200": response("The file", {"type": "string"}, media="*/*"), **refusals(404)},
        description="The page logs in over WAMP; the files are the same for everyone.",
        parameters=[path_param("file", "index.html or an asset")], security=[], tags=["console"])}}

_RELAY_REFUSALS = refusals(400, 401, 403, 404, 429)
RELAY_TOPIC = {"/{topic}": {
    "post": operation("An access code: the URL of the raw WebSocket", {"200": response(
        "The URL, with a one-time code", obj({"uri": {"type": "string"}}, ("uri",))), **_RELAY_REFUSALS},
        description="practable's access API. " + _CORS,
        parameters=[path_param("prefix", "a relay prefix ([relay] prefixes)"), path_param("topic", "the stream")],
        security=["relayToken"], tags=["relay"]),
    "get": operation("The raw WebSocket (with the code); without an upgrade, 400", {
        "101": response("Switching to WebSocket"), **_RELAY_REFUSALS},
        parameters=[path_param("prefix", "a relay prefix ([relay] prefixes)"), path_param("topic", "the stream"),
                    query_param("code", "the one-time code")], security=[], tags=["relay"]),
    "options": {**_options("the relay"), "parameters": [path_param("prefix", "a relay prefix"),
                                                        path_param("topic", "the stream")]}}}
# A prefix that is not one of [relay] prefixes: 404, whatever the method.
RELAY_TOPIC["/{topic}"]["options"]["responses"].update(refusals(404))
_BIDS = obj({"booking_ids": {"type": "array", "items": {"type": "string"}}}, ("booking_ids",))


def _bid_list(which: str, path: str) -> dict:
    return {
        "get": operation(f"Booking ids {which}", {"200": response("The list", _BIDS), **_RELAY_REFUSALS},
                         description="The [relay] admin_scope. " + _CORS, security=["relayToken"], tags=["relay"]),
        "post": operation(f"Add a booking id to those {which}", {
            "204": response("Done"), **_RELAY_REFUSALS, **refusals(422)},
            parameters=[query_param("bid", "the booking id", True),
                        query_param("exp", "its expiry, seconds since the epoch", True)],
            security=["relayToken"], tags=["relay"]),
        "options": _options(path)}


RELAY_BIDS_DENY = {"": _bid_list("denied", "/bids/deny")}
RELAY_BIDS_ALLOW = {"": _bid_list("allowed", "/bids/allow")}
RELAY_STATUS = {"": {
    "get": operation("The raw connections", {"200": response("A report per connection", {
        "type": "array", "items": obj({"topic": {"type": "string"}, "can_read": {"type": "boolean"},
                                       "can_write": {"type": "boolean"}, "stats": {"type": "object"}})}),
        **_RELAY_REFUSALS}, description="The [relay] stats_scope. " + _CORS, security=["relayToken"],
        tags=["relay"]),
    "options": _options("/status")}}
RELAY_PAGES = {"/{file}": {"get": operation("The video page, its script and JSMpeg", {
    "200": response("The file", {"type": "string"}, media="*/*"), **refusals(404)},
    parameters=[path_param("file", "video.html and what it loads")], security=[], tags=["relay"])}}

_WS_DESCRIPTION = "A GET with a WebSocket upgrade; without one, a page saying so."
WAMP = {"": {"get": operation("The WAMP endpoint (WebSocket: wamp.2.json, wamp.2.msgpack, wamp.2.cbor)", {
    "101": response("Switching to WebSocket"),
    "200": response("Not an upgrade: a page saying this is a WebSocket endpoint", {"type": "string"},
                    media="text/html"),
    "400": response("A bad upgrade", {"type": "string"}, media="*/*"),
    "405": response(REASONS[405], ERROR)}, description=_WS_DESCRIPTION, security=[], tags=["WAMP"])}}
_MEETUP = operation("The Micronets endpoint (WebSocket), for realms with pairing", {
    "101": response("Switching to WebSocket"),
    "200": response("Not an upgrade: a page saying this is a WebSocket endpoint", {"type": "string"},
                    media="text/html"),
    "400": response("A bad upgrade", {"type": "string"}, media="*/*"),
    "405": response(REASONS[405], ERROR)}, description=_WS_DESCRIPTION, security=[], tags=["pairs"])
MICRONETS = {"": {"get": {**_MEETUP, "summary": _MEETUP["summary"] + ": an upgrade without a meetup id is refused"}},
             "/{meetup}": {"get": {**_MEETUP, "parameters": [path_param("meetup", "the meetup id")]}}}


# ------------------------------------------------------------- the reference

# Where each entry is mounted on a router with every feature on (the defaults' places).
REFERENCE_MOUNTS = [
    ("/ws", WAMP), ("/openapi.json", OPENAPI_PATH), ("/health", HEALTH), ("/ready", READY),
    ("/metrics", METRICS), ("/ticket", TICKET), ("/denylist", DENYLIST), ("/realms", REALMS),
    ("/mailbox", MAILBOX), ("/publish", PUBLISH), ("/call", CALL), ("/webhook", WEBHOOK), ("/console", CONSOLE),
    ("/{prefix}", RELAY_TOPIC), ("/bids/deny", RELAY_BIDS_DENY), ("/bids/allow", RELAY_BIDS_ALLOW),
    ("/status", RELAY_STATUS), ("/relay", RELAY_PAGES), ("/micronets/v1/ws-proxy", MICRONETS),
]


def router_document(paths: dict) -> dict:
    return document(TITLE, __version__, DESCRIPTION, paths, SECURITY_SCHEMES)


def reference_document() -> dict:
    paths: dict = {}
    for base, entry in REFERENCE_MOUNTS:
        for sub, item in entry.items():
            paths.setdefault(base + sub, {}).update(item)
    return router_document(dict(sorted(paths.items())))
