"""The fuzz net: every HTTP resource of the router and of each connector,
found in the twisted.web trees their own code builds, driven with hostile
requests over loopback at the real process.

Theory of operation
-------------------
A component runs as a process (``twistd <plugin> ...``, tests/connectors/processes.py).
:func:`resource_tree` builds the same service in this process, from the same
plugin, arguments and environment (only the state directory differs), without
starting it, and walks the sites it would serve: every ``putChild`` child,
recursively.  So a new endpoint is in the net as soon as the code mounts it.

Each resource found is reached through :data:`REACH`: its class's name maps to
the paths below it worth a request (a leaf that reads ``postpath`` gets a few;
a container nothing, its children are walked), and through the sub-paths its
OpenAPI declarations name (parameters filled in).  A resource class the table
does not know fails the net with its name and path: add it to the table.

Each path then gets the same hostile requests (:func:`hostile_requests`): every
method, bodies nested thousands deep, truncated, huge, not UTF-8, of the wrong
content type, bad query strings and headers; and Hypothesis-made JSON bodies,
query strings and headers (a fixed seed and a bounded number of examples, so
the net costs the same every run).  The answer must not be a 5xx other than the
ones the component documents (502, 503, 504, 507), the process must print no
traceback and no error, and it must still answer once the net is through.
"""

import os
import re
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass

from twisted.application.service import IServiceCollection, IServiceMaker
from twisted.plugin import getPlugins
from twisted.web.server import Site

from relayrouter import openapi

from .ports import free_port

WEBSOCKETS = frozenset({"autobahn.twisted.resource.WebSocketResource",
                        "relayrouter.transport.micronets._MeetupResource"})
DOCUMENTED_5XX = frozenset({502, 503, 504, 507})  # a gateway's, an unavailable dependency's, a full store's
# What a process prints when it logged a failure or an error (twisted's text log format).
ERROR_LINE = re.compile(r"#(error|critical)\]|Unhandled [Ee]rror|Traceback \(most recent call last\)")
SEGMENT = "x1"  # what a path parameter is given

# Resource class (module.qualname) -> sub-paths to request below it ("" is the resource itself).
# A container whose children are all mounted with putChild needs "" only (its children are walked).
REACH = {
    # router
    "twisted.web.resource.Resource": [""],
    "autobahn.twisted.resource.WebSocketResource": [""],
    "relayrouter.transport.tickets.TicketResource": [""],
    "relayrouter.transport.tickets.DenyListResource": [""],
    "relayrouter.service.tenancy.RealmsResource": ["", "/acme", "/%00", "/%ff"],
    "relayrouter.transport.http_bridge.PublishResource": [""],
    "relayrouter.transport.http_bridge.CallResource": [""],
    "relayrouter.transport.http_bridge.WebhookResource": ["", "/open", "/github", "/nope", "/open/more"],
    "relayrouter.transport.mailbox_http.MailboxResource": ["", "/mailbox.agentb", "/mailbox.agentb/tok",
                                                           "/mailbox.nobody", "/%ff/%00"],
    "relayrouter.transport.ops_http.HealthResource": [""],
    "relayrouter.transport.ops_http.ReadyResource": [""],
    "relayrouter.transport.ops_http.MetricsResource": [""],
    "relayrouter.console.Console.http_resources.<locals>.Pages": ["", "/index.html", "/nope", "/%00", "/%ff",
                                                                  "/..%2f..%2fetc%2fpasswd"],
    "relayrouter.relay.access.PrefixResource": ["", "/pend00", "/%00", "/a.b"],
    "relayrouter.relay.access.BidsResource": [""],
    "relayrouter.relay.access.BidListResource": [""],
    "relayrouter.relay.access.StatusResource": ["", "/pend00"],
    "relayrouter.relay.hub.static_pages.<locals>.Pages": ["", "/nope", "/%00"],
    "relayrouter.relay.hub.static_pages.<locals>.Page": [""],
    "relayrouter.transport.micronets._MeetupResource": [""],
    "relayrouter.openapi.OpenApiResource": ["", "/x1"],
    # connectors
    "connectors.common.http.JsonRoot": ["", "/nope", "/%00/%ff"],
    "connectors.common.http.TokenGuard": [""],  # the tree it guards is walked through it
    "connectors.common.http.StatusResource": [""],
    # The IoT agent's root hands every path it has no child for to ApiResource, which routes by
    # the whole path (regular expressions): both are reached at each route (routes_of()).
    "connectors.iot_agent.http_api.Root": None,
    "connectors.iot_agent.http_api.ApiResource": None,
    "connectors.iot_agent.http_api._AnyTopic": ["", "/acme.device-data"],
    "connectors.iot_agent.http_api._Fallback": ["", "/nope"],
    "connectors.decrypt_search.http.Search": [""],
    "connectors.decrypt_search.http.Records": ["", "/1", "/%00", "/1/2"],
    "connectors.decrypt_search.http.Analytics": [""],
    "connectors.decrypt_search.http.Quarantine": [""],
    "connectors.decrypt_search.http.Publish": [""],
    "connectors.decrypt_search.http.Status": [""],
    "connectors.decrypt_search.http.Reports": ["", "/x1", "/%ff", "/x1/x2"],
    "connectors.decrypt_search.feed.FeedResource": ["", "/x1"],  # an event stream once allowed
    "connectors.pairing.http_bridge.PeerProxy": ["", "/%00/a%ff?b=%ff"],  # any path: all go to the other peer
    "connectors.pairing.service._Events": ["", "/DPP:Started", "/bad.name", "/%ff"],
    "connectors.mediator_proxy.didcomm.service.Inbound": ["", "/nope", "/%00"],  # POST /: DIDComm envelopes
    "connectors.mediator_proxy.didcomm.service._Page": [""],
    "connectors.mediator_proxy.didcomm.service.MediatorInvitation": [""],
    "connectors.mediator_proxy.resources.StatusPage": [""],
    "connectors.mediator_proxy.resources.EndpointPage": [""],
    "connectors.mediator_proxy.resources.OutboundPage": ["", "/mailbox.agenta", "/%00", "/a/b"],
    "connectors.mediator_proxy.resources.DeadLettersPage": ["", "/inbound/1", "/outbound/1/retry",
                                                            "/inbound/99999999999999999999999/retry"],
}


