"""The HTTP site on the WebSocket port: the WAMP endpoint and the resources
other modules add (/ticket, /denylist: transport/tickets.py; /metrics, /health,
/ready: transport/ops_http.py; /mailbox: transport/mailbox_http.py), and
/openapi.json, the OpenAPI document of what is mounted (relayrouter/openapi.py,
each resource's entry in transport/http_doc.py).

Request bodies
--------------
twisted.web reads a whole request body (into memory, or a temporary file
past 100 kB) before a resource sees it.  A resource that takes bodies of a
known bound says so with ``body_limit(segments, query) -> (limit, what, error) |
None`` (``segments``: the path segments after its own, ``query``: parsed
like ``request.args``); :class:`BoundedRequest` then checks the
``Content-Length`` as soon as the headers are in, and counts a chunked body
as it arrives, and refuses a larger one at once: 413, JSON ``{"error":
error, "message": ...}`` (``error`` is the resource's, default
``relayrouter.error.body_too_large``; a resource whose answers have another
shape gives a function of the message that returns the body instead),
``Connection: close``.  What the
client still sends is read and thrown away (a client told at once stops
sending), up to ``DISCARD_BYTES`` or ``DISCARD_SECONDS``, then the
connection is closed: closing at once could lose the answer to a TCP reset.

Methods
-------
A method the resource does not serve is a 405 with ``Allow`` and a JSON body
``{"error": "relayrouter.error.method_not_allowed", "message": ...}``, for any
method (:class:`JsonMethodsRequest`; twisted.web says 501 in HTML for
methods other than GET, HEAD and POST).  The connectors' sites use the same
request class with their own error slugs.
"""

import json
from urllib.parse import parse_qs

from autobahn.twisted.resource import WebSocketResource
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource, _computeAllowedMethods
from twisted.web.server import Request, Site

from ..proxies import client_host
from ..openapi import OpenApiResource, site_paths
from . import http_doc

log = Logger(namespace="relayrouter.http")

BODY_TOO_LARGE = "relayrouter.error.body_too_large"
DISCARD_BYTES = 4 * 1024 * 1024
DISCARD_SECONDS = 10.0


def _access_line(timestamp: str, request) -> str:
    # Twisted's combined format would log query strings, and ?ticket= is a credential;
    # so is the token segment of /mailbox/{name}/{token}.
    path = request.uri.split(b"?", 1)[0].decode("ascii", "replace")
    if path.startswith("/mailbox/") and path.count("/") >= 3:
        path = path.rsplit("/", 1)[0] + "/-"
    client = getattr(request.getClientAddress(), "host", "-")
    return f'{client} - - [{timestamp}] "{request.method.decode("ascii", "replace")} {path}" {request.code}'


class ForwardedRequest(Request):
    """``getClientAddress()`` is the client a listed reverse proxy names in
    ``X-Forwarded-For`` (``http.trusted_proxies``), else the TCP peer: what
    every resource, the failed-login limits and the access log see."""

    def getClientAddress(self):
        address = super().getClientAddress()
        proxies = getattr(getattr(self.channel, "site", None), "trusted_proxies", None)
        host = getattr(address, "host", None)
        if proxies is None or not proxies.networks or host is None:
            return address
        forwarded = self.requestHeaders.getRawHeaders(b"x-forwarded-for")
        if not forwarded:
            return address
        try:
            text = ",".join(h.decode("ascii") for h in forwarded)
        except UnicodeDecodeError:
            return address
        client = client_host(host, text, proxies.networks)
        if client == host:
            return address
        return (IPv6Address if ":" in client else IPv4Address)("TCP", client, 0)


class JsonMethodsRequest(ForwardedRequest):
    """A request whose resource does not serve its method gets 405 with
    ``Allow`` and a JSON body, whatever the method: twisted.web answers 501
    with an HTML page for methods other than GET, HEAD and POST, and fails
    (a 500) on HEAD where a resource serves no GET."""

    method_not_allowed = "relayrouter.error.method_not_allowed"  # the answers' "error"
    not_found = "relayrouter.error.not_found"

    def render(self, resrc):
        super().render(_MethodsServed(resrc))


class _MethodsServed:
    """A resource as a request renders it: an UnsupportedMethod becomes the 405 answer."""

    def __init__(self, resource) -> None:
        self.resource = resource

    def render(self, request):
        resource = self.resource
        if _websocket(resource) and request.method != b"GET":
            # Autobahn would answer 405 without Allow, in HTML (HEAD too: no GET to fake it with).
            return method_not_allowed(request, [b"GET"], request.method_not_allowed)
        try:
            if request.method == b"HEAD" and _serves_no_get(resource):
                raise UnsupportedMethod(_computeAllowedMethods(resource))
            return resource.render(request)
        except UnsupportedMethod as e:
            if request.method == b"HEAD" and b"GET" in e.allowedMethods:
                raise  # twisted.web answers HEAD as GET, without the body
            if not _served(e.allowedMethods):  # a container of other resources: nothing here
                return json_answer(request, 404, request.not_found, "no resource at this path")
            return method_not_allowed(request, e.allowedMethods, request.method_not_allowed)

    def __repr__(self) -> str:
        return repr(self.resource)


