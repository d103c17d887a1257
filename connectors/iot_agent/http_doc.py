"""The IoT agent's HTTP API as OpenAPI path items (``GET /openapi.json``).

The root hands every path it has no child for to the API resource, which
routes by the whole path (http_api.py): so the root owns the routes' entries
(:data:`ROUTES`).  Each dojot service answers errors in its own shape, and so
does the agent on its path (http_api.shape_of): the HTTP agent and the
retriever ``{"error"}``, the history ``{"title", "description"}``, Kafka-WS
``{"message"}``, the registry ``{"error", "message"}``.
"""

from relayrouter.api import openapi

obj, operation, response, refusals = openapi.obj, openapi.operation, openapi.response, openapi.refusals
path_param, query_param, request_body = openapi.path_param, openapi.query_param, openapi.request_body

TITLE = "iot-agent"
DESCRIPTION = ("The IoT agent's HTTP API, dojot-compatible: devices post data (dojot's HTTP agent), tenants' "
               "callers manage devices (the device registry), actuate, read history (dojot's history and "
               "retriever) and take Kafka-WS tickets.  Callers send a bearer JWT naming their tenant (the "
               "service claim by default); devices authenticate with a client certificate, basic auth "
               "(tenant@device and its secret) or a device token.")
SECURITY_SCHEMES = {
    "jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
            "description": "a JWT the agent verifies (--api-jwt-secret-file or --api-jwt-public-key); its tenant "
                           "claim names the tenant"},
    "deviceBasic": {"type": "http", "scheme": "basic", "description": "tenant@device and the device's secret"},
    "deviceToken": {"type": "http", "scheme": "bearer",
                    "description": "tenant@device:<secret>, as a bearer value"},
    "deviceCertificate": {"type": "mutualTLS",
                          "description": "a client certificate whose CN is tenant:device (the TLS listener)"},
}

ERROR_SHAPE = obj({"error": {}, "detail": {}}, ("error",), description="dojot's HTTP agent and retriever")
TITLE_SHAPE = obj({"title": {"type": "string"}, "description": {"type": "string"}}, ("title", "description"),
                  description="dojot's history")
MESSAGE_SHAPE = obj({"message": {"type": "string"}}, ("message",), description="dojot's Kafka-WS")

_DEVICE = obj({"id": {"type": "string"}}, ("id",))
_DEVICE_ID = path_param("device_id", "the device's id")
_JWT = ["jwt"]


def _registry(summary: str, answer: dict, method: str, body: bool = False, more: tuple = ()) -> dict:
    codes = (400, 401, 403, 404, 503) + ((413, 415) if body else ()) + more
    return {method: operation(summary, {"200": answer, **refusals(*codes)}, security=_JWT, tags=["device registry"],
                              body=request_body(obj({}), required=True) if body else None)}


_INGEST = {"post": operation("A device's message: one object {attrs?, ts?, ...} as dojot's HTTP agent takes", {
    "204": response("Taken (published on the device's topic)"),
    **refusals(400, 401, 403, 413, 415, 503, schema=ERROR_SHAPE)},
    body=request_body({}), security=["deviceCertificate", "deviceBasic", "deviceToken"], tags=["HTTP agent"])}
_INGEST_MANY = {"post": {**_INGEST["post"], "summary": "A device's messages: an array of them"}}

_PAGE = [query_param(name, name) for name in ("dateFrom", "dateTo", "limit", "page", "order")]
_TSS_ANSWERS = {"200": {"description": "A page of points (JSON), or CSV with Accept: text/csv", "content": {
    "application/json": {"schema": obj({"data": {"type": "array"}, "paging": {"type": "object"}},
                                       ("data", "paging"))},
    "text/csv": {"schema": {"type": "string"}}}},
    **refusals(400, 401, 403, 404, 406, 503, schema=ERROR_SHAPE)}

