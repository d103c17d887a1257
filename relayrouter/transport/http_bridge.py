"""The HTTP bridge: ``POST /publish``, ``POST /call`` and ``POST /webhook/{name}``.

Theory of operation
-------------------
A service that speaks only HTTP publishes and calls through a router-side
WAMP session of the identity it proved, so the realm's rules apply to it
exactly as to any WAMP session: the same roles, the same claim permissions,
the same deny list.  Two ways to prove one:

* ``Authorization: Bearer <JWT>``, checked by the realm's JWT settings (the
  one-time ticket endpoint's check: failed-login limits, revocation);
* a request signed the way Crossbar.io's HTTP bridge signs: query parameters
  ``key``, ``timestamp`` (UTC ISO-8601 with milliseconds), ``seq``, ``nonce``
  and ``signature`` = base64url(HMAC-SHA256(secret, key + timestamp + seq +
  nonce + body)), so clients written for Crossbar (``crossbarconnect``) work
  unchanged.  Beyond Crossbar: a timestamp outside ``timestamp_window`` and a
  nonce seen before for that key (within the window) are refused: a
  captured request cannot be replayed.

Bridge sessions are kept per identity (the key, or the token) and reused;
an idle one is closed after a while, a revoked or expired one by the guard
as any session.  Answers follow Crossbar's bodies (``{"id"}`` for a
publication, ``{"args", "kwargs"}`` for a result, ``{"error", "args",
"kwargs"}`` for an error, every refusal included: 405, 413); WAMP errors get
HTTP statuses (403 not authorized, 404 no such procedure, 400 bad arguments,
504 timeout, 503 no callee, 502 a callee's own error) unless ``error_status =
"crossbar"``, which answers every WAMP error with 200 as Crossbar does (its
caller treats any ``ApplicationError`` as the callee's answer).  POST and PUT
are the same request, as in Crossbar.
"""

import base64
import datetime
import hashlib
import hmac
import json
import time
from collections import OrderedDict
from dataclasses import replace

from autobahn.wamp import message as m
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import server

from ..core import errors
from ..core.auth import Accept
from ..core.peer import TransportInfo
from ..httpinput import BadInput, json_value, read_body, string_field
from . import http_doc
from .tickets import HttpRefusal, _JsonResource, _arg, _client, bad_input

log = Logger(namespace="relayrouter.http_bridge")

MAX_SESSIONS = 1000
MAX_TIMEOUT_MS = 2 ** 31 - 1  # a call's options.timeout (about 24 days)
IDLE_SECONDS = 300.0
STATUS_OF = {errors.NOT_AUTHORIZED: 403, errors.NO_SUCH_PROCEDURE: 404, errors.INVALID_ARGUMENT: 400,
             errors.INVALID_URI: 400, errors.CANCELED: 504, errors.TIMEOUT: 504, errors.NO_AVAILABLE_CALLEE: 503,
             errors.UNAVAILABLE: 503, "relayrouter.error.limit_exceeded": 429, errors.PROTOCOL_VIOLATION: 400}
SECRET_HEADERS = frozenset({b"authorization", b"cookie", b"x-hub-signature", b"x-hub-signature-256"})


class WampError(Exception):
    def __init__(self, error: m.Error) -> None:
        super().__init__(error.error)
        self.uri = error.error
        self.args_ = list(error.args or ())
        self.kwargs = dict(error.kwargs or {})


class BridgePeer:
    """The core's peer for one bridge session: answers go to the waiting requests."""

    def __init__(self, stats=None, now: float | None = None) -> None:
        self.waiting: dict[int, defer.Deferred] = {}
        self.closed = False
        self.leaving = False  # we said GOODBYE: the router's GOODBYE is its reply
        self.session = None
        # What the console shows of a session that has no connection: since when, the
        # HTTP bodies it carried and who sent the last request (the session is shared).
        self.stats = stats
        self.connected_at = now
        self.rx_bytes = self.tx_bytes = self.requests = 0
        self.remote: str | None = None

    def served(self, host: str, body_bytes: int) -> None:
        self.requests += 1
        self.rx_bytes += body_bytes
        self.remote = f"{host} (HTTP, {self.requests} request{'s' if self.requests != 1 else ''})"

    def send(self, message: m.Message) -> None:
        if isinstance(message, m.Goodbye):
            if not self.leaving:  # the router ends the session (revoked, kicked): answer it
                self.session.receive_message(m.Goodbye(errors.CLOSE_GOODBYE_AND_OUT))
            self.close()
            return
        request = getattr(message, "request", None)
        d = self.waiting.pop(request, None)
        if d is None:
            return
        if isinstance(message, m.Error):
            d.errback(WampError(message))
        else:
            d.callback(message)

    def close(self) -> None:
        if not self.closed and self.stats is not None:  # the router's totals keep what it carried
            self.stats.bytes_in += self.rx_bytes
            self.stats.bytes_out += self.tx_bytes
            self.rx_bytes = self.tx_bytes = 0
        self.closed = True
        waiting, self.waiting = self.waiting, {}
        for d in waiting.values():
            d.errback(HttpRefusal(503, errors.UNAVAILABLE, "the bridge session was closed by the router"))


