"""The mediator-proxy's local HTTP resources: status, endpoint, outbound, dead letters."""

import base64
import re

from twisted.internet import defer
from twisted.logger import Logger

from relayrouter.api import httpinput

from ..common import HttpError, JsonResource, read_body
from . import delivery, http_doc

URI = re.compile(r"^[0-9a-z_]+(\.[0-9a-z_]+)*$", re.IGNORECASE)





class StatusPage(JsonResource):
    openapi = http_doc.STATUS

    def __init__(self, proxy) -> None:
        super().__init__()
        self.proxy = proxy

    def render_GET(self, request):
        return self.proxy.describe()


class EndpointPage(JsonResource):
    """What the agent advertises as its public endpoint: the router's POST /mailbox/{name} URL."""

    openapi = http_doc.ENDPOINT

    def __init__(self, proxy) -> None:
        super().__init__()
        self.proxy = proxy

    def render_GET(self, request):
        endpoint = self.proxy.public_endpoint()
        if endpoint is None:
            raise HttpError(503, "the public endpoint is not known yet: the proxy has not joined the router"
                                 " since its state directory was created; see GET /status")
        return endpoint


class OutboundPage(JsonResource):
    """``POST /outbound/<mailbox uri>``: a message for another mailbox, 202 once spooled on disk."""

    takes_path = 1
    openapi = http_doc.OUTBOUND

    def __init__(self, proxy) -> None:
        super().__init__()
        self.proxy = proxy

    def render_POST(self, request):
        if not any(request.postpath):
            raise HttpError(404, "POST to /outbound/<mailbox uri>, e.g. /outbound/mailbox.agenta")
        if len(request.postpath) != 1 or not URI.match(request.postpath[0].decode("utf-8", "replace")):
            raise HttpError(400, "POST to /outbound/<mailbox uri>, e.g. /outbound/mailbox.agenta")
        mailbox = request.postpath[0].decode("ascii")
        body = read_body(request, self.proxy.config.max_outbound_bytes)
        if self.proxy.outbound.held() >= self.proxy.config.max_outbound_messages:
            raise HttpError(507, f"the outbound spool holds {self.proxy.config.max_outbound_messages} messages"
                                 " (--max-outbound-messages) while the router is away; try again later")
        content_type = httpinput.carried_header(request, "Content-Type") or delivery.DEFAULT_CONTENT_TYPE
        d = self.proxy.outbound.accept(mailbox, body, content_type)
        d.addCallbacks(lambda seq: (202, {"spooled": seq, "mailbox": mailbox,
                                          "queued": len(self.proxy.outbound.spool)}), self._not_spooled)
        return d

    @staticmethod
    def _not_spooled(failure):
        Logger().failure("spooling an outbound message failed", failure)
        raise HttpError(507, "could not write the message to the state directory; see the proxy's log")


class DeadLettersPage(JsonResource):
    """The messages kept as undeliverable, both directions:

    * ``GET /dead-letters[?body=1]``: all of them;
    * ``POST /dead-letters/<inbound|outbound>/<seq>/retry``: inbound: POST it to
      the agent once more, removed on a 2xx (502 otherwise, still kept);
      outbound: back into the outbound spool (202);
    * ``DELETE /dead-letters/<inbound|outbound>/<seq>``: forget it.
    """

    takes_path = 3
    openapi = http_doc.DEAD_LETTERS

    def __init__(self, proxy) -> None:
        super().__init__()
        self.proxy = proxy

    def _target(self, request, action: str | None):
        parts = [p.decode("ascii", "replace") for p in request.postpath if p]
        if not parts:  # /dead-letters itself is only listed
            raise HttpError(405, "GET /dead-letters lists them; POST .../<seq>/retry or DELETE .../<seq> one",
                            headers={"Allow": "GET, HEAD"})
        wanted = 3 if action else 2
        if _other_operations_path(parts, action):
            raise HttpError(405, "POST .../<seq>/retry, DELETE .../<seq>",
                            headers={"Allow": "DELETE" if action else "POST"})
        if (len(parts) != wanted or parts[0] not in ("inbound", "outbound") or not parts[1].isdigit()
                or (action and parts[2] != action)):
            shape = "/dead-letters/<inbound|outbound>/<seq>" + (f"/{action}" if action else "")
            raise HttpError(404 if request.method == b"GET" else 400, f"use {shape}")
        worker = self.proxy.inbound if parts[0] == "inbound" else self.proxy.outbound
        return worker, httpinput.integer(parts[1], "the seq", low=0)

    def render_POST(self, request):
        worker, seq = self._target(request, "retry")
        return worker.retry_dead(seq)

    def render_DELETE(self, request):
        worker, seq = self._target(request, None)
        return worker.forget_dead(seq)

    @defer.inlineCallbacks
    def render_GET(self, request):
        if [p for p in request.postpath if p]:
            raise HttpError(404, "GET /dead-letters lists them all; retry or delete one by its seq")
        with_body = request.args.get(b"body", [b"0"])[0] in (b"1", b"true", b"yes")
        result = {}
        for name, spool in (("inbound", self.proxy.inbound.dead), ("outbound", self.proxy.outbound.dead)):
            items, after = [], 0
            while batch := (yield spool.first(1000, after=after)):
                items += batch
                after = batch[-1].seq
            result[name] = [self._entry(item, with_body) for item in items]
        return result

    @staticmethod
    def _entry(item, with_body: bool) -> dict:
        entry = dict(item.meta, seq=item.seq, size=len(item.body))
        if with_body:
            entry["body_base64"] = base64.b64encode(item.body).decode("ascii")
        return entry


def _other_operations_path(parts: list, action: str | None) -> bool:
    """``parts`` have the shape of the other operation's path (``<direction>/<seq>`` for DELETE,
    ``<direction>/<seq>/retry`` for POST), whatever their values: a method that path does not
    take is a 405 there, as its document says, before the values are read."""
    if action:
        return len(parts) == 2
    return len(parts) == 3 and parts[2] == "retry"
