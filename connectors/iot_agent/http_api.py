"""The agent's HTTP side: dojot's HTTP agent, device registry, actuation,
history and Kafka-WS endpoints (routes in README, "IoT agent").

Callers of the registry, history and Kafka-WS ticket send
``Authorization: Bearer <JWT>``; the JWT is verified (signature, ``exp``,
and ``aud``/``iss`` when configured) and its tenant claim (``service`` by
default, dojot's) names the tenant.  Devices posting data authenticate with
their client certificate (CN ``tenant:deviceid``, on the TLS listener that
requires one), HTTP basic auth (``tenant@deviceid`` and the device secret)
or ``Authorization: Bearer tenant@deviceid:<secret>``.
"""

import base64
import re
from collections import Counter

import jwt as pyjwt
from autobahn.twisted.resource import WebSocketResource
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from relayrouter.api import httpinput, method_not_allowed, openapi

from connectors.common import HttpError, JsonResource, StatusResource, json_response, read_body
from connectors.common.http import ConnectorRequest

from . import dojot_api, http_doc
from .dojot_api import DojotError, body_of
from .history import PAGE_PARAMETERS, BadQuery
from .normalize import Invalid
from .registry import RegistryError

log = Logger()

MAX_BODY = 256_000  # dojot's express.parsing.limit
MISSING_JWT = "Missing JWT token"  # dojot's words


