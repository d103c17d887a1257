"""The HTTP site on the WebSocket port: the WAMP endpoint and the resources
other modules add (/ticket, /denylist: transport/tickets.py; /metrics, /health,
/ready: transport/ops_http.py)."""


from autobahn.twisted.resource import WebSocketResource
from twisted.web.resource import Resource
from twisted.web.server import Site


def _access_line(timestamp: str, request) -> str:
    # Twisted's combined format would log query strings, and ?ticket= is a credential;
    # so is the token segment of /mailbox/{name}/{token}.
    path = request.uri.split(b"?", 1)[0].decode("ascii", "replace")
    if path.startswith("/mailbox/") and path.count("/") >= 3:
        path = path.rsplit("/", 1)[0] + "/-"
    client = getattr(request.getClientAddress(), "host", "-")
    return f'{client} - - [{timestamp}] "{request.method.decode("ascii", "replace")} {path}" {request.code}'


def build_site(router, ws_factory, path: str, resources: dict | None = None) -> Site:
    root = Resource()
    parts = [p.encode() for p in path.split("/") if p]
    parent = root
    for part in parts[:-1]:
        child = Resource()
        parent.putChild(part, child)
        parent = child
    parent.putChild(parts[-1] if parts else b"", WebSocketResource(ws_factory))
    for name, resource in (resources or {}).items():
        root.putChild(name, resource)
    site = Site(root, logFormatter=_access_line)
    site.noisy = False
    site.displayTracebacks = False
    return site
