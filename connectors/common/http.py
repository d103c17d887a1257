"""The connector's local HTTP side: JSON in, JSON out, one way to say no.

Every answer is JSON.  Errors are ``{"error": "<slug>", "message": "<what to
do about it>"}`` with the status that fits (:func:`json_error`); a resource
raises :class:`HttpError` (or returns a Deferred that fails with one) and
:class:`JsonResource` renders it.  Unknown paths get a JSON 404 and wrong
methods a JSON 405 with ``Allow`` (:class:`ConnectorRequest`, the router's
answer with our slug, for every resource), never twisted.web's HTML pages.  What a
resource reads it reads with :mod:`relayrouter.httpinput` (bounded JSON,
UTF-8 headers and parameters, numbers in range); its ``BadInput`` is
answered like an HttpError, with its own status (400, 413, 415).
"""

import json

from twisted.application import service as service_module
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.web import resource, server

from relayrouter.api import JsonMethodsRequest, httpinput, method_not_allowed

log = Logger()

SLUGS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
         429: "too_many_requests", 500: "internal_error", 502: "bad_gateway", 503: "unavailable",
         507: "insufficient_storage"}


class HttpError(Exception):
    def __init__(self, code: int, message: str, error: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.error = error or SLUGS.get(code, "error")
        self.headers = headers or {}


def json_response(request, body, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(body, sort_keys=True).encode() + b"\n"


def json_error(request, code: int, message: str, error: str | None = None) -> bytes:
    """``{"error": ..., "message": ...}`` with status ``code``."""
    return json_response(request, {"error": error or SLUGS.get(code, "error"), "message": message}, code)


class JsonResource(resource.Resource):
    """A leaf whose ``render_<METHOD>`` return a JSON-able value, a
    ``(code, value)`` pair or a Deferred of either; they raise HttpError to refuse.
    A path below the resource's own is a 404 unless it reads one (``takes_path``)."""

    isLeaf = True
    takes_path: int | None = 0  # how many segments below its own it reads (postpath); None: any number

    def render(self, request):
        if self.takes_path is not None and len([s for s in request.postpath if s]) > self.takes_path:
            return NotFound().render(request)
        method = request.method.decode("ascii", "replace")
        # HEAD is GET's (twisted.web's Resource.render_HEAD fails where there is no GET).
        handler = getattr(self, "render_GET" if method == "HEAD" else f"render_{method}", None)
        if handler is None:
            allowed = [m[len("render_"):] for m in dir(self) if m.startswith("render_")]
            allowed += ["HEAD"] if "GET" in allowed else []
            return method_not_allowed(request, allowed, SLUGS[405])
        d = defer.maybeDeferred(handler, request)
        d.addCallbacks(self._answer, self._refuse, (request,), None, (request,), None)
        d.addErrback(log.failure, "answering {uri}", uri=request.uri)
        return server.NOT_DONE_YET

    @staticmethod
    def _answer(value, request) -> None:
        code, body = value if isinstance(value, tuple) else (200, value)
        _finish(request, json_response(request, body, code))

    @staticmethod
    def _refuse(failure, request) -> None:
        if failure.check(HttpError):
            e = failure.value
            for name, value in e.headers.items():
                request.setHeader(name.encode(), str(value).encode())
            _finish(request, json_error(request, e.code, e.message, e.error))
            return
        if failure.check(httpinput.BadInput):
            _finish(request, json_error(request, failure.value.code, failure.value.message))
            return
        log.failure("unexpected error answering {method} {path}", failure,
                    method=request.method.decode("ascii", "replace"), path=request.path.decode("ascii", "replace"))
        _finish(request, json_error(request, 500, "internal error; the connector's log has the details"))


def _finish(request, body: bytes) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.write(body)
    request.finish()


class JsonRoot(resource.Resource):
    """A container that answers unknown paths with a JSON 404."""

    def getChild(self, path, request):
        return NotFound()

    def render(self, request):
        return NotFound().render(request)


class TokenGuard(resource.Resource):
    """Wraps a root: every request needs ``Authorization: Bearer <token>``
    (an :class:`~connectors.common.api_token.ApiToken`), else a JSON 401."""

    def __init__(self, root, token, realm: str) -> None:
        super().__init__()
        self.root = root
        self.token = token
        self.challenge = f'Bearer realm="{realm}"'.encode()
        self.isLeaf = root.isLeaf  # a leaf is guarded in render(), a tree in getChildWithDefault()

    def getChildWithDefault(self, path, request):
        if not self.token.admits(request.getHeader(b"authorization")):
            return Unauthorized(self.challenge)
        return self.root.getChildWithDefault(path, request)

    def render(self, request):
        if not self.token.admits(request.getHeader(b"authorization")):
            return Unauthorized(self.challenge).render(request)
        return self.root.render(request)


class Unauthorized(resource.Resource):
    isLeaf = True

    def __init__(self, challenge: bytes) -> None:
        super().__init__()
        self.challenge = challenge

    def render(self, request):
        request.setHeader(b"www-authenticate", self.challenge)
        return json_error(request, 401, "send Authorization: Bearer <the local API token> (see --api-token-file)")


class NotFound(resource.Resource):
    isLeaf = True

    def render(self, request):
        return json_error(request, 404, f"no resource at {request.path.decode('ascii', 'replace')}")


class StatusResource(JsonResource):
    """``GET /status``: whatever ``describe()`` returns, as JSON (``document``: its OpenAPI
    path item, relayrouter.api.openapi)."""

    def __init__(self, describe, document: dict | None = None) -> None:
        super().__init__()
        self._describe = describe
        if document is not None:
            self.openapi = document

    def render_GET(self, request):
        return self._describe()


# The request body (413 past ``limit`` bytes), and the body as JSON bounded in
# size and nesting (400 naming the limit): relayrouter.httpinput, the router's own.
read_body = httpinput.read_body
json_body = httpinput.json_body


class ConnectorRequest(JsonMethodsRequest):
    """A method a resource does not serve: 405, ``Allow``, JSON (the router's, with our slug)."""

    method_not_allowed = SLUGS[405]
    not_found = SLUGS[404]


class HttpService(service_module.Service):
    """Serves ``root`` on a Twisted endpoint string (``tcp:8081:interface=127.0.0.1``)
    and logs the address it got (so ``tcp:0`` can be found)."""

    log = Logger()

    def __init__(self, description: str, root, name: str = "connector", reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.description = description
        self.reactor = reactor
        self.site = server.Site(root)
        self.site.requestFactory = ConnectorRequest
        self.site.log = lambda request: None  # no access log: agents post often, the status says enough
        self.factory = self.site  # what listens: the site, or a protocol in front of it
        self.name_for_log = name
        self.port = None
        self.listening = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        endpoint = endpoints.serverFromString(self.reactor, self.description)
        d = endpoint.listen(self.factory)
        d.addCallbacks(self._listening, self._failed)

    def _listening(self, port) -> None:
        self.port = port
        host = port.getHost()
        self.log.info("{name} listening: http://{host}:{port}/", name=self.name_for_log,
                      host=getattr(host, "host", host), port=getattr(host, "port", ""))
        self.listening.callback(port)

    def _failed(self, failure) -> None:
        self.log.failure("{name}: cannot listen on {description}", failure, name=self.name_for_log,
                         description=self.description)
        self.listening.errback(failure)
        from twisted.internet import reactor as global_reactor

        if self.reactor is global_reactor and global_reactor.running:
            global_reactor.stop()

    def stopService(self):
        super().stopService()
        if self.port is not None:
            return defer.maybeDeferred(self.port.stopListening)
        return None
