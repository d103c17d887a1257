"""The pairing agent: one peer's REST API and notifications, joined to the other peer's.

Theory of operation
-------------------
The agent runs beside a gateway or a manager with that peer's client
certificate, and keeps one session to the router (connectors.common).  On
each join it asks ``relayrouter.pairs.peer`` who it is (the router derived
the pair and the class from the certificate: nothing here is configured),
registers its peer's REST procedure, ``relayrouter.pair.<s>.<b>.rest.<class>``,
and subscribes to the pair's notifications and presence.

* A call from the other peer is made on the local REST service
  (``--local-service``) with treq, and its answer returned (LocalService).
* A request to the local port (``--listen``) becomes a call of the other
  peer's REST procedure; its answer is the HTTP response (PeerProxy).  So
  existing REST clients and servers on both sides work unchanged.
* ``POST /events/<name>`` on the control port (``--control``) publishes a
  notification to the other peer; notifications from it are POSTed to
  ``--event-endpoint`` with the header ``X-Pair-Event: <name>``.
"""

import time

import treq
from autobahn.wamp.types import CallOptions, PublishOptions, RegisterOptions, SubscribeOptions
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from connectors.common import HttpError, HttpService, JsonResource, JsonRoot, RouterConnection, StatusResource
from connectors.common.http import read_body
from relayrouter.api import event_topic, httpinput, openapi, pair_prefix, presence_topic, rest, rest_procedure

from . import http_doc
from .http_bridge import LocalService, NotConnected, PeerProxy

log = Logger(namespace="pairing-agent")


