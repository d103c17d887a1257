"""The seed's HTTP API on the router's HTTP site.

``POST /{prefix}/{topic}`` with ``Authorization: <JWT>`` (``Bearer`` optional)
answers ``{"uri": "ws(s)://host/{prefix}/{topic}?code=..."}``; a GET upgrade
on that URI is the raw WebSocket (raw.py).  ``/bids/deny`` and
``/bids/allow`` (scope ``relay:admin``) administer booking ids on the
router's deny list; ``GET /status`` (scope ``relay:stats``) reports the
raw connections.  Answers are JSON ``{"error": ..., "message": ...}`` on
refusal (401 bad token, 400 bad request or missing booking id, 403 denied
booking id or missing scope, 404 unknown path).
"""

from typing import Any

from twisted.internet import defer
from twisted.web import server
from twisted.web.resource import Resource

from ..core import errors
from ..transport import http_doc
from ..transport.http import JsonNotFound
from ..transport.tickets import HttpRefusal, _arg, _header, _JsonResource, _json, limited_token_check

NO_CONTENT = object()  # a handler's answer for 204


class _RelayResource(_JsonResource):
    def __init__(self, relay) -> None:
        super().__init__(relay.security)
        self.relay = relay

    def _serve(self, request, handler) -> Any:
        if not self._origin_ok(request):
            return _json(request, 403, {"error": errors.NOT_AUTHORIZED, "message": "origin not allowed"})
        d = defer.maybeDeferred(handler, request)
        d.addCallbacks(lambda body: _answer(request, body), lambda f: self._refused(request, f))
        return server.NOT_DONE_YET

    @defer.inlineCallbacks
    def _claims(self, request) -> Any:
        """The verified claims of the request's token (``Authorization: <JWT>`` or ``Bearer <JWT>``)."""
        token = _token(request)
        if token is None:
            raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, "send the token as Authorization: <JWT>")
        decision = yield limited_token_check(self.security.limiter, request, token,
                                             lambda: self.relay.check_token(token), self.relay.client_peer)
        return decision

    @defer.inlineCallbacks
    def _scoped(self, request, scope: str):
        accept = yield self._claims(request)
        if scope not in _scopes(accept.permissions):
            raise HttpRefusal(403, errors.NOT_AUTHORIZED, f"the token lacks the '{scope}' scope")
        return accept


class PrefixResource(Resource):
    """``/{prefix}``: each child is a topic."""

    openapi = http_doc.RELAY_TOPIC
    openapi_segment = "{prefix}"  # configured ([relay] prefixes): a parameter in the document

    def __init__(self, relay, prefix: str) -> None:
        super().__init__()
        self.relay = relay
        self.prefix = prefix

    def getChild(self, path: bytes, request):  # noqa: N802 - twisted.web's name
        topic = path.decode("utf8", "replace")
        if not topic or request.postpath:
            return JsonNotFound("no such topic: use /{prefix}/{topic}")
        return TopicResource(self.relay, self.prefix, topic)


class TopicResource(_RelayResource):
    """``POST`` for a code; ``GET`` with an upgrade for the raw WebSocket."""

    methods = "GET, POST, OPTIONS"

    def __init__(self, relay, prefix: str, topic: str) -> None:
        super().__init__(relay)
        self.prefix = prefix
        self.topic = topic

    def render_POST(self, request) -> Any:  # noqa: N802
        return self._serve(request, self._access)

    def render_GET(self, request) -> Any:  # noqa: N802
        if (_header(request, b"upgrade") or "").lower() == "websocket":
            return self.relay.ws_resource.render(request)
        return _json(request, 400, {"error": errors.INVALID_ARGUMENT,
                                    "message": "POST here with Authorization: <JWT> for a WebSocket URL"})

    @defer.inlineCallbacks
    def _access(self, request):
        accept = yield self._claims(request)
        code = self.relay.mint_code(self.prefix, self.topic, accept)  # raises HttpRefusal
        request.setHeader(b"cache-control", b"no-store")
        return {"uri": f"{self.relay.base_url(request)}/{self.prefix}/{self.topic}?code={code}"}