# ----------------------------------------------------------- the trees


def plugin(tapname: str):
    import twisted.plugins

    for maker in getPlugins(IServiceMaker, twisted.plugins):
        if maker.tapname == tapname:
            return maker
    raise AssertionError(f"no twistd plugin '{tapname}'")


@contextmanager
def environment(env: dict):
    saved = dict(os.environ)
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def built_service(tapname: str, args: list, env: dict):
    """The service ``twistd <tapname> <args>`` makes, made here and not started."""
    maker = plugin(tapname)
    with environment(env):
        options = maker.options()
        options.parseOptions([str(a) for a in args])
        return maker.makeService(options)


def sites(service) -> list[Site]:
    """Every twisted.web Site the service (and its children) would serve."""
    found = []
    for candidate in (getattr(service, "site", None), getattr(service, "factory", None)):
        candidate = getattr(candidate, "wrappedFactory", candidate)  # TLS
        candidate = getattr(candidate, "site", candidate)  # a protocol in front of the site (the IoT agent's lane)
        if isinstance(candidate, Site) and all(candidate is not f for f in found):
            found.append(candidate)
    if IServiceCollection.providedBy(service):
        for child in service:
            found.extend(sites(child))
    return found


@dataclass(frozen=True)
class Target:
    path: str  # what to request, percent-encoded as sent
    kind: str  # the resource's class, for messages


def resource_tree(site: Site) -> list[tuple[str, object]]:
    """(path, resource) of every resource mounted under the site's root (the
    walk the OpenAPI documents are made with)."""
    return openapi.mounted(site.resource)


def class_name(resource) -> str:
    kind = type(resource)
    return f"{kind.__module__}.{kind.__qualname__}"


def targets(service, site: int | None = None) -> tuple[list[Target], list[str]]:
    """The paths to drive (of every site, or of the ``site``-th), and what the net
    does not know how to reach."""
    out, unknown = [], []
    found = sites(service)
    for site in found if site is None else [found[site]]:
        for path, resource in resource_tree(site):
            name = class_name(resource)
            if name not in REACH:
                unknown.append(f"{path}: {name}")
                continue
            if REACH[name] is None:  # routes by the whole path, wherever it is mounted
                out.extend(Target(route, name) for route in routes_of(resource) + ["/", "/nope/%ff"])
                continue
            base = "" if path == "/" else path
            subs = REACH[name] + documented(resource)
            out.extend(Target(base + sub if base + sub else "/", name) for sub in subs)
    by_path = {t.path: t for t in out}  # one target per path
    return [by_path[p] for p in sorted(by_path)], unknown


def documented(resource) -> list[str]:
    """The sub-paths the resource's OpenAPI declarations name, parameters filled in: a
    route a resource serves below itself (reading ``postpath``) is in the net once documented."""
    return [re.sub(r"\{[^}/]+\}", SEGMENT, sub) for sub in openapi.declarations(resource)]