class ApiJwt:
    """Verifies callers' JWTs; ``tenant(request)`` -> (tenant, exp)."""

    def __init__(self, key, algorithms, audience=None, issuer=None, tenant_claim="service") -> None:
        self.key = key
        self.algorithms = algorithms
        self.audience = audience
        self.issuer = issuer
        self.tenant_claim = tenant_claim

    def claims(self, request) -> dict:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1").strip()
        scheme, _, token = header.partition(" ")
        if not header:
            raise HttpError(401, MISSING_JWT, headers={"WWW-Authenticate": "Bearer"})
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(401, "Invalid JWT token: send Authorization: Bearer <JWT>",
                            headers={"WWW-Authenticate": "Bearer"})
        if self.key is None:
            raise HttpError(503, "this agent verifies no JWTs (--api-jwt-secret-file / --api-jwt-public-key)")
        options = {"require": ["exp"], "verify_aud": self.audience is not None}
        try:
            return pyjwt.decode(token.strip(), self.key, algorithms=self.algorithms, audience=self.audience,
                                issuer=self.issuer, options=options)
        except pyjwt.PyJWTError as e:
            raise HttpError(401, f"the JWT was refused: {e}", headers={"WWW-Authenticate": "Bearer"}) from None

    def tenant(self, request) -> tuple[str, float | None]:
        claims = self.claims(request)
        tenant = claims.get(self.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise HttpError(403, f"the JWT has no '{self.tenant_claim}' claim naming the tenant")
        return tenant, claims.get("exp")


_ROUTES = []

# The error body of each API, by path (dojot's services answer in their own shapes).
_SHAPES = (("/http-agent/", "error"), ("/tss/", "error"), ("/history/", "title"), ("/kafka-ws/", "message"))


def shape_of(path: str) -> str:
    return next((shape for prefix, shape in _SHAPES if path.startswith(prefix)), "relayrouter")


def route(method: str, pattern: str):
    def add(fn):
        _ROUTES.append((method, re.compile(pattern + r"/?$"), fn))
        return fn
    return add


class ApiResource(JsonResource):
    """Every JSON route, by method and path."""

    takes_path = None  # routes by the whole path

    def __init__(self, agent, jwt: ApiJwt) -> None:
        super().__init__()
        self.agent = agent
        self.jwt = jwt

    def render(self, request):
        path = request.path.decode("utf8", "replace")
        method = request.method.decode("ascii", "replace")
        # HEAD is GET's answer without its body (twisted.web writes no body for HEAD).
        served_as = "GET" if method == "HEAD" else method
        allowed = []
        for route_method, pattern, fn in _ROUTES:
            found = pattern.match(path)
            if found is None:
                continue
            if route_method == served_as:
                d = defer.maybeDeferred(fn, self, request, **found.groupdict())
                d.addCallbacks(_answer, self._refuse, (request,), None, (request,), None)
                d.addErrback(log.failure, "answering {path}", path=path)
                return server.NOT_DONE_YET
            allowed.append(route_method)
        shape = "error" if shape_of(path) == "title" else shape_of(path)  # the SDK's own 404 in the history proxy
        if allowed:
            if shape == "relayrouter":
                return method_not_allowed(request, allowed, "method_not_allowed")
            request.setHeader(b"allow", ", ".join(allowed).encode())
            return _error_body(request, HttpError(405, f"{method} is not allowed here; use {' or '.join(allowed)}"),
                               shape)
        text = "Not Found" if shape != "relayrouter" else f"no resource at {path}"
        return _error_body(request, HttpError(404, text), shape)

    def _refuse(self, failure, request) -> None:
        if failure.check(httpinput.BadInput):
            failure.value.headers = {}
        elif not failure.check(HttpError):
            return super()._refuse(failure, request)
        for name, value in failure.value.headers.items():
            request.setHeader(name.encode(), str(value).encode())
        body = _error_body(request, failure.value, shape_of(request.path.decode("utf8", "replace")))
        if not (request.finished or getattr(request, "_disconnected", False)):
            request.write(body)
            request.finish()

    # ----------------------------------------------------------- helpers

    def tenant(self, request) -> str:
        tenant, _ = self.jwt.tenant(request)
        if not self.agent.tenants.served(tenant):
            raise HttpError(403, f"tenant '{tenant}' is not served by this agent")
        return tenant

    @staticmethod
    def json_body(request, limit: int = MAX_BODY):
        return httpinput.json_value(read_body(request, limit))

    @staticmethod
    def arg(request, name: str):
        return httpinput.arg(request, name)

    @staticmethod
    def args(request, name: str) -> list[str]:
        return [httpinput.text(v, f"?{name}=") for v in request.args.get(name.encode(), [])]


def _error_body(request, e: HttpError, shape: str) -> bytes:
    return json_response(request, body_of(e, shape), e.code)


class Csv(str):
    """A route's answer written as ``text/csv`` (the retriever's ``Accept: text/csv``)."""


def _answer(value, request) -> None:
    code, body = value if isinstance(value, tuple) else (200, value)
    if request.finished or getattr(request, "_disconnected", False):
        return
    if code == 204:
        request.setResponseCode(204)
        request.finish()
        return
    if isinstance(body, Csv):
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/csv; charset=utf-8")
        request.write(body.encode())
    else:
        request.write(json_response(request, body, code))
    request.finish()


def _registry_errors(fn):
    @defer.inlineCallbacks
    def wrapped(self, request, **kw):
        try:
            result = yield fn(self, request, **kw)
        except RegistryError as e:
            error = HttpError(e.status, e.message, e.error)
            if e.error == "no_data":
                error.title = "Attr not found"  # the history proxy's title
            raise error from None
        except (BadQuery, Invalid) as e:
            raise HttpError(400, str(e), "invalid_request") from None
        return result
    return wrapped


# ------------------------------------------------------------ HTTP agent

INVALID_BASIC = "Invalid Basic token."  # dojot's words for each refusal it shares with us
INVALID_CREDENTIALS = "Invalid credentials."
UNABLE_TO_AUTHENTICATE = "Unable to authenticate"


def device_of(api: ApiResource, request) -> dict:
    """The posting device, by client certificate, basic auth or device token; 4xx otherwise."""
    header = (request.getHeader(b"authorization") or b"").decode("latin-1")
    cn = _certificate_cn(getattr(request.channel, "transport", None))
    return identify(api.agent, cn, header, b"/unsecure/" in request.path,
                    api.agent.counters)


def identify(agent, cn: str | None, header: str, unsecure: bool, counters) -> dict:
    """The device a certificate CN or an ``Authorization`` header names, its
    secret checked; DojotError or HttpError otherwise, each counted in ``counters``."""
    if cn is not None:
        tenant, sep, device_id = cn.partition(":")
        device = agent.devices.get(tenant, device_id) if sep else None
        return _known(agent, device, f"certificate CN {cn!r}", counters)
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "basic":
        if not value.strip():
            counters["refused_bad_credentials"] += 1
            raise DojotError(401, INVALID_BASIC, headers=_BASIC)
        try:
            username, _, secret = base64.b64decode(value.strip(), validate=True).decode("utf8").partition(":")
        except (ValueError, UnicodeDecodeError):
            username, secret = "", ""  # dojot decodes anything; what it finds names no device
    elif scheme.lower() == "bearer" and "@" in value and ":" in value:
        username, _, secret = value.strip().partition(":")
    else:
        counters["refused_no_credentials"] += 1
        if unsecure:
            raise DojotError(401, INVALID_BASIC, headers=_BASIC)
        raise DojotError(400, UNABLE_TO_AUTHENTICATE)
    tenant, at, device_id = username.partition("@")
    device = agent.devices.get(tenant, device_id) if at else None
    if device is None:
        counters["refused_unknown_device" if at else "refused_bad_credentials"] += 1
        raise DojotError(401, INVALID_CREDENTIALS, headers=_BASIC)  # as a wrong secret: no device is revealed
    if agent.devices.check_secret(tenant, device_id, secret) is None:
        counters["refused_bad_credentials"] += 1
        raise DojotError(401, INVALID_CREDENTIALS, headers=_BASIC)
    return _known(agent, device, f"device {username!r}", counters)


_BASIC = {"WWW-Authenticate": 'Basic realm="iot-agent"'}


def _known(agent, device, who: str, counters) -> dict:
    if device is None or not agent.tenants.served(device["tenant"]):
        counters["refused_unknown_device"] += 1
        raise HttpError(403, f"{who} is not a registered device of a served tenant")
    return device


def _certificate_cn(transport) -> str | None:
    """The CN of the TLS client certificate on ``transport``, if any."""
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    certificate = get()
    if certificate is None:
        return None
    return certificate.get_subject().commonName


@route("POST", r"/http-agent/v1(?:/unsecure)?/incoming-messages")
def incoming(api, request):
    device = device_of(api, request)
    body = _checked(api, dojot_api.check_single, api.json_body(request))
    return _ingest(api, device, [body])


@route("POST", r"/http-agent/v1(?:/unsecure)?/incoming-messages/create-many")
def incoming_many(api, request):
    device = device_of(api, request)
    return _ingest(api, device, _checked(api, dojot_api.check_many, api.json_body(request)))


def lane_take(agent, head, body: bytes, transport):
    """The Deferred of a device post the agent accepts, queued for its commit,
    or None: the route answers it (the lane, http_lane.py, tries this first).
    The same checks as the routes above, counting nothing: a refusal is
    counted when the route answers it."""
    quiet = Counter()
    try:
        device = identify(agent, _certificate_cn(transport), head.authorization, head.unsecure, quiet)
        value = httpinput.json_value(body)
        (dojot_api.check_many if head.many else dojot_api.check_single)(value)
        messages = agent.ingest.normalized(device, value if head.many else [value])
    except (HttpError, httpinput.BadInput, Invalid):  # DojotError is an HttpError
        return None
    return agent.ingest.queue(messages)


def _checked(api, check, body):
    try:
        check(body)
    except DojotError:
        api.agent.counters["refused_invalid"] += 1
        raise
    return body


def _ingest(api, device, bodies):
    try:
        d = api.agent.ingest.accept(device, bodies)
    except Invalid as e:
        index = getattr(e, "index", None)
        raise DojotError(400, str(e) if index is None else {str(index): str(e)}) from None
    d.addCallback(lambda _: (204, None))
    return d


# ------------------------------------------------------ device registry

@route("GET", r"/device")
@_registry_errors
def list_devices(api, request):
    tenant = api.tenant(request)
    devices = api.agent.devices.of_tenant(tenant)
    return defer.succeed({"devices": devices, "pagination": {"total": len(devices)}})


@route("POST", r"/device")
@_registry_errors
def create_device(api, request):
    return api.agent.create_device(api.tenant(request), api.json_body(request))


@route("GET", r"/device/(?P<device_id>[^/]+)")
@_registry_errors
def get_device(api, request, device_id):
    return api.agent.get_device(api.tenant(request), device_id)


@route("PUT", r"/device/(?P<device_id>[^/]+)")
@_registry_errors
def update_device(api, request, device_id):
    return api.agent.update_device(api.tenant(request), device_id, api.json_body(request))


@route("DELETE", r"/device/(?P<device_id>[^/]+)")
@_registry_errors
def delete_device(api, request, device_id):
    return api.agent.delete_device(api.tenant(request), device_id)


@route("POST", r"/device/(?P<device_id>[^/]+)/credentials")
@_registry_errors
def rotate_credentials(api, request, device_id):
    return api.agent.credentials(api.tenant(request), device_id, rotate=True)


@route("PUT", r"/device/(?P<device_id>[^/]+)/actuate")
@_registry_errors
def actuate(api, request, device_id):
    body = api.json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("attrs"), dict):
        raise HttpError(400, 'actuation takes {"attrs": {...}}')
    return api.agent.actuate(api.tenant(request), device_id, body["attrs"])