class BidsResource(Resource):
    def __init__(self, relay) -> None:
        super().__init__()
        self.putChild(b"deny", BidListResource(relay, deny=True))
        self.putChild(b"allow", BidListResource(relay, deny=False))
        self.children[b"deny"].openapi = http_doc.RELAY_BIDS_DENY
        self.children[b"allow"].openapi = http_doc.RELAY_BIDS_ALLOW


class BidListResource(_RelayResource):
    """``/bids/deny`` and ``/bids/allow``: GET lists, POST ``?bid=&exp=`` changes."""

    methods = "GET, POST, OPTIONS"

    def __init__(self, relay, deny: bool) -> None:
        super().__init__(relay)
        self.deny = deny

    def render_GET(self, request) -> Any:  # noqa: N802
        return self._serve(request, self._list)

    def render_POST(self, request) -> Any:  # noqa: N802
        return self._serve(request, self._change)

    @defer.inlineCallbacks
    def _list(self, request):
        yield self._scoped(request, self.relay.config.admin_scope)
        bids = self.relay.denied_bids() if self.deny else self.relay.allowed_bids()
        return {"booking_ids": bids}

    @defer.inlineCallbacks
    def _change(self, request):
        yield self._scoped(request, self.relay.config.admin_scope)
        bid, exp = _bid_and_exp(request)
        if exp < self.relay.clock.seconds():  # the seed: 400, "missing or in the past"
            raise HttpRefusal(400, errors.INVALID_ARGUMENT,
                              f"booking expiry time (exp) {exp} is in the past")
        if self.deny:
            self.relay.deny_bid(bid, exp)
        else:
            self.relay.allow_bid(bid, exp)
        return NO_CONTENT


class StatusResource(_RelayResource):
    methods = "GET, OPTIONS"
    openapi = http_doc.RELAY_STATUS

    def render_GET(self, request) -> Any:  # noqa: N802
        return self._serve(request, self._status)

    @defer.inlineCallbacks
    def _status(self, request):
        yield self._scoped(request, self.relay.config.stats_scope)
        return self.relay.status_reports()


# ------------------------------------------------------------------ helpers

def _token(request) -> str | None:
    value = (_header(request, b"authorization") or "").strip()
    scheme, _, rest = value.partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else value
    return token or None


def _bid_and_exp(request) -> tuple[str, int]:
    """``?bid=...&exp=...``: both required, exp a whole number; else 422 naming the
    parameter (the seed's API validates them before its handler, with 422)."""
    bid = _arg(request, "bid")
    if not bid:
        raise HttpRefusal(422, errors.INVALID_ARGUMENT, "bid (booking id) in query is required: ?bid=...&exp=...")
    raw = _arg(request, "exp")
    if not raw:
        raise HttpRefusal(422, errors.INVALID_ARGUMENT, "exp (booking expiry time) in query is required")
    try:
        exp = int(raw)
    except ValueError:
        exp = None
    if exp is None or not -2**63 <= exp < 2**63:  # the seed's exp is an int64
        raise HttpRefusal(422, errors.INVALID_ARGUMENT,
                          "exp (booking expiry time) must be a whole number of seconds since the epoch")
    return bid, exp


def _scopes(claims) -> tuple:
    scopes = (claims or {}).get("scopes")
    if isinstance(scopes, str):
        return tuple(scopes.split())
    return tuple(s for s in scopes or () if isinstance(s, str)) if isinstance(scopes, (list, tuple)) else ()


def _answer(request, body) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    if body is NO_CONTENT:
        request.setResponseCode(204)
        request.finish()
        return
    import json

    request.setResponseCode(200)
    request.setHeader(b"content-type", b"application/json")
    request.write(json.dumps(body).encode())
    request.finish()
