"""HTTP endpoints on the WebSocket port for browsers and administrators.

``POST /ticket`` (``Authorization: Bearer <JWT>``) trades a JWT for a
one-time ticket::

    {"ticket": "rrt_...", "expires_in": 30, "realm": "realm1",
     "url": "wss://host/ws", "ticket_url": "wss://host/ws?ticket=rrt_..."}

The realm comes from ``?realm=`` or a JSON body ``{"realm": ...}``, else it is
the one realm with one-time tickets on.  ``GET / POST / DELETE /denylist``
administer the deny list with an admin JWT (see docs/reference/security.md).

Bodies are small JSON objects: one over :data:`MAX_BODY` bytes is refused
with 413 while it arrives, before it is read (``body_limit``, see
transport/http.py); /realms (relayrouter/service/tenancy.py) has the same bound.

Every answer is JSON.  Refusals: 401 (no or bad token), 403 (origin not
allowed, token revoked, not an admin, no such realm), 429 (too many failed
attempts from the address).  Browsers get CORS headers for allowed origins
and an answer to their OPTIONS preflight; other origins get 403.  Nothing
here logs a token or a ticket.
"""

import json
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import server
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource, _computeAllowedMethods

from ..auth.onetime import Grant, TooManyTickets
from ..auth.ratelimit import Refusal, address_of, claimed_authid
from ..core import errors
from ..core.auth import Accept
from ..core.procedures import ProcedureError
from ..httpinput import BadInput, arg, header, json_object, string_field
from . import http_doc
from .http import BODY_TOO_LARGE
from .origins import cors_headers

log = Logger(namespace="relayrouter.http")

# The largest body /ticket, /denylist and /realms read: their JSON objects are a
# few hundred bytes.  Larger ones get 413 before they are read.
MAX_BODY = 64 * 1024


class HttpRefusal(Exception):
    def __init__(self, code: int, error: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.error = error


class _JsonResource(Resource):
    """Origin check, CORS, bearer token, rate limit and JSON answers."""

    isLeaf = True
    methods = "OPTIONS"
    path_name = ""  # the resource's segment, for messages
    takes_path = 0  # how many segments below its own it reads (request.postpath); more is a 404

    def __init__(self, security) -> None:
        super().__init__()
        self.security = security

    def render(self, request):
        if len([s for s in request.postpath if s]) > self.takes_path:
            where = f"/{self.path_name}" if self.path_name else "here"
            return _json(request, 404, {"error": "relayrouter.error.not_found",
                                        "message": f"no resource below {where}"})
        if request.method == b"HEAD" and getattr(self, "render_GET", None) is None:
            raise UnsupportedMethod(_computeAllowedMethods(self))  # 405 (transport/http.py), not a 500
        return super().render(request)

    def body_limit(self, segments: list, query: dict) -> tuple:
        """Bodies over MAX_BODY are refused while they arrive (transport/http.py)."""
        return MAX_BODY, f"the limit of /{self.path_name}", None

    def render_OPTIONS(self, request) -> bytes:  # noqa: N802 - twisted.web's name
        if not self._origin_ok(request):
            return _json(request, 403, {"error": errors.NOT_AUTHORIZED, "message": "origin not allowed"})
        request.setResponseCode(204)
        return b""

    def _origin_ok(self, request) -> bool:
        origin = request.getHeader(b"origin")  # one that is not ASCII is no allowed origin: never an error
        origin = origin.decode("latin-1") if origin is not None else None
        if not self.security.origins.allows(origin):
            return False
        if origin is not None:
            cors_headers(request, origin, self.methods)
        return True

    def _serve(self, request, handler) -> Any:
        """Run ``handler(request)`` (may return a Deferred of a dict) and answer with JSON."""
        if not self._origin_ok(request):
            return _json(request, 403, {"error": errors.NOT_AUTHORIZED, "message": "origin not allowed"})
        d = defer.maybeDeferred(handler, request)
        d.addCallbacks(lambda body: _finish(request, 200, body), lambda f: self._refused(request, f))
        return server.NOT_DONE_YET

    def _refused(self, request, failure) -> None:
        if failure.check(HttpRefusal):
            e = failure.value
            _finish(request, e.code, {"error": e.error, "message": str(e)})
            return
        if failure.check(ProcedureError):
            _finish(request, 400, {"error": failure.value.uri, "message": str(failure.value)})
            return
        if failure.check(BadInput):
            _finish(request, failure.value.code, bad_input(failure.value))
            return
        log.failure("HTTP {path} failed", failure=failure, path=request.path.decode("ascii", "replace"))
        _finish(request, 500, {"error": errors.INTERNAL_ERROR, "message": "the router failed; see its log"})

    @defer.inlineCallbacks
    def _bearer_accept(self, request, realm: str):
        """The Accept for the request's bearer JWT on ``realm``, or an HttpRefusal."""
        token = _bearer(request)
        if token is None:
            request.setHeader(b"www-authenticate", b'Bearer realm="relayrouter"')
            raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, "send Authorization: Bearer <JWT>")
        decision = yield limited_token_check(self.security.limiter, request, token,
                                             lambda: self.security.check_jwt(realm, token))
        if self.security.denylist.match(decision.authid, decision.permissions) is not None:
            raise HttpRefusal(403, errors.NOT_AUTHORIZED, "this token has been revoked")
        return decision