class BridgeSession:
    def __init__(self, router, accept: Accept, peer_address: str, clock) -> None:
        self.peer = BridgePeer(router.stats, clock.seconds())
        self.clock = clock
        self.used = clock.seconds()
        self.session = router.session(self.peer, TransportInfo(kind="http", peer=peer_address,
                                                                serializer="json"))
        self.peer.session = self.session
        self.joined = self.session.join_authenticated(accept)
        self._next = 0

    @property
    def alive(self) -> bool:
        return self.joined and not self.peer.closed and self.session.realm is not None

    def request(self, build) -> defer.Deferred:
        self.used = self.clock.seconds()
        try:
            message = build(self._next + 1)
        except (AssertionError, TypeError, ValueError) as e:  # Autobahn checks its messages' fields so
            raise HttpRefusal(400, errors.INVALID_ARGUMENT,
                              f"the options are not valid: {e or type(e).__name__}"[:300]) from None
        self._next += 1
        d = defer.Deferred()
        self.peer.waiting[self._next] = d
        self.session.receive_message(message)
        return d

    def leave(self) -> None:
        if self.alive:
            self.peer.leaving = True
            self.session.receive_message(m.Goodbye(errors.CLOSE_NORMAL))
        self.peer.close()


class Sessions:
    """Bridge sessions by identity, most recently used last; bounded and swept."""

    def __init__(self, router, clock) -> None:
        self.router = router
        self.clock = clock
        self.by_identity: OrderedDict = OrderedDict()

    def for_identity(self, identity: tuple, accept: Accept, peer_address: str) -> BridgeSession:
        now = self.clock.seconds()
        for key in [k for k, s in self.by_identity.items() if now - s.used > IDLE_SECONDS or not s.alive]:
            self.by_identity.pop(key).leave()
        bridge = self.by_identity.get(identity)
        if bridge is not None and bridge.alive:
            self.by_identity.move_to_end(identity)
            return bridge
        bridge = BridgeSession(self.router, accept, peer_address, self.clock)
        if not bridge.joined:
            raise HttpRefusal(403, errors.NOT_AUTHORIZED, "the realm refused this identity a session "
                              "(revoked, expired, or over a session limit)")
        self.by_identity[identity] = bridge
        while len(self.by_identity) > MAX_SESSIONS:
            self.by_identity.popitem(last=False)[1].leave()
        return bridge

    def close(self) -> None:
        for bridge in self.by_identity.values():
            bridge.leave()
        self.by_identity.clear()


class Nonces:
    """Nonces seen per key within the timestamp window (replay protection)."""

    def __init__(self, window: float, clock) -> None:
        self.window = window
        self.clock = clock
        self.seen: OrderedDict = OrderedDict()  # (key, nonce) -> when

    def fresh(self, key: str, nonce: str) -> bool:
        now = self.clock.seconds()
        while self.seen and next(iter(self.seen.values())) < now - 2 * self.window:
            self.seen.popitem(last=False)
        if (key, nonce) in self.seen:
            return False
        self.seen[(key, nonce)] = now
        return True


def _refusal(error: str, message: str) -> dict:
    """Crossbar's error shape, for every answer the bridge refuses."""
    return {"error": error, "args": [message], "kwargs": {}}