# --------------------------------------------------------------- history

@route("GET", r"/history/device/(?P<device_id>[^/]+)/history")
@_registry_errors
def legacy_history(api, request, device_id):
    return api.agent.legacy_history(
        api.tenant(request), device_id, attrs=[a for v in api.args(request, "attr") for a in v.split(",") if a],
        lastN=api.arg(request, "lastN"), firstN=api.arg(request, "firstN"),
        dateFrom=api.arg(request, "dateFrom"), dateTo=api.arg(request, "dateTo"))


def _path(request) -> str:
    return httpinput.path_segment(request.path, "the path")


def _retriever(api, request, device_id, attr):
    """The retriever's order: the caller, unknown parameters, the Accept header, then the device."""
    tenant = api.tenant(request)
    query = {}
    for raw in request.args:
        name = httpinput.text(raw, "a query parameter's name")
        if name not in PAGE_PARAMETERS:
            raise DojotError(400, f"Unknown query parameter '{name}'")
        query[name] = api.arg(request, name)
    accept = request.getHeader(b"accept")
    kind = dojot_api.acceptable(accept.decode("latin-1") if accept is not None else None)
    if kind is None:
        raise dojot_api.not_acceptable(accept.decode("latin-1"))
    d = api.agent.page_history(tenant, device_id, attr, _path(request), query=query, csv=kind == "csv",
                               **query)
    if kind == "csv":
        d.addCallback(lambda rows: Csv(dojot_api.csv_text(rows)))
    return d