class PairingAgent(service.MultiService):
    def __init__(self, settings, local_service: str, listen: str, control: str, event_endpoint: str | None,
                 request_timeout: float, max_body: int, reactor=None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.request_timeout = request_timeout
        self.event_endpoint = event_endpoint
        self.local = LocalService(local_service, request_timeout, max_body, reactor)
        self.connection = RouterConnection(settings, on_join=self._joined, on_leave=self._left, reactor=reactor)
        self.connection.setServiceParent(self)
        self.pair: dict | None = None  # {"subscriber", "box", "peer_class" (ours), "other_class"}
        self.peer_present = False
        self.counters = {"requests_from_peer": 0, "requests_to_peer": 0, "events_sent": 0,
                         "events_received": 0, "events_undelivered": 0}
        HttpService(listen, PeerProxy(self.call_peer, max_body), name="pairing-agent REST port",
                    reactor=reactor).setServiceParent(self)
        root = control_site(self, max_body)
        HttpService(control, root, name="pairing-agent control", reactor=reactor).setServiceParent(self)

    # --------------------------------------------------------------- joining

    @defer.inlineCallbacks
    def _joined(self, session, details):
        peer = yield session.call("relayrouter.pairs.peer")
        other = peer["peer_class"]
        mine = "manager" if other == "gateway" else "gateway"
        subscriber, box = peer["subscriber"], peer["box"]
        prefix = pair_prefix(subscriber, box)
        self.pair = {"subscriber": subscriber, "box": box, "peer_class": mine,
                     "other_class": other, "prefix": prefix}
        self.peer_present = bool(peer["present"])
        yield session.register(self._from_peer, rest_procedure(subscriber, box, mine), options=RegisterOptions(invoke="single"))
        yield session.subscribe(self._presence, presence_topic(subscriber, box))
        yield session.subscribe(self._event, f"{prefix}event.", options=SubscribeOptions(match="prefix",
                                                                                         details_arg="details"))
        log.info("pairing-agent: the {mine} of pair {s}/{b}; its {other} is {state}", mine=mine,
                 s=peer["subscriber"], b=peer["box"], other=other,
                 state="connected" if self.peer_present else "not connected yet")

    def _left(self, reason) -> None:
        self.peer_present = False

    def _presence(self, details) -> None:
        if details.get("peer_class") == (self.pair or {}).get("other_class"):
            self.peer_present = details.get("event") == "join"
            log.info("pairing-agent: the {other} {what}", other=details.get("peer_class"),
                     what="joined" if self.peer_present else "left")

    # ---------------------------------------------------------- REST both ways

    def _from_peer(self, request):
        self.counters["requests_from_peer"] += 1
        return self.local(request)

    def call_peer(self, request) -> defer.Deferred:
        session = self.connection.session if self.connection.status == "ready" else None
        if session is None or self.pair is None:
            raise NotConnected(f"the agent is not connected to the router ({self.connection.status})")
        self.counters["requests_to_peer"] += 1
        pair = self.pair
        procedure = rest_procedure(pair["subscriber"], pair["box"], pair["other_class"])
        # The other side has request_timeout for its local service; a little more for the way.
        timeout = int((self.request_timeout + 5) * 1000)
        return session.call(procedure, request, options=CallOptions(timeout=timeout))

    # ------------------------------------------------------------ notifications

    def publish_event(self, name: str, body, content_type: str | None) -> defer.Deferred:
        session = self.connection.session if self.connection.status == "ready" else None
        if session is None or self.pair is None:
            raise HttpError(503, f"the agent is not connected to the router ({self.connection.status})")
        self.counters["events_sent"] += 1
        kwargs = {"content_type": content_type} if content_type else {}
        return session.publish(event_topic(self.pair["subscriber"], self.pair["box"], name), body, options=PublishOptions(acknowledge=True),
                               **kwargs)

    def _event(self, body=None, content_type=None, details=None):
        self.counters["events_received"] += 1
        name = (details.topic or "")[len(self.pair["prefix"] + "event."):] if details and self.pair else ""
        if self.event_endpoint is None:
            log.info("pairing-agent: notification {name} from the {other}", name=name,
                     other=(self.pair or {}).get("other_class"))
            return None
        data = rest.body_bytes(body, content_type)
        headers = {"X-Pair-Event": [name], "Content-Type": [content_type or "application/octet-stream"]}
        d = treq.post(self.event_endpoint, data=data, headers=headers, timeout=self.request_timeout)
        d.addCallback(treq.content)
        d.addErrback(self._undelivered, name)
        return None

    def _undelivered(self, failure, name) -> None:
        self.counters["events_undelivered"] += 1
        log.warn("pairing-agent: notification {name} could not be delivered to {url}: {error}", name=name,
                 url=self.event_endpoint, error=failure.getErrorMessage())

    # ------------------------------------------------------------------ status

    def describe(self) -> dict:
        return {"status": self.connection.status, "router": self.connection.describe(), "pair": self.pair,
                "peer_present": self.peer_present, "counters": dict(self.counters), "time": time.time()}


def control_site(agent, max_body: int) -> JsonRoot:
    """The control port: /status, /events/<name>, /openapi.json."""
    root = JsonRoot()
    root.putChild(b"status", StatusResource(agent.describe if agent is not None else None, http_doc.STATUS))
    root.putChild(b"events", _Events(agent, max_body))
    openapi.mount(root, http_doc.TITLE, http_doc.DESCRIPTION)
    return root


def reference_document() -> dict:
    """The OpenAPI document of every pairing agent's control port (its reference page)."""
    return control_site(None, 0).children[b"openapi.json"].document()


class _Events(JsonResource):
    """``POST /events/<name>``: a notification for the other peer, with the request's body."""

    takes_path = 1  # the event's name
    openapi = http_doc.EVENTS

    def __init__(self, agent: PairingAgent, max_body: int) -> None:
        super().__init__()
        self.agent = agent
        self.max_body = max_body

    def render_POST(self, request):
        name = b"/".join(request.postpath).decode("utf-8", "replace")
        if not name or any(c in name for c in ".#/ "):
            raise HttpError(404, "POST /events/<name>, where the name has no '.', '#', '/' or spaces")
        raw = read_body(request, self.max_body)
        content_type = httpinput.carried_header(request, "Content-Type")
        d = self.agent.publish_event(name, rest.body_value(raw, content_type), content_type)
        return d.addCallbacks(lambda _: (202, {"published": name}), _refused)


def _refused(failure):
    raise HttpError(502, f"the router refused the notification: {failure.getErrorMessage()}")