class _BridgeResource(_JsonResource):
    methods = "POST, PUT, OPTIONS"

    def __init__(self, bridge) -> None:
        super().__init__(bridge.security)
        self.bridge = bridge

    def render(self, request):
        if request.method not in (b"POST", b"PUT", b"OPTIONS"):
            request.setHeader(b"allow", self.methods.encode())
            return self._answer(request, 405, _refusal(errors.INVALID_ARGUMENT, (
                f"{request.method.decode('ascii', 'replace')} is not served here: use {self.methods}")))
        return super().render(request)

    def render_POST(self, request):  # noqa: N802
        return self._serve_bridge(request)

    render_PUT = render_POST  # noqa: N815 - Crossbar takes PUT as POST

    def body_limit(self, segments: list, query: dict) -> tuple:
        """Bodies over ``max_body`` are refused while they arrive (transport/http.py)."""
        return (self.bridge.config.max_body, "http_bridge.max_body",
                lambda message: _refusal(errors.INVALID_ARGUMENT, message))

    def _serve_bridge(self, request):
        if not self._origin_ok(request):
            return self._answer(request, 403, _refusal(errors.NOT_AUTHORIZED, "origin not allowed"))
        d = defer.maybeDeferred(self._handle, request)
        d.addCallbacks(lambda answer: self._answer(request, *answer), lambda f: self._failed(request, f))
        return server.NOT_DONE_YET

    def _answer(self, request, code: int, body: dict):
        if request.finished or getattr(request, "_disconnected", False):
            return server.NOT_DONE_YET
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json; charset=UTF-8")
        request.setHeader(b"cache-control", b"no-store")
        data = json.dumps(body).encode()
        peer = getattr(request, "bridge_peer", None)
        if peer is not None and not peer.closed:
            peer.tx_bytes += len(data)
        request.write(data)
        request.finish()
        return server.NOT_DONE_YET

    @staticmethod
    def _served(request, bridge_session, body: bytes) -> None:
        request.bridge_peer = bridge_session.peer
        host = getattr(request.getClientAddress(), "host", None) or "-"
        bridge_session.peer.served(host, len(body))

    def _failed(self, request, failure) -> None:
        if failure.check(WampError):
            e = failure.value
            code = STATUS_OF.get(e.uri, 502)
            if self.bridge.config.error_status == "crossbar":
                code = 200  # Crossbar: any WAMP error is the call's answer
            self._answer(request, code, {"error": e.uri, "args": e.args_, "kwargs": e.kwargs})
        elif failure.check(HttpRefusal):
            e = failure.value
            self._answer(request, e.code, _refusal(e.error, str(e)))
        elif failure.check(BadInput):
            answer = bad_input(failure.value)
            self._answer(request, failure.value.code, _refusal(answer["error"], answer["message"]))
        else:
            log.failure("HTTP bridge {path} failed", failure=failure, path=request.path.decode("ascii", "replace"))
            self._answer(request, 500, _refusal(errors.INTERNAL_ERROR, "the router failed; see its log"))

    # ------------------------------------------------------------ the request

    @defer.inlineCallbacks
    def _handle(self, request):
        body = self._body(request)
        event = _json_object(body)
        bridge_session = yield self._session(request, body, event)
        self._served(request, bridge_session, body)
        answer = yield self.perform(bridge_session, event)
        return answer

    def _body(self, request) -> bytes:
        body = self._read(request)
        kind, charset = _media_type(request.getHeader(b"content-type") or b"application/json")
        if kind != "application/json" or charset not in ("utf-8", "utf8"):
            raise HttpRefusal(400, errors.INVALID_ARGUMENT, "the body must be application/json in UTF-8")
        return body

    def _read(self, request) -> bytes:
        try:
            return read_body(request, self.bridge.config.max_body)
        except BadInput as e:  # Crossbar's bridge says invalid_argument for a body too large
            raise HttpRefusal(e.code, errors.INVALID_ARGUMENT, e.message) from None

    @defer.inlineCallbacks
    def _session(self, request, body: bytes, event: dict):
        address = _client(request)
        if _arg(request, "signature") is not None or _arg(request, "key") is not None:
            key = self.bridge.verify_signed(request, body)
            accept = Accept(key.authid, key.role, "http-bridge", authprovider="http-bridge", realm=key.realm)
            return self.bridge.sessions.for_identity(("key", key.key), accept, address)
        realm = _arg(request, "realm") or string_field(event, "realm") or self.bridge.default_realm()
        event.pop("realm", None)
        if realm is None:
            raise HttpRefusal(400, errors.NO_SUCH_REALM, "name the realm: ?realm=NAME")
        accept = yield self._bearer_accept(request, realm)
        accept = replace(accept, realm=realm)
        token = request.getHeader(b"authorization") or b""
        identity = ("jwt", realm, hashlib.sha256(token).hexdigest())
        return self.bridge.sessions.for_identity(identity, accept, address)


