"""A twisted.web agent for the mediator-proxy tests, run as its own process.

    python agent.py PORT

Every POST is printed as one JSON line on stdout, ``{"event": "message",
"id": ..., "attempt": ..., "content_type": ..., "body": ...}``, and answered
by what its body starts with: ``REFUSE`` -> 400 (until a POST to
``/control/accept`` makes it take those too), ``SLOW`` -> 200 after 30 s
the first time that message id comes (so a test can kill the proxy while
the POST is in flight), anything else -> 200.  ``{"event": "listening",
"port": N}`` comes first.
"""

import json
import sys

from twisted.internet import reactor, task
from twisted.web import resource, server

seen_slow = set()
accept_all = []


def say(**event) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Inbox(resource.Resource):
    isLeaf = True

    def render_POST(self, request):
        if request.path == b"/control/accept":
            accept_all.append(True)
            return b"ok"
        body = request.content.read()
        message_id = request.getHeader("x-message-id")
        say(event="message", id=int(message_id) if message_id else None,
            attempt=int(request.getHeader("x-delivery-attempt") or 0),
            mailbox=request.getHeader("x-mailbox"), content_type=request.getHeader("content-type"),
            body=body.decode("utf-8", "replace"), path=request.path.decode())
        if body.startswith(b"REFUSE") and not accept_all:
            request.setResponseCode(400)
            return b"no thanks"
        if body.startswith(b"SLOW") and message_id not in seen_slow:
            seen_slow.add(message_id)
            task.deferLater(reactor, 30, lambda: None).addCallback(lambda _: self._finish(request))
            return server.NOT_DONE_YET
        return b"ok"

    @staticmethod
    def _finish(request) -> None:
        if not request._disconnected:
            request.write(b"ok")
            request.finish()


def main() -> None:
    site = server.Site(Inbox())
    site.log = lambda request: None
    port = reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")
    say(event="listening", port=port.getHost().port)
    reactor.run()


if __name__ == "__main__":
    main()