ROUTES = {
    "/http-agent/v1/incoming-messages": _INGEST,
    "/http-agent/v1/incoming-messages/create-many": _INGEST_MANY,
    "/http-agent/v1/unsecure/incoming-messages": _INGEST,
    "/http-agent/v1/unsecure/incoming-messages/create-many": _INGEST_MANY,
    "/device": {
        **_registry("The tenant's devices", response("Them", obj(
            {"devices": {"type": "array", "items": _DEVICE}, "pagination": {"type": "object"}},
            ("devices", "pagination"))), "get"),
        **_registry("Register a device: its credentials come back once", response("Registered", obj(
            {"device": _DEVICE, "credentials": {"type": "object"}, "mqtt_provisioned": {"type": "boolean"}},
            ("device", "credentials"))), "post", body=True, more=(409,))},
    "/device/{device_id}": {
        **_registry("A device", response("It", _DEVICE), "get"),
        **_registry("Change a device", response("Changed", _DEVICE), "put", body=True),
        **_registry("Delete a device", response("Deleted", _DEVICE), "delete"),
        "parameters": [_DEVICE_ID]},
    "/device/{device_id}/credentials": {
        **_registry("New credentials for a device (the old ones stop working)", response("Them", obj(
            {"device": _DEVICE, "credentials": {"type": "object"}}, ("device", "credentials"))), "post"),
        "parameters": [_DEVICE_ID]},
    "/device/{device_id}/actuate": {
        **_registry("Send attributes to a device (MQTT)", response("Sent", obj(
            {"accepted": {"type": "boolean"}, "topics": {"type": "array"}}, ("accepted", "topics"))), "put",
            body=True),
        "parameters": [_DEVICE_ID]},
    "/history/device/{device_id}/history": {"get": operation("dojot's history of a device's attributes", {
        "200": response("The points, dojot's shape", {}),
        **refusals(400, 401, 403, 404, 503, schema=TITLE_SHAPE)},
        parameters=[_DEVICE_ID, query_param("attr", "attributes (repeated or comma-separated)"),
                    query_param("lastN", "the last N"), query_param("firstN", "the first N"),
                    query_param("dateFrom", "from"), query_param("dateTo", "to")],
        security=_JWT, tags=["history"])},
    "/tss/v1/devices/{device_id}/data": {"get": operation("dojot's retriever: a device's data, paged",
                                                          _TSS_ANSWERS, parameters=[_DEVICE_ID, *_PAGE],
                                                          security=_JWT, tags=["retriever"])},
    "/tss/v1/devices/{device_id}/attrs/{attr}/data": {"get": operation(
        "dojot's retriever: one attribute's data, paged", _TSS_ANSWERS,
        parameters=[_DEVICE_ID, path_param("attr", "the attribute"), *_PAGE], security=_JWT,
        tags=["retriever"])},
    "/kafka-ws/v1/ticket": {"get": operation("A one-time ticket for the Kafka-WS WebSocket", {
        "200": response("The ticket", obj({"ticket": {"type": "string"}}, ("ticket",))),
        **refusals(401, 403, 503, schema=MESSAGE_SHAPE)}, security=_JWT, tags=["Kafka-WS"])},
}

TOPICS = {"/{topic}": {"get": operation("Kafka-WS: a tenant's topic as a WebSocket (with ?ticket=)", {
    "101": response("Switching to WebSocket"),
    "426": response("Not an upgrade: this URL is a WebSocket", openapi.ERROR)},
    parameters=[path_param("topic", "tenant.subject"), query_param("ticket", "the ticket")], security=[],
    tags=["Kafka-WS"])}}

STATUS = {"": {"get": operation("The agent's connections, tenants and counters", {
    "200": response("The status", obj(
        {"status": {"enum": ["ready", "starting"]}, "router": {"type": "object"},
         "mqtt": {"type": ["object", "null"]}, "store": {}, "store_stats": {}, "devices": {"type": "integer"},
         "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
         "kafka_ws": {"type": "object"}, "kafka_ws_connections": {"type": "integer"}},
        ("status", "router", "devices", "counters", "kafka_ws_connections")))}, security=[], tags=["status"])}}