class PublishResource(_BridgeResource):
    """``{"topic", "args", "kwargs", "options"}`` -> ``{"id": <publication id>}``."""

    openapi = http_doc.PUBLISH

    @defer.inlineCallbacks
    def perform(self, bridge_session, event: dict):
        topic = _string(event, "topic")
        args, kwargs, options = _payload(event)
        options = {k: v for k, v in options.items() if k in ("exclude", "eligible", "exclude_authid",
                                                               "eligible_authid", "exclude_authrole",
                                                               "eligible_authrole", "retain")}
        published = yield bridge_session.request(lambda request: m.Publish(
            request, topic, args=args or None, kwargs=kwargs or None, acknowledge=True, **options))
        return 200, {"id": published.publication}


class CallResource(_BridgeResource):
    """``{"procedure", "args", "kwargs", "options"}`` -> ``{"args", "kwargs"}``."""

    openapi = http_doc.CALL

    @defer.inlineCallbacks
    def perform(self, bridge_session, event: dict):
        procedure = _string(event, "procedure")
        args, kwargs, options = _payload(event)
        timeout = options.get("timeout", self.bridge.config.call_timeout * 1000)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= MAX_TIMEOUT_MS:
            raise HttpRefusal(400, errors.INVALID_ARGUMENT,
                              f"options.timeout must be a positive number of ms, at most {MAX_TIMEOUT_MS}")
        result = yield bridge_session.request(lambda request: m.Call(
            request, procedure, args=args or None, kwargs=kwargs or None, timeout=int(timeout)))
        answer = {}
        if result.args:
            answer["args"] = result.args
        if result.kwargs:
            answer["kwargs"] = result.kwargs
        if not answer and self.bridge.config.error_status == "crossbar":
            answer["args"] = [None]  # Crossbar: a call that returns nothing returns None
        return 200, answer


class WebhookResource(_BridgeResource):
    """``POST /webhook/{name}`` (``POST /webhook``: the webhook without a name): any body
    becomes an event on the webhook's topic -> 202 ``{"id"}``."""

    openapi = http_doc.WEBHOOK
    takes_path = 1  # /webhook/{name} (a name has no '/')

    @defer.inlineCallbacks
    def _handle(self, request):
        name = b"/".join(request.postpath).decode("utf-8", "replace")
        hook = self.bridge.hooks.get(name)
        if hook is None:
            raise HttpRefusal(404, errors.INVALID_ARGUMENT, f"no webhook named '{name}'" if name else
                              "no webhook is served at /webhook (give one webhook no name)")
        body = self._read(request)
        _check_webhook(request, hook, body)
        accept = Accept(f"webhook:{hook.name or '-'}", hook.role, "webhook", authprovider="http-bridge",
                        realm=hook.realm)
        bridge_session = self.bridge.sessions.for_identity(("webhook", hook.name), accept, _client(request))
        self._served(request, bridge_session, body)
        args, kwargs = _webhook_event(request, hook, body)
        published = yield bridge_session.request(lambda r: m.Publish(r, hook.topic, args=args, kwargs=kwargs,
                                                                     acknowledge=True))
        return 202, {"id": published.publication}


def _webhook_event(request, hook, body: bytes) -> tuple[list | None, dict | None]:
    """The event a webhook publishes: Crossbar's ``args[0] = {"body": <text>, "headers":
    {name: [values]}}``, or kwargs ``body`` (JSON decoded), ``content_type``, ``headers``.
    Credentials and signatures never travel in the headers."""
    raw = [(k.decode("latin-1"), [v.decode("latin-1") for v in vs])
           for k, vs in request.requestHeaders.getAllRawHeaders() if k.lower() not in SECRET_HEADERS]
    if hook.event == "crossbar":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpRefusal(400, errors.INVALID_ARGUMENT, "the body must be UTF-8 text") from None
        return [{"body": text, "headers": dict(raw)}], None
    content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
    return None, {"body": _body_value(body, content_type), "content_type": content_type or None,
                  "headers": {k.lower(): vs[0] for k, vs in raw}}


