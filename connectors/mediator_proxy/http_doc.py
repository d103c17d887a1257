"""The mediator proxy's local HTTP API, in both modes, as OpenAPI path items
(``GET /openapi.json``: relayrouter.api.openapi walks the site; each resource
points at its entry here).

* The mailbox mode (``twistd mediator-proxy``): every path needs the local API
  token, so the document does too: without it nothing, not even which paths
  exist, is told.
* The DIDComm mode (``twistd mediator-proxy didcomm``): the proxy-mediator's
  surface; its document is open, as are ``POST /`` and ``GET /status``.
"""

from relayrouter.api import openapi

obj, operation, response, refusals = openapi.obj, openapi.operation, openapi.response, openapi.refusals
path_param, query_param, request_body = openapi.path_param, openapi.query_param, openapi.request_body

TITLE = "mediator-proxy"
DESCRIPTION = ("The mediator proxy's local API (mailbox mode): its status, the public endpoint its agent "
               "advertises, messages out to other mailboxes, and the dead letters.  Every path, this document "
               "included, needs the local API token (--api-token-file).")
DIDCOMM_TITLE = "mediator-proxy didcomm"
DIDCOMM_DESCRIPTION = ("The mediator proxy in DIDComm mode, in place of Indicio's proxy-mediator: POST / takes "
                       "DIDComm messages; the invitation routes need the local API token when one is set.")
SECURITY_SCHEMES = {"apiToken": {"type": "http", "scheme": "bearer",
                                 "description": "the local API token (--api-token-file or the environment)"}}

_TOKEN = ["apiToken"]
_STATUS_SCHEMA = obj({"status": {"type": "string"}, "router": {"type": "object"}, "mailbox": {"type": "object"},
                      "agent": {"type": "object"}, "outbound": {"type": "object"}}, ("status",))
STATUS = {"": {"get": operation("The proxy's state, the router connection, the mailbox, the agent, the spool", {
    "200": response("The status", _STATUS_SCHEMA), **refusals(401)}, security=_TOKEN, tags=["status"])}}
ENDPOINT = {"": {"get": operation("The public endpoint the agent advertises (the router's mailbox URL)", {
    "200": response("The endpoint", obj({"endpoint": {"type": "string"}}, ("endpoint",))),
    **refusals(401, 503)}, security=_TOKEN, tags=["endpoint"])}}
OUTBOUND = {"/{mailbox}": {"post": operation("A message for another mailbox: 202 once spooled on disk", {
    "202": response("Spooled", obj({"spooled": {"type": "integer"}, "mailbox": {"type": "string"},
                                    "queued": {"type": "integer"}}, ("spooled", "mailbox"))),
    **refusals(400, 401, 413, 507)},
    parameters=[path_param("mailbox", "the mailbox's URI, e.g. mailbox.agenta")],
    body=request_body({}, media="*/*", description="kept opaque, with its Content-Type"),
    security=_TOKEN, tags=["outbound"])}}
_DIRECTION = path_param("direction", "inbound or outbound")
_SEQ = path_param("seq", "the dead letter's number")
_DEAD_ENTRY = obj({"seq": {"type": "integer"}, "size": {"type": "integer"}, "body_base64": {"type": "string"}},
                  ("seq", "size"))
DEAD_LETTERS = {
    "": {"get": operation("Every dead letter, both directions", {
        "200": response("The dead letters", obj({"inbound": {"type": "array", "items": _DEAD_ENTRY},
                                                 "outbound": {"type": "array", "items": _DEAD_ENTRY}},
                                                ("inbound", "outbound"))), **refusals(400, 401)},
        parameters=[query_param("body", "1: with each body, base64")], security=_TOKEN, tags=["dead letters"])},
    "/{direction}/{seq}": {"delete": operation("Forget a dead letter", {
        "200": response("Forgotten", obj({"removed": {"type": "integer"}}, ("removed",))),
        **refusals(400, 401, 404)}, parameters=[_DIRECTION, _SEQ], security=_TOKEN, tags=["dead letters"])},
    "/{direction}/{seq}/retry": {"post": operation(
        "Once more: inbound, POST it to the agent (removed on a 2xx); outbound, back into the spool", {
            "200": response("Inbound: delivered", obj({"delivered": {"const": True}, "seq": {"type": "integer"}},
                                                      ("delivered", "seq"))),
            "202": response("Outbound: spooled again", obj({"spooled": {"type": "integer"}}, ("spooled",))),
            **refusals(400, 401, 404, 502)}, parameters=[_DIRECTION, _SEQ], security=_TOKEN,
        tags=["dead letters"])}}

# ------------------------------------------------------------- DIDComm mode

DIDCOMM_INBOUND = {"/": {"post": operation("A DIDComm message (packed)", {
    "200": response("The answer, for a message asking for a return route", {"type": "string"},
                    media="application/didcomm-envelope-enc"),
    "202": response("Taken"), **refusals(400, 413, 503)},
    body=request_body({"type": "string"}, media="application/didcomm-envelope-enc"), security=[],
    tags=["DIDComm"])}}
DIDCOMM_STATUS = {"": {"get": operation("The seed's {\"status\"}, and this proxy's counters", {
    "200": response("The status", obj({"status": {"type": "string"}, "delivered": {"type": "integer"},
                                       "spooled": {"type": "integer"}}, ("status",)))},
    security=[], tags=["status"])}}
_ADMIN = [{}, "apiToken"]  # the token when one is set
AGENT_INVITATION = {"": {"get": operation("The invitation for the agent", {
    "200": response("Its URL, null until there is one", obj({"invitation_url": {"type": ["string", "null"]}},
                                                            ("invitation_url",))), **refusals(401)},
    security=_ADMIN, tags=["invitations"])}}
MEDIATOR_INVITATION = {"": {"post": operation("Take the mediator's invitation: 200 once mediation is set up", {
    "200": response("Set up", obj({})), **refusals(400, 401, 409, 413, 415, 502)},
    body=request_body(obj({"invitation_url": {"type": "string"}}, ("invitation_url",))), security=_ADMIN,
    tags=["invitations"])}}