def routes_of(resource) -> list[str]:
    """A resource that routes by regular expression (the IoT agent's ApiResource):
    one concrete path per route, its parameters filled in."""
    from connectors.iot_agent import http_api

    paths = []
    for _, pattern, _ in http_api._ROUTES:
        text = re.sub(r"\(\?P<\w+>\[\^/\]\+\)", SEGMENT, pattern.pattern).removesuffix("/?$")
        for path in _optional_parts(text):
            assert re.fullmatch(r"[/\w.-]+", path), f"the net cannot fill in the route {pattern.pattern!r}"
            paths.append(path)
    return sorted(set(paths))


def _optional_parts(text: str) -> list[str]:
    """A route with ``(?:part)?``: every path with and without each part."""
    found = re.search(r"\(\?:([/\w.-]+)\)\?", text)
    if found is None:
        return [text]
    rest = text[found.end():]
    return [text[:found.start()] + middle + tail for middle in ("", found.group(1)) for tail in _optional_parts(rest)]


# ------------------------------------------------------------ requests


def send(port: int, method: bytes, target: bytes, headers: list, body: bytes = b"", length=None,
         seconds: float = 20.0) -> tuple[int | None, bytes]:
    """One request on its own connection; (status, raw answer). ``length``: the
    Content-Length to announce (default: the body's; False: none); one larger
    than the body sends a truncated request and closes: (None, b"")."""
    head = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += [name + b": " + value for name, value in headers]
    if length is not False:
        head.append(b"Content-Length: %d" % (len(body) if length is None else length))
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        if length is not None and length is not False and length > len(body):
            return None, b""  # a truncated body: the client gives up and goes (no answer to wait for)
        answer = _read_answer(sock)
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return (int(match.group(1)) if match else 0), answer


def _read_answer(sock) -> bytes:
    """Until the server closes; a streamed answer (200 without Content-Length: an
    event stream) until it pauses for STREAM_PAUSE seconds."""
    answer = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        answer += chunk
        head, sep, _ = answer.partition(b"\r\n\r\n")
        if sep and re.match(rb"HTTP/1\.[01] 200", head) and b"content-length:" not in head.lower():
            sock.settimeout(STREAM_PAUSE)
    return answer


STREAM_PAUSE = 0.5
DEEP = b"[" * 5000
HOSTILE_BODIES = [
    (b"application/json", DEEP),
    (b"application/json", b'{"a":' * 3000 + b"1" + b"}" * 3000),
    (b"application/json", b'{"realm": [], "topic": {}, "procedure": [], "name": [], "template": {}, '
                          b'"claim": 1, "value": [], "ttl": 1e400, "options": {"timeout": 1e999, "exclude": "x"},'
                          b' "args": {}, "kwargs": [], "document": [[[]]], "recipients": "x", "attrs": 5}'),
    (b"application/json", b'{"truncated": "'),
    (b"application/json", b"\xff\xfe\x00\x01"),
    (b"application/json", b"null"),
    (b"application/json", b"1" * 5000),
    (b"text/plain", b"\x00" * 64),
    (b"application/x-www-form-urlencoded", b"a=%ff&b=%00&realm=x&realm=y"),
    (b"multipart/form-data; boundary=x", b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n\xff\r\n--x--"),
    (b"\xff\xfe", b"{}"),
]
HOSTILE_QUERIES = [b"?realm=%ff%fe", b"?before=" + b"9" * 400, b"?limit=-1&limit=1e999&page=%00",
                   b"?a&&=&%zz=%", b"?" + b"x=1&" * 500, b"?ticket=%00&token=%ff&key=%ff&signature=x"]
HOSTILE_HEADERS = [
    [(b"Authorization", b"Bearer \xff\xfe\xc3(")],
    [(b"Authorization", b"Basic \xff\xfe")],
    [(b"Authorization", b"Basic " + b"A" * 8000)],
    [(b"Authorization", b"Bearer a.b.c")],
    [(b"Content-Type", b"application/json; charset=klingon")],
    [(b"Content-Encoding", b"gzip")],
    [(b"Origin", b"\xff"), (b"X-Hub-Signature-256", b"sha256=\xff")],
    [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Version", b"13"),
     (b"Sec-WebSocket-Key", b"\xff")],
]
HOSTILE_FRAMING = [  # (headers, body) sent as they are, with no Content-Length of the net's own
    ([(b"Content-Length", b"-1")], b"{}"),
    ([(b"Content-Length", b"1e3")], b"{}"),
    ([(b"Content-Length", b"0x2")], b"{}"),
    ([(b"Content-Length", b"2"), (b"Content-Length", b"2")], b"{}"),
    ([(b"Transfer-Encoding", b"chunked")], b"zz\r\n{}\r\n0\r\n\r\n"),
    ([(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"2")], b"2\r\n{}\r\n0\r\n\r\n"),
    ([(b"Transfer-Encoding", b"gzip")], b"{}"),
]
METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"TRACE", b"PROPFIND", b"BREW"]