class HttpBridge:
    """The bridge's state: sessions, nonces, keys; resources for the site."""

    def __init__(self, config, security, router, clock) -> None:
        self.config = config
        self.security = security
        self.router = router
        self.clock = clock
        self.sessions = Sessions(router, clock)
        self.nonces = Nonces(config.timestamp_window, clock)
        self.keys = {key.key: key for key in config.keys}
        self.hooks = {hook.name: hook for hook in config.webhooks}

    def reload(self, config) -> None:
        """New [http_bridge] settings for the next request (a configuration reload):
        keys and their secrets, webhooks, limits. The bridge's router-side sessions
        end, to be made again with what the new keys and webhooks say."""
        self.config = config
        self.keys = {key.key: key for key in config.keys}
        self.hooks = {hook.name: hook for hook in config.webhooks}
        self.nonces.window = config.timestamp_window
        self.sessions.close()

    def default_realm(self) -> str | None:
        if self.config.default_realm:
            return self.config.default_realm
        jwt_realms = list(self.security.jwt_by_realm)
        return jwt_realms[0] if len(jwt_realms) == 1 else None

    def verify_signed(self, request, body: bytes):
        fields = {name: _arg(request, name) for name in ("key", "timestamp", "seq", "nonce", "signature")}
        missing = [name for name, value in fields.items() if value is None]
        if missing:
            raise HttpRefusal(400, errors.INVALID_ARGUMENT, f"signed request without {', '.join(missing)}")
        key = self.keys.get(fields["key"])
        if key is None:
            raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, f"unknown key '{fields['key'][:64]}'")
        if not (fields["seq"].lstrip("-").isdigit() and fields["nonce"].lstrip("-").isdigit()):
            raise HttpRefusal(400, errors.INVALID_ARGUMENT, "seq and nonce must be integers")
        try:
            stamp = datetime.datetime.strptime(fields["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
        except ValueError:
            raise HttpRefusal(400, errors.INVALID_ARGUMENT, "timestamp must be UTC ISO-8601 with milliseconds, "
                              "e.g. 2011-10-14T16:59:51.123Z") from None
        age = abs(stamp.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time())
        if age > self.config.timestamp_window:
            raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, f"timestamp is {age:.0f} s off the router's "
                              f"clock (at most {self.config.timestamp_window:.0f} s)")
        digest = hmac.new(key.secret.encode(), b"".join(fields[n].encode() for n in ("key", "timestamp", "seq",
                                                                                    "nonce")) + body,
                          hashlib.sha256).digest()
        if not hmac.compare_digest(base64.urlsafe_b64encode(digest), fields["signature"].encode()):
            raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, "signature does not match")
        if not self.nonces.fresh(key.key, fields["nonce"]):
            raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, "this nonce was used already (replayed request)")
        return key

    def resources(self) -> dict:
        return {b"publish": PublishResource(self), b"call": CallResource(self), b"webhook": WebhookResource(self)}

    def close(self) -> None:
        self.sessions.close()


# ------------------------------------------------------------------ helpers


def _json_object(body: bytes) -> dict:
    event = json_value(body or b"{}")
    if not isinstance(event, dict):
        raise HttpRefusal(400, errors.INVALID_ARGUMENT, "the body must be a JSON object")
    return event


def _string(event: dict, name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str) or not value:
        raise HttpRefusal(400, errors.INVALID_ARGUMENT, f"the body needs '{name}' (a URI string)")
    return value


def _payload(event: dict) -> tuple[list, dict, dict]:
    args, kwargs, options = event.get("args") or [], event.get("kwargs") or {}, event.get("options") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict) or not isinstance(options, dict):
        raise HttpRefusal(400, errors.INVALID_ARGUMENT, "args must be a list, kwargs and options objects")
    return args, kwargs, options


def _media_type(header: bytes) -> tuple[str, str]:
    """(media type, charset) of a Content-Type header, lower case; charset utf-8 when not given."""
    kind, *params = header.decode("latin-1").split(";")
    charset = "utf-8"
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return kind.strip().lower(), charset


def _body_value(body: bytes, content_type: str):
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return json_value(body)
        except BadInput:
            pass  # not JSON (or too deep): passed on as the text or bytes it is
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return body


def _check_webhook(request, hook, body: bytes) -> None:
    if hook.token is not None:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        given = header[len("Bearer "):].strip() if header.startswith("Bearer ") else ""
        if not hmac.compare_digest(given.encode(), hook.token.encode()):
            raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, "this webhook needs its bearer token")
    if hook.github_secret is not None:
        sent = (request.getHeader(b"x-hub-signature-256") or b"").decode("latin-1")
        expected = "sha256=" + hmac.new(hook.github_secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, "X-Hub-Signature-256 does not match the body")
