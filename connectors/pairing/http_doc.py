"""The pairing agent's control port as OpenAPI path items (``GET /openapi.json``
on that port).  The REST port has no document of its own: every path there is
the other peer's REST API, whatever it is, so it serves no /openapi.json
either (that path too goes to the other peer)."""

from relayrouter.api import openapi

TITLE = "pairing-agent control"
DESCRIPTION = ("The pairing agent's control port (--control): its status, and notifications for the other "
               "peer of the pair.  No credential: it listens on loopback or a Unix socket by default; the "
               "certificate that binds the agent to its pair is the router's business.")

STATUS = {"": {"get": openapi.operation("The agent's connection, its pair, whether the other peer is there", {
    "200": openapi.response("The status", openapi.obj(
        {"status": {"type": "string"}, "router": {"type": "object"}, "pair": {},
         "peer_present": {"type": "boolean"}, "counters": {"type": "object"}, "time": {"type": "number"}},
        ("status", "router", "pair", "peer_present", "counters", "time")))}, security=[], tags=["status"])}}
EVENTS = {"/{name}": {"post": openapi.operation("A notification for the other peer, with this body", {
    "202": openapi.response("Published", openapi.obj({"published": {"type": "string"}}, ("published",))),
    **openapi.refusals(404, 413, 502)},
    description="The other peer's agent POSTs it to its --event-endpoint with X-Pair-Event: <name>.",
    parameters=[openapi.path_param("name", "the event's name: no '.', '#', '/' or spaces")],
    body=openapi.request_body({}, media="*/*", required=False, description="any body, with its Content-Type"),
    security=[], tags=["events"])}}