def _websocket(resource) -> bool:
    """A WebSocket URL: Autobahn's resource, or one that hands every request to it (``websocket``)."""
    return isinstance(resource, WebSocketResource) or isinstance(getattr(resource, "websocket", None),
                                                                 WebSocketResource)


def _serves_no_get(resource) -> bool:
    # Resource.render_HEAD calls render_GET: a resource that has none fails there.
    return (isinstance(resource, Resource) and type(resource).render is Resource.render
            and getattr(resource, "render_GET", None) is None)


def _served(allowed) -> list:
    """The methods in ``allowed`` (bytes or str) as sorted bytes; HEAD only with GET
    (twisted.web lists HEAD for every Resource, and answers it with render_GET)."""
    methods = {m if isinstance(m, bytes) else m.encode() for m in allowed}
    if b"GET" not in methods:
        methods.discard(b"HEAD")
    return sorted(methods)


def method_not_allowed(request, allowed, error: str) -> bytes:
    """405, ``Allow``, JSON ``{"error", "message"}`` naming the methods served."""
    allowed = _served(allowed)
    request.setHeader(b"allow", b", ".join(allowed))
    method = request.method.decode("ascii", "replace")[:20]
    names = " or ".join(m.decode("ascii") for m in allowed)
    return json_answer(request, 405, error, f"{method} is not allowed here; use {names}")


def json_answer(request, code: int, error: str, message: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps({"error": error, "message": message}).encode()


class JsonNotFound(Resource):
    """404 with a JSON body, where twisted.web's own answer is an HTML page."""

    isLeaf = True

    def __init__(self, message: str = "no resource at this path") -> None:
        super().__init__()
        self.message = message

    def render(self, request) -> bytes:
        return json_answer(request, 404, JsonMethodsRequest.not_found, self.message)


class BoundedRequest(JsonMethodsRequest):
    """A request whose body is refused while it arrives once it is larger
    than its resource's ``body_limit`` (see the module doc)."""

    _limit = None  # (bytes, what, error URI) of this request's resource, or None
    _received = 0
    _refused = False
    _discarded = 0
    _timer = None

    def gotLength(self, length):  # noqa: N802 - twisted.web's name
        self._limit = self._body_limit()
        if self._limit is not None and length is not None and length > self._limit[0]:
            # No "100 Continue" for a body we refuse: the answer is final.
            self.requestHeaders.removeHeader(b"expect")
            self._refuse(f"the body is {length} bytes")
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data):  # noqa: N802
        if self._refused:
            self._discarded += len(data)
            if self._discarded > DISCARD_BYTES:
                self._close(abort=True)
            return
        self._received += len(data)
        if self._limit is not None and self._received > self._limit[0]:
            self._refuse(f"the chunked body went past {self._limit[0]} bytes")
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):  # noqa: N802
        if self._refused:
            self._close(abort=False)  # the whole body came: nothing unread
            return
        super().requestReceived(command, path, version)

    def connectionLost(self, reason):  # noqa: N802
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        super().connectionLost(reason)

    def _body_limit(self):
        channel = self.channel
        limits = getattr(getattr(channel, "site", None), "body_limits", None)
        line = getattr(channel, "_path", None)  # the request line's target; self.uri comes later
        if not limits or not line:
            return None
        target, _, query = line.partition(b"?")
        segments = [s for s in target.split(b"/")[1:]]
        body_limit = limits.get(segments[0]) if segments else None
        if body_limit is None:
            return None
        try:
            return body_limit(segments[1:], parse_qs(query, keep_blank_values=True))
        except Exception:  # noqa: BLE001 - the resource answers such a request itself
            return None

    def _refuse(self, size: str) -> None:
        self._refused = True
        limit, what, error = self._limit
        message = f"{size}; {what} is {limit} bytes"
        shaped = error(message) if callable(error) else {"error": error or BODY_TOO_LARGE, "message": message}
        body = json.dumps(shaped).encode()
        channel = self.channel
        channel.transport.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
                                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        peer = getattr(self.getClientAddress(), "host", "-")
        log.info("HTTP {peer}: body refused (413): {message}", peer=peer, message=message)
        self._timer = channel.callLater(DISCARD_SECONDS, self._close, True)

    def _close(self, abort: bool) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        channel = self.channel
        if channel is None or channel.transport is None:
            return
        if abort:
            channel.transport.abortConnection()
        else:
            channel.transport.loseConnection()


def build_site(router, ws_factory, path: str, resources: dict | None = None, trusted_proxies=None) -> Site:
    root = Resource()
    parts = [p.encode() for p in path.split("/") if p]
    parent = root
    for part in parts[:-1]:
        child = Resource()
        parent.putChild(part, child)
        parent = child
    wamp = WebSocketResource(ws_factory)
    wamp.openapi = http_doc.WAMP
    parent.putChild(parts[-1] if parts else b"", wamp)
    for name, resource in (resources or {}).items():
        root.putChild(name, resource)
    root.putChild(b"openapi.json", OpenApiResource(lambda: http_doc.router_document(site_paths(root))))
    site = Site(root, logFormatter=_access_line)
    site.requestFactory = BoundedRequest
    site.trusted_proxies = trusted_proxies
    site.body_limits = {name: resource.body_limit for name, resource in (resources or {}).items()
                        if callable(getattr(resource, "body_limit", None))}
    site.noisy = False
    site.displayTracebacks = False
    return site