@route("GET", r"/tss/v1/devices/(?P<device_id>[^/]+)/data")
@_registry_errors
def device_data(api, request, device_id):
    return _retriever(api, request, device_id, None)


@route("GET", r"/tss/v1/devices/(?P<device_id>[^/]+)/attrs/(?P<attr>[^/]+)/data")
@_registry_errors
def attr_data(api, request, device_id, attr):
    return _retriever(api, request, device_id, attr)


# -------------------------------------------------------------- Kafka-WS

@route("GET", r"/kafka-ws/v1/ticket")
def ticket(api, request):
    tenant, exp = api.jwt.tenant(request)
    try:
        issued = api.agent.tickets.issue(tenant, exp if api.agent.kafka_ws_jwt_exp else None)
    except OverflowError as e:
        raise HttpError(503, str(e)) from None
    return {"ticket": issued}


class _AnyTopic(resource.Resource):
    """``/kafka-ws/v1/topics/<topic>``: the WebSocket, whatever the topic (426 without an upgrade)."""

    openapi = http_doc.TOPICS

    def __init__(self, ws_resource) -> None:
        super().__init__()
        self.ws_resource = ws_resource

    def getChild(self, path, request):  # noqa: N802
        if request.getHeader(b"upgrade") is None:
            return _UpgradeRequired()
        return self.ws_resource


class _UpgradeRequired(resource.Resource):
    isLeaf = True

    def render(self, request):
        if request.method not in (b"GET", b"HEAD"):
            return method_not_allowed(request, [b"GET"], "method_not_allowed")
        request.setResponseCode(426)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"upgrade", b"websocket")
        return b'{"error": "upgrade_required", "message": "this URL is a WebSocket"}\n'


class _Fallback(resource.Resource):
    """A path level whose unknown children the API answers (its JSON 404, in the API's shape)."""

    def __init__(self, api) -> None:
        super().__init__()
        self.api = api

    def getChild(self, path, request):  # noqa: N802
        return self.api

    def render(self, request):
        return self.api.render(request)


class AgentRequest(ConnectorRequest):
    """The agent's requests: every body is JSON, so Twisted's reading of a
    POST's ``Content-Type`` for form fields (through the email package, a
    fifth of a device post's CPU) is skipped; ``request.args`` holds the query only."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._parsePOSTFormSubmission = False


class Root(resource.Resource):
    openapi = http_doc.ROUTES  # every path without a child of its own goes to the API resource

    def __init__(self, api: ApiResource, status: StatusResource, ws_factory) -> None:
        super().__init__()
        self.api = api
        self.putChild(b"status", status)
        kafka = _Fallback(api)
        v1 = _Fallback(api)
        kafka.putChild(b"v1", v1)
        v1.putChild(b"ticket", api)
        v1.putChild(b"topics", _AnyTopic(WebSocketResource(ws_factory)))
        self.putChild(b"kafka-ws", kafka)
        # Open: the API's 401s tell which paths exist anyway, and no configured value is in it.
        openapi.mount(self, http_doc.TITLE, http_doc.DESCRIPTION, http_doc.SECURITY_SCHEMES)

    def getChild(self, path, request):  # noqa: N802
        return self.api


def reference_document() -> dict:
    """The OpenAPI document every IoT agent serves (its reference page)."""
    root = Root(ApiResource(None, None), StatusResource(None, http_doc.STATUS), None)
    return root.children[b"openapi.json"].document()
