"""``/metrics``, ``/health`` and ``/ready`` on the WebSocket port's HTTP site.

Who sees what (``[metrics]``):

* anyone: ``GET /health`` -> ``{"status": "ok"}`` (the process and its
  reactor answer) and ``GET /ready`` -> 200 ``{"ready": true}`` or 503
  ``{"ready": false}``: enough for a load balancer or an orchestrator;
* a caller from a loopback address (unless ``loopback_open = false``, e.g.
  behind a reverse proxy on the same host) or one presenting the metrics
  token as ``Authorization: Bearer <token>``: also ``/metrics`` and the
  details (realms and their session counts, listeners, what is not ready).
  Realm names are a tenant list once realms are tenants: never for anyone.

A wrong token is a 401 on ``/metrics``; without a token configured, callers
that are not on loopback get 403 there, with a message saying how to allow them.
"""

import hmac
import ipaddress
import json
import time

from twisted.web.resource import Resource

from .. import __version__
from . import http_doc


class Access:
    def __init__(self, config) -> None:
        self.config = config

    def privileged(self, request) -> bool:
        token = self.config.token
        # Bytes, compared as bytes: a header that is not UTF-8 is a wrong token, not a crash.
        header = request.getHeader(b"authorization") or b""
        if token is not None and header.startswith(b"Bearer "):
            if hmac.compare_digest(header[len(b"Bearer "):].strip(), token.encode()):
                return True
        return self.config.loopback_open and _loopback(request)

    def refusal(self, request) -> tuple[int, str] | None:
        """Why ``request`` may not read /metrics, or None."""
        if self.privileged(request):
            return None
        if request.getHeader(b"authorization"):
            return 401, "the metrics token is wrong"
        if self.config.token is None:
            return 403, "metrics are open to loopback callers only; set [metrics] secret_env or secret_file " \
                        "to allow others with a bearer token"
        return 401, "give the metrics token as 'Authorization: Bearer <token>'"


def _loopback(request) -> bool:
    host = getattr(request.getClientAddress(), "host", None)
    try:
        return ipaddress.ip_address(host).is_loopback
    except (TypeError, ValueError):
        return False


def _json(request, code: int, body: dict) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, sort_keys=True).encode()


class MetricsResource(Resource):
    isLeaf = True
    openapi = http_doc.METRICS

    def __init__(self, metrics, access: Access) -> None:
        super().__init__()
        self.metrics = metrics
        self.access = access

    def render_GET(self, request) -> bytes:
        refusal = self.access.refusal(request)
        if refusal is not None:
            code, message = refusal
            return _json(request, code, {"error": "unauthorized" if code == 401 else "forbidden",
                                         "message": message})
        request.setHeader(b"content-type", self.metrics.content_type.encode())
        request.setHeader(b"cache-control", b"no-store")
        return self.metrics.text()


class HealthResource(Resource):
    """The process and its reactor answer; details for the privileged."""

    isLeaf = True
    openapi = http_doc.HEALTH

    def __init__(self, service, access: Access) -> None:
        super().__init__()
        self.service = service
        self.access = access
        self.started = time.time()

    def render_GET(self, request) -> bytes:
        body: dict = {"status": "ok"}
        if self.access.privileged(request):
            router = self.service.router
            body.update(version=__version__, uptime=round(time.time() - self.started, 1),
                        realms={name: len(realm.sessions) for name, realm in router.realms.items()})
        return _json(request, 200, body)


class ReadyResource(Resource):
    """Every listener bound, the store writable, JWKS keys loaded, not shutting down."""

    isLeaf = True
    openapi = http_doc.READY

    def __init__(self, service, access: Access) -> None:
        super().__init__()
        self.service = service
        self.access = access

    def render_GET(self, request) -> bytes:
        problems = not_ready(self.service)
        body: dict = {"ready": not problems}
        if self.access.privileged(request):
            body["problems"] = problems
        return _json(request, 503 if problems else 200, body)


def not_ready(service) -> list[str]:
    """What keeps the router from being ready, in words an operator can act on."""
    problems = []
    if service._stopping:
        problems.append("shutting down")
    elif not service.running:
        problems.append("starting")
    for listener in service.listeners:
        if listener.port is None:
            problems.append(f"listener {listener.listener.endpoint} is not bound")
    writer = getattr(service.durable.store, "writer", None)
    if writer is not None and not writer.alive():
        problems.append("the durable store's writer is not running (see the log)")
    cluster = getattr(service, "cluster", None)
    if cluster is not None:
        problems.extend(cluster.problems())
    for fetched in service.security.fetched_keys:
        if not fetched.keys:
            error = getattr(fetched, "last_error", None)
            problems.append("JWKS keys are not loaded yet" + (f" (last error: {error})" if error else ""))
    return problems


def resources(service, metrics, config) -> dict:
    access = Access(config)
    children = {b"health": HealthResource(service, access), b"ready": ReadyResource(service, access)}
    if config.enabled:
        children[b"metrics"] = MetricsResource(metrics, access)
    return children