@defer.inlineCallbacks
def limited_token_check(limiter, request, token: str, check, client=None):
    """The Accept for ``token`` (``check()``: a Deferred of Accept or Deny) under the
    failed-login limits: a valid token always; else HttpRefusal 429 over a limit, 401.
    ``client(request, peer)``: the client's peer string when a proxy forwards."""
    peer = _client(request)
    address = address_of(client(request, peer) if client is not None else peer)
    authid = claimed_authid(token)
    refusal = limiter.peek(address, authid)
    decision = yield check()
    outcome = limiter.settle(address, authid, refusal, decision)
    if isinstance(outcome, Refusal):
        raise HttpRefusal(429, errors.AUTHENTICATION_FAILED, outcome.message)
    if not isinstance(outcome, Accept):
        raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, getattr(decision, "message", "token refused"))
    return outcome


class TicketResource(_JsonResource):
    methods = "POST, OPTIONS"
    path_name = "ticket"
    openapi = http_doc.TICKET

    def __init__(self, security, ws_path: str) -> None:
        super().__init__(security)
        self.ws_path = ws_path

    def render_POST(self, request) -> Any:  # noqa: N802
        return self._serve(request, self._mint)

    @defer.inlineCallbacks
    def _mint(self, request):
        realm = self._realm(request)
        accept = yield self._bearer_accept(request, realm)
        vault = self.security.tickets_by_realm[realm]
        try:
            ticket = vault.mint(Grant(realm, accept.authid, accept.authrole, accept.permissions,
                                      accept.expires_at))
        except TooManyTickets as e:
            raise HttpRefusal(503, errors.UNAVAILABLE, str(e)) from None
        try:
            scope = yield vault.share(ticket)
        except Exception:  # said in the log by the cluster; the ticket was never handed out
            raise HttpRefusal(503, errors.UNAVAILABLE, "the cluster could not store the ticket; "
                              "try again shortly") from None
        url = self._url(request)
        request.setHeader(b"cache-control", b"no-store")
        return {"ticket": ticket, "expires_in": vault.lifetime, "realm": realm, "scope": scope,
                "url": url, "ticket_url": f"{url}?ticket={ticket}"}

    def _realm(self, request) -> str:
        realm = _arg(request, "realm") or string_field(_body(request), "realm")
        offering = self.security.tickets_by_realm
        if realm is None and len(offering) == 1:
            realm = next(iter(offering))
        if realm is None:
            raise HttpRefusal(403, errors.NO_SUCH_REALM, "name the realm: ?realm=NAME")
        if realm not in offering:
            raise HttpRefusal(403, errors.NO_SUCH_REALM, f"realm '{realm}' does not issue one-time tickets")
        return realm

    def _url(self, request) -> str:
        public = self.security.config.http.public_url
        if public:
            return public
        scheme = "wss" if request.isSecure() else "ws"
        host = (_header(request, b"host") or "localhost").strip()
        return f"{scheme}://{host}/{self.ws_path}"


class DenyListResource(_JsonResource):
    methods = "GET, POST, DELETE, OPTIONS"
    path_name = "denylist"
    openapi = http_doc.DENYLIST

    def render_GET(self, request) -> Any:  # noqa: N802
        return self._serve(request, lambda r: self._admin(r, lambda api, fields: api.list(fields)))

    def render_POST(self, request) -> Any:  # noqa: N802
        return self._serve(request, lambda r: self._admin(r, lambda api, fields: api.add(fields)))

    def render_DELETE(self, request) -> Any:  # noqa: N802
        return self._serve(request, lambda r: self._admin(r, lambda api, fields: api.remove(fields)))

    @defer.inlineCallbacks
    def _admin(self, request, operation):
        security = self.security
        realm = security.admin_realm()
        if realm is None:
            raise HttpRefusal(403, errors.NOT_AUTHORIZED, "no realm verifies admin tokens (revocation.admin_realm)")
        accept = yield self._bearer_accept(request, realm)
        if not security.denylist_api.admin.admits(accept.authrole, accept.permissions):
            raise HttpRefusal(403, errors.NOT_AUTHORIZED, "this token may not administer the deny list")
        fields = dict(_body(request))
        for name in ("claim", "value"):
            value = _arg(request, name)
            if value is not None:
                fields.setdefault(name, value)
        return operation(security.denylist_api, fields)


# ------------------------------------------------------------------ helpers

def bad_input(e: BadInput) -> dict:
    """The JSON answer to hostile or malformed input (httpinput.BadInput)."""
    error = BODY_TOO_LARGE if e.code == 413 else errors.INVALID_ARGUMENT
    return {"error": error, "message": e.message}


def _header(request, name: bytes) -> str | None:
    return header(request, name.decode("ascii"))


def _bearer(request) -> str | None:
    value = _header(request, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _arg(request, name: str) -> str | None:
    return arg(request, name)


def _body(request) -> dict:
    return json_object(request, MAX_BODY)


def _client(request) -> str:
    address = request.getClientAddress()
    host = getattr(address, "host", None)
    return f"tcp4:{host}:0" if host and ":" not in host else f"tcp6:{host}:0" if host else str(address)


def _json(request, code: int, body: dict) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode()


def _finish(request, code: int, body: dict) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.write(_json(request, code, body))
    request.finish()
