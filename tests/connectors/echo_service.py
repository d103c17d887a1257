"""A local REST service for the fuzz net, run as its own process: every
request, whatever its method and path, is answered 200 with a JSON summary of
what came (method, path, body length), so what a forwarder answers is its own.

    python echo_service.py

prints ``{"event": "listening", "port": N}`` first.
"""

import json
import sys

from twisted.internet import reactor
from twisted.web import resource, server


class Echo(resource.Resource):
    isLeaf = True

    def render(self, request):
        request.setHeader(b"content-type", b"application/json")
        body = request.content.read()
        return json.dumps({"method": request.method.decode("latin-1"), "path": request.path.decode("latin-1"),
                           "length": len(body)}).encode()


def main() -> None:
    site = server.Site(Echo())
    site.log = lambda request: None
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    sys.stdout.write(json.dumps({"event": "listening", "port": port.getHost().port}) + "\n")
    sys.stdout.flush()
    reactor.run()


if __name__ == "__main__":
    main()
