"""The HTTP API: every endpoint needs a bearer JWT with its scope.

| endpoint | scope | answer |
|---|---|---|
| ``GET /search?q=&field.op=&order=&limit=&cursor=`` | search | ``{"records": [...], "next_cursor"}`` |
| ``GET /records/<id>`` | search | one record, 404 if none |
| ``GET /analytics?by=&bucket=&from=&to=&field.op=`` | search | ``{"buckets": [{"start", "value", "count"}], ...}`` |
| ``GET /reports/<name>?from=&to=&q=&field.op=`` | search | ``{"name", "groups": [{"start"?, <by>..., <metrics>}]}`` |
| ``GET /feed?q=&field.op=&after=`` | search | Server-Sent Events, one per record committed (``feed.py``) |
| ``GET /quarantine?reason=&limit=&before=`` | quarantine | ``{"entries": [...], "next_before"}`` |
| ``POST /publish`` ``{"topic", "document", "recipients"?}`` | publish | ``{"publication", "message_id", ...}`` |
| ``GET /status`` | status | counters, router state, store counts |

Bad parameters are 400 with a message naming the parameter.
"""

from twisted.internet import defer

from relayrouter.api import httpinput, openapi

from connectors.common.http import HttpError, HttpService, JsonResource, JsonRoot, json_body

from . import http_doc, query
from .bearer import Bearer
from .feed import FeedResource
from .service import NotConnected


class Endpoint(JsonResource):
    scope = "search"

    def __init__(self, api, bearer: Bearer) -> None:
        super().__init__()
        self.api = api
        self.bearer = bearer

    def authorized(self, request):
        return self.bearer.claims(request, self.scope)


def _guard(method):
    """Authorize, run, and turn our errors into HTTP ones."""

    def render(self, request):
        d = defer.maybeDeferred(self.authorized, request)  # a Deferred while a JWKS is fetched
        d.addCallback(lambda _: method(self, request))
        return d.addErrback(_translate)

    return render


def _translate(failure):
    if failure.check(query.QueryError):
        raise HttpError(400, failure.value.message)
    if failure.check(NotConnected):
        raise HttpError(503, str(failure.value))
    return failure


class Search(Endpoint):
    openapi = http_doc.SEARCH

    @_guard
    def render_GET(self, request):
        return self.api.search(request.args)


class Records(Endpoint):
    openapi = http_doc.RECORDS
    takes_path = 1  # /records/<id>

    @_guard
    def render_GET(self, request):
        if len(request.postpath) != 1 or not request.postpath[0]:
            raise HttpError(404, "use /records/<id>")
        d = self.api.get(request.postpath[0].decode("ascii", "replace"))
        return d.addCallback(_or_404)


def _or_404(record):
    if record is None:
        raise HttpError(404, "no such record")
    return record


class Analytics(Endpoint):
    openapi = http_doc.ANALYTICS

    @_guard
    def render_GET(self, request):
        return self.api.analytics(request.args)


class Reports(Endpoint):
    openapi = http_doc.REPORTS
    takes_path = 1  # /reports/<name>

    @_guard
    def render_GET(self, request):
        if len(request.postpath) != 1 or self.api.config.report(request.postpath[0].decode("utf8", "replace")) is None:
            names = ", ".join(r.name for r in self.api.config.reports) or "none configured"
            raise HttpError(404, f"use /reports/<name> with a configured report ({names})")
        return self.api.report(request.postpath[0].decode("utf8"), request.args)


class Quarantine(Endpoint):
    scope = "quarantine"
    openapi = http_doc.QUARANTINE

    @_guard
    def render_GET(self, request):
        return self.api.quarantine(request.args)


class Publish(Endpoint):
    scope = "publish"
    openapi = http_doc.PUBLISH

    @_guard
    def render_POST(self, request):
        content_type = (httpinput.header(request, "Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HttpError(415, "send the body as application/json: {\"topic\", \"document\", \"recipients\"?}")
        body = json_body(request, self.api.config.max_body)
        if not isinstance(body, dict) or set(body) - {"topic", "document", "recipients"}:
            raise HttpError(400, "the body must be an object with topic, document and optionally recipients")
        return self.api.publish(body.get("topic"), body.get("document"), body.get("recipients"))


class Status(Endpoint):
    openapi = http_doc.STATUS

    scope = "status"

    @_guard
    def render_GET(self, request):
        return self.api.status()


ENDPOINTS = {b"search": Search, b"records": Records, b"analytics": Analytics, b"reports": Reports,
             b"feed": FeedResource, b"quarantine": Quarantine,
             b"publish": Publish, b"status": Status}


def _reactor():
    from twisted.internet import reactor

    return reactor


def make_root(api, bearer: Bearer) -> JsonRoot:
    root = JsonRoot()
    for name, cls in ENDPOINTS.items():
        root.putChild(name, cls(api, bearer))
    # Open to anyone, as the endpoints' 401s already tell which paths exist: no configured value in it.
    openapi.mount(root, http_doc.TITLE, http_doc.DESCRIPTION, http_doc.SECURITY_SCHEMES)
    return root


def reference_document() -> dict:
    """The OpenAPI document every decrypt-search serves (docs/reference/decrypt-search.md)."""
    return make_root(None, None).children[b"openapi.json"].document()


def http_services(config, api, reactor=None) -> list:
    bearer = Bearer(config.http_auth) if config.http_auth else None
    if bearer is not None:
        (reactor or _reactor()).callWhenRunning(bearer.start)
    return [HttpService(listen, make_root(api, bearer), name="decrypt-search", reactor=reactor)
            for listen in config.http_listen]
