"""HTTP on either side of the pair: a local REST service called for the other peer,
and a local port whose requests go to the other peer's REST API.

Both directions speak the request/response values of :mod:`relayrouter.rest`.
Neither ever hangs: the local service gets ``timeout`` seconds (then 504), a
service that cannot be reached is a 502 with the reason, and a call to the
other peer that the router refuses becomes the status that says why (503 for
a peer that is away or a router not connected, 504 for a timeout, 502 else).
"""

from urllib.parse import urlencode

import treq
from twisted.internet import defer
from twisted.internet.error import ConnectError, ConnectionRefusedError, DNSLookupError
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.client import HTTPConnectionPool
from twisted.web.http_headers import Headers

from relayrouter.api import httpinput, rest

log = Logger(namespace="pairing-agent")

PEER_ABSENT = "relayrouter.error.peer_absent"
HTTP_STATUS_OF_ERROR = {PEER_ABSENT: 503, "wamp.error.no_such_procedure": 503, "wamp.error.timeout": 504,
                        "wamp.error.canceled": 502, "wamp.error.not_authorized": 403,
                        "wamp.error.invalid_argument": 400}
REPLACED = frozenset({"server", "date"})
REASONS = {400: "Bad Request", 403: "Forbidden", 413: "Payload Too Large", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


class LocalService:
    """Calls the REST service beside this peer with requests from the other peer."""

    def __init__(self, base_url: str, timeout: float, max_body: int, clock=None) -> None:
        if clock is None:
            from twisted.internet import reactor as clock
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_body = max_body
        self.clock = clock
        # Kept-alive connections for as many requests as the other peer has in flight
        # (Twisted's default keeps two, and opens a connection for every other request).
        self.pool = HTTPConnectionPool(clock, persistent=True)
        self.pool.maxPersistentPerHost = 64

    @defer.inlineCallbacks
    def __call__(self, value) -> defer.Deferred:
        req = rest.request(value)  # RestError: the caller sent nonsense; answered as an ERROR
        url = self.base_url + req["path"]
        if req["query"]:
            url += "?" + urlencode([tuple(pair) for pair in req["query"]])
        headers = Headers()
        for name, header in req["headers"]:
            headers.addRawHeader(name, header)
        body = rest.body_bytes(req["body"], req["content_type"])
        if req["content_type"]:
            headers.setRawHeaders("Content-Type", [req["content_type"]])
        started = self.clock.seconds()
        try:
            response = yield treq.request(req["method"], url, headers=headers, data=body or None,
                                          timeout=self.timeout, allow_redirects=False, pool=self.pool)
            raw = yield treq.content(response)
        except (ConnectionRefusedError, ConnectError, DNSLookupError) as e:
            return rest.error_response(502, "Bad Gateway", f"the local service at {self.base_url} cannot be "
                                       f"reached ({e.__class__.__name__})")
        except Exception as e:  # the request was sent and no answer came
            if self.clock.seconds() - started >= self.timeout * 0.99:
                return rest.error_response(504, "Gateway Timeout", f"the local service at {self.base_url} "
                                           f"did not answer within {self.timeout:g} s")
            return rest.error_response(502, "Bad Gateway", f"the local service at {self.base_url} failed "
                                       f"to answer ({e.__class__.__name__})")
        return self._response(response, raw)

    def _response(self, response, raw: bytes) -> dict:
        if len(raw) > self.max_body:
            return rest.error_response(502, "Bad Gateway", f"the local service answered {len(raw)} bytes; "
                                       f"the most the pair carries is {self.max_body}")
        encoding = response.headers.getRawHeaders("content-encoding", [None])[0]
        try:
            raw = rest.decoded(raw, encoding)
        except rest.RestError as e:
            return rest.error_response(502, "Bad Gateway", f"the local service's answer: {e}")
        content_type = response.headers.getRawHeaders("content-type", [None])[0]
        headers = [[name.decode("latin-1"), v.decode("latin-1")]
                   for name, values in response.headers.getAllRawHeaders() for v in values]
        return {"status": response.code, "reason": response.phrase.decode("latin-1", "replace") or None,
                "headers": rest.forwarded_headers(headers), "content_type": content_type,
                "body": rest.body_value(raw, content_type)}


class PeerProxy(resource.Resource):
    """The local port: every request, whatever its path, goes to the other peer's REST API."""

    isLeaf = True

    def __init__(self, call_peer, max_body: int) -> None:
        super().__init__()
        self.call_peer = call_peer  # request value -> Deferred[response value]
        self.max_body = max_body

    def render(self, request):
        d = defer.maybeDeferred(self._forward, request)
        d.addCallback(self._write, request)
        d.addErrback(self._failed, request)
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return server.NOT_DONE_YET

    def _forward(self, request):
        length = httpinput.carried_header(request, "Content-Length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return rest.error_response(413, "Payload Too Large", f"the body is over {self.max_body} bytes")
        raw = request.content.read(self.max_body + 1)
        if len(raw) > self.max_body:
            return rest.error_response(413, "Payload Too Large", f"the body is over {self.max_body} bytes")
        try:
            raw = rest.decoded(raw, httpinput.carried_header(request, "Content-Encoding"))
        except rest.RestError as e:
            return rest.error_response(400, "Bad Request", str(e))
        content_type = httpinput.carried_header(request, "Content-Type")
        path = request.uri.decode("latin-1").split("?", 1)[0]
        query = [[k.decode("latin-1"), v.decode("latin-1")] for k, vs in request.args.items() for v in vs]
        headers = [[name.decode("latin-1"), v.decode("latin-1")]
                   for name, values in request.requestHeaders.getAllRawHeaders() for v in values]
        return self.call_peer({"method": request.method.decode("ascii"), "path": path, "query": query,
                               "headers": headers, "content_type": content_type,
                               "body": rest.body_value(raw, content_type)})

    def _write(self, value, request) -> None:
        if request.finished or request._disconnected:
            return
        try:
            resp = rest.response(value)
        except rest.RestError as e:
            resp = rest.error_response(502, "Bad Gateway", f"the other peer's answer: {e}")
        request.setResponseCode(resp["status"], (resp["reason"] or "").encode("latin-1", "replace") or None)
        for name, header in resp["headers"]:
            if name.lower() in REPLACED:  # twisted.web writes its own: the service's take their place
                request.responseHeaders.setRawHeaders(name, [header])
            else:
                request.responseHeaders.addRawHeader(name, header)
        body = rest.body_bytes(resp["body"], resp["content_type"])
        if resp["content_type"]:
            request.setHeader("content-type", resp["content_type"])
        request.setHeader("content-length", str(len(body)))
        if request.method != b"HEAD":
            request.write(body)
        request.finish()

    def _failed(self, failure, request) -> None:
        if failure.check(defer.CancelledError):
            return
        status, message = status_of(failure.value)
        if status == 500:
            log.failure("pairing-agent: forwarding {path} failed", failure, path=request.path)
        self._write(rest.error_response(status, REASONS.get(status, "Internal Server Error"), message), request)


def status_of(error) -> tuple[int, str]:
    """The HTTP status and message for why a call to the other peer failed."""
    uri = getattr(error, "error", None)
    if uri is not None:
        args = getattr(error, "args", ()) or ()
        return HTTP_STATUS_OF_ERROR.get(uri, 502), f"{uri}: {args[0] if args else ''}".rstrip(": ")
    if isinstance(error, rest.RestError):
        return 400, str(error)
    if isinstance(error, NotConnected):
        return 503, str(error)
    return 500, f"{error.__class__.__name__}: {error}"


class NotConnected(Exception):
    """The agent has no session to the router right now."""