def hostile_requests(path: str, credentials: list) -> list[tuple]:
    """(method, target, headers, body, length) for one path: the fixed hostile set."""
    target = path.encode()
    out = [(m, target, credentials, b"", None) for m in METHODS]
    for content_type, body in HOSTILE_BODIES:
        for method in (b"POST", b"PUT"):
            out.append((method, target, credentials + [(b"Content-Type", content_type)], body, None))
    out.append((b"POST", target, credentials + [(b"Content-Type", b"application/json")], b'{"a": 1', 1000))
    out.append((b"POST", target, credentials + [(b"Content-Type", b"application/json")], b"", 2 ** 40))
    for query in HOSTILE_QUERIES:
        out.append((b"GET", target + query, credentials, b"", None))
        out.append((b"POST", target + query, credentials + [(b"Content-Type", b"application/json")], b"{}", None))
    for headers in HOSTILE_HEADERS:
        out.append((b"GET", target, headers, b"", None))
        out.append((b"POST", target, headers + [(b"Content-Type", b"application/json")], b"{}", None))
    for framing, body in HOSTILE_FRAMING:  # the body's length said wrongly: each answered at once, never waited on
        out.append((b"POST", target, credentials + [(b"Content-Type", b"application/json")] + framing, body, False))
    return out


def check_answer(status: int | None, answer: bytes, what: str) -> None:
    if status is None:
        return  # nothing asked for an answer
    assert status, f"{what}: no HTTP answer: {answer[:300]!r}"
    assert status < 500 or status in DOCUMENTED_5XX, f"{what}: {status}: {answer[:600]!r}"
    if status == 405:  # the same answer from the router and every connector: Allow names what is served
        head = answer.partition(b"\r\n\r\n")[0].lower()
        assert re.search(rb"\r\nallow: [a-z]", head), f"{what}: 405 without Allow: {answer[:600]!r}"


def new_errors(child, since: int) -> list[str]:
    lines = child.all_output[since:]
    return ["\n".join(lines[i:i + 15]) for i, line in enumerate(lines) if ERROR_LINE.search(line)]


def unused_port() -> int:
    """A loopback port nothing listens on (tests/ports.py)."""
    return free_port()


def still_serves(port: int, path: bytes, seconds: float = 15.0) -> int:
    deadline = time.monotonic() + seconds
    while True:
        try:
            status, _ = send(port, b"GET", path, [])
            if status:
                return status
        except OSError:
            pass
        assert time.monotonic() < deadline, f"port {port} no longer answers"
        time.sleep(0.05)  # a process under load: poll until it answers (bounded by the deadline)


# ------------------------------------------------------------ WebSocket


WS_FRAMES = [  # (opcode, payload): what a WebSocket client may send after the upgrade
    (1, b"[" * 5000),  # JSON nested far past every decoder's limit
    (1, b"[" * 1000 + b'"\\u0000AAAA"' + b"]" * 1000),  # deep, with WAMP's binary-in-JSON marker
    (1, b'[1, {}, "realm1", {"roles": ' + b"[" * 300 + b"]" * 300 + b"}]"),
    (1, b"\xff\xfe not UTF-8"),
    (2, b"\x00\x01\x02\xff" * 16),
    (1, b'[1, "realm1", {"roles": {"caller": {}}}]'),
    (1, b"[48, 1, {}, \"com.x\", " + b"[" * 2000 + b"]" * 2000 + b"]"),
    (1, b'{"message": {"messageType": "CONN:HELLO", "messageId": 1e999}}'),
    (8, b"\x03\xe8"),  # close, normal
]


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 5.2)."""
    head = bytes([0x80 | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_session(port: int, path: bytes, protocol: bytes | None, frames: list, quiet: float = 1.0,
               answer_within: float = 15.0) -> bytes:
    """Upgrade, send ``frames`` (each on its own, in order), read until the server closes or,
    once it has answered the upgrade (within ``answer_within`` seconds: a loaded machine can
    take more than ``quiet`` to answer at all), says nothing for ``quiet`` seconds; what came."""
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    head = [b"GET " + path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Upgrade: websocket", b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + key, b"Sec-WebSocket-Version: 13"]
    if protocol:
        head.append(b"Sec-WebSocket-Protocol: " + protocol)
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=answer_within) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n")
        try:
            for opcode, payload in frames:
                sock.sendall(ws_frame(opcode, payload))
            while chunk := sock.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received:
                    sock.settimeout(quiet)
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            pass
    return received
