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

import jwt as pyjwt
from autobahn.twisted.resource import WebSocketResource
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource, server

from relayrouter import httpinput
from relayrouter.transport.http import method_not_allowed

from connectors.common import HttpError, JsonResource, StatusResource, json_error, json_response, read_body

from .history import BadQuery
from .normalize import Invalid
from .registry import RegistryError

log = Logger()

MAX_BODY = 256_000  # dojot's express.parsing.limit
MAX_MESSAGES = 1000  # per create-many request


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
        if scheme.lower() != "bearer" or not token.strip():
            raise HttpError(401, "send Authorization: Bearer <JWT>", headers={"WWW-Authenticate": "Bearer"})
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


def route(method: str, pattern: str):
    def add(fn):
        _ROUTES.append((method, re.compile(pattern + r"/?$"), fn))
        return fn
    return add


class ApiResource(JsonResource):
    """Every JSON route, by method and path."""

    def __init__(self, agent, jwt: ApiJwt) -> None:
        super().__init__()
        self.agent = agent
        self.jwt = jwt

    def render(self, request):
        path = request.path.decode("utf8", "replace")
        method = request.method.decode("ascii", "replace")
        allowed = []
        for route_method, pattern, fn in _ROUTES:
            found = pattern.match(path)
            if found is None:
                continue
            if route_method == method:
                d = defer.maybeDeferred(fn, self, request, **found.groupdict())
                d.addCallbacks(_answer, self._refuse, (request,), None, (request,), None)
                d.addErrback(log.failure, "answering {path}", path=path)
                return server.NOT_DONE_YET
            allowed.append(route_method)
        if allowed:
            return method_not_allowed(request, allowed, "method_not_allowed")
        return json_error(request, 404, f"no resource at {path}")

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


def _answer(value, request) -> None:
    code, body = value if isinstance(value, tuple) else (200, value)
    if request.finished or getattr(request, "_disconnected", False):
        return
    if code == 204:
        request.setResponseCode(204)
        request.finish()
        return
    request.write(json_response(request, body, code))
    request.finish()


def _registry_errors(fn):
    @defer.inlineCallbacks
    def wrapped(self, request, **kw):
        try:
            result = yield fn(self, request, **kw)
        except RegistryError as e:
            raise HttpError(e.status, e.message, e.error) from None
        except (BadQuery, Invalid) as e:
            raise HttpError(400, str(e), "invalid_request") from None
        return result
    return wrapped


# ------------------------------------------------------------ HTTP agent

def device_of(api: ApiResource, request) -> dict:
    """The posting device, by client certificate, basic auth or device token; 401/403 otherwise."""
    agent = api.agent
    cn = _certificate_cn(request)
    if cn is not None:
        tenant, sep, device_id = cn.partition(":")
        device = agent.devices.get(tenant, device_id) if sep else None
        return _known(agent, device, f"certificate CN {cn!r}")
    header = (request.getHeader(b"authorization") or b"").decode("latin-1").strip()
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            username, _, secret = base64.b64decode(value.strip(), validate=True).decode("utf8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise HttpError(401, "malformed basic credentials") from None
    elif scheme.lower() == "bearer" and "@" in value and ":" in value:
        username, _, secret = value.strip().partition(":")
    else:
        agent.counters["refused_no_credentials"] += 1
        raise HttpError(401, "a device authenticates with its client certificate, basic auth "
                        "(tenant@deviceid) or Authorization: Bearer tenant@deviceid:<secret>",
                        headers={"WWW-Authenticate": 'Basic realm="iot-agent"'})
    tenant, at, device_id = username.partition("@")
    if not at:
        agent.counters["refused_bad_credentials"] += 1
        raise HttpError(401, "the device username is tenant@deviceid")
    device = agent.devices.get(tenant, device_id)
    if device is None or not agent.tenants.served(tenant):
        return _known(agent, None, f"device {username!r}")
    if agent.devices.check_secret(tenant, device_id, secret) is None:
        agent.counters["refused_bad_credentials"] += 1
        raise HttpError(401, "wrong device credentials", headers={"WWW-Authenticate": 'Basic realm="iot-agent"'})
    return device


def _known(agent, device, who: str) -> dict:
    if device is None or not agent.tenants.served(device["tenant"]):
        agent.counters["refused_unknown_device"] += 1
        raise HttpError(403, f"{who} is not a registered device of a served tenant")
    return device


def _certificate_cn(request) -> str | None:
    transport = getattr(request.channel, "transport", None)
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    certificate = get()
    if certificate is None:
        return None
    return certificate.get_subject().commonName


@route("POST", r"/http-agent/v1/incoming-messages")
def incoming(api, request):
    device = device_of(api, request)
    return _ingest(api, device, [api.json_body(request)])


@route("POST", r"/http-agent/v1/incoming-messages/create-many")
def incoming_many(api, request):
    device = device_of(api, request)
    body = api.json_body(request)
    if not isinstance(body, list) or not body:
        raise HttpError(400, "create-many takes a non-empty JSON array of messages")
    if len(body) > MAX_MESSAGES:
        raise HttpError(413, f"at most {MAX_MESSAGES} messages per request, {len(body)} given")
    return _ingest(api, device, body)


def _ingest(api, device, bodies):
    try:
        d = api.agent.ingest.accept(device, bodies)
    except Invalid as e:
        raise HttpError(400, str(e), "invalid_message") from None
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


def _page_args(api, request) -> dict:
    return {name: api.arg(request, name) for name in ("dateFrom", "dateTo", "limit", "page", "order")}


@route("GET", r"/tss/v1/devices/(?P<device_id>[^/]+)/data")
@_registry_errors
def device_data(api, request, device_id):
    return api.agent.page_history(api.tenant(request), device_id, None, _path(request),
                                  **_page_args(api, request))


@route("GET", r"/tss/v1/devices/(?P<device_id>[^/]+)/attrs/(?P<attr>[^/]+)/data")
@_registry_errors
def attr_data(api, request, device_id, attr):
    return api.agent.page_history(api.tenant(request), device_id, attr, _path(request),
                                  **_page_args(api, request))


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
        request.setResponseCode(426)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"upgrade", b"websocket")
        return b'{"error": "upgrade_required", "message": "this URL is a WebSocket"}\n'


class Root(resource.Resource):
    def __init__(self, api: ApiResource, status: StatusResource, ws_factory) -> None:
        super().__init__()
        self.api = api
        self.putChild(b"status", status)
        kafka = resource.Resource()
        v1 = resource.Resource()
        kafka.putChild(b"v1", v1)
        v1.putChild(b"ticket", api)
        v1.putChild(b"topics", _AnyTopic(WebSocketResource(ws_factory)))
        self.putChild(b"kafka-ws", kafka)

    def getChild(self, path, request):  # noqa: N802
        return self.api
