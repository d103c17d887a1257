"""The Micronets websocket proxy's own protocol, served for existing gateways and managers.

Theory of operation
-------------------
A Micronets peer opens ``wss://…/micronets/v1/ws-proxy/<meetup-id>`` with its
client certificate and speaks plain JSON text frames: ``CONN:HELLO`` first,
then ``REST:REQUEST`` / ``REST:RESPONSE`` and ``EVENT:…`` messages.  The seed
proxy let any certificate of its root join any meetup id; here the meetup id
must be the pair the certificate names: the realm's TLS identity rules turn
the certificate into an authid, the pairing policy turns the authid into
(class, subscriber, box), and the path must be the configured meetup template
for that pair (``sub/{subscriber}/{box}``), or the upgrade is refused (403).

Each legacy connection is, inside the router, a WAMP session of its pair
(:class:`LegacyPeer` is its core peer), so a pair is one pair whoever speaks
which protocol: the pair table admits one gateway and one manager, presence
events fire, the admin procedures list and kick legacy peers too.

* Both peers legacy: once both said HELLO, each gets the other's HELLO and
  every later frame is relayed verbatim and unread (text or binary, JSON or
  not), as the seed proxy does: only the HELLO is ever parsed.
* A legacy peer and a WAMP peer: the legacy peer gets a HELLO made from the
  WAMP peer's identity; its ``REST:REQUEST`` becomes a CALL of the WAMP peer's
  REST procedure (the result comes back as ``REST:RESPONSE``); a CALL of the
  legacy peer's REST procedure becomes a ``REST:REQUEST`` frame (its
  ``REST:RESPONSE`` comes back as the YIELD); ``EVENT:<name>`` and events on
  the pair's ``event.<name>`` topics cross both ways.  A frame that is no
  Micronets message (or has no WAMP counterpart) is dropped and counted
  (``pair.micronets_dropped``); the pair carries on.

A frame over the size limit gets close 1009; the router stopping closes every
legacy connection with 1001 (:meth:`LegacyProtocol.shut_down`): Micronets has
no GOODBYE.

As the seed does: the first peer waits (frames it sends meanwhile are
dropped), a ping goes out every ``ping_interval`` seconds and an unanswered
one closes the connection (1002, "Ping timed out"), and when one peer leaves
the other is closed (1002, "the peer websocket disconnected"), which is what
existing gateways expect before they reconnect.

Unlike the seed, a connection that has not joined its pair is bounded like a
WAMP one: it must send its HELLO and join within ``limits.hello_timeout``
(else close 1008), and one certificate holds at most
:data:`MAX_PENDING_PER_PEER` such connections at once (more are refused at
the upgrade, 429): answering pings does not keep a silent connection open.
"""

import json
from collections import Counter
from dataclasses import dataclass, field

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.wamp import message as m
from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger
from twisted.web.resource import Resource

from .. import rest
from ..core import pairs
from ..core.auth import Accept, JoinRequest
from ..core.peer import TransportInfo
from ..httpinput import BadInput, json_value
from ..config.pairs import LegacySettings
from ..config.limits import ListenerSettings
from . import http_doc
from .tls import tls_facts

log = Logger(namespace="relayrouter.micronets")

PEER_GONE = (1002, "the peer websocket disconnected")
MAX_PENDING_PER_PEER = 2  # connections of one certificate that have not joined yet (the seed's two per meetup)
ROLES = {"caller": {}, "callee": {}, "publisher": {},
         "subscriber": {"features": {"pattern_based_subscription": True}}}


class ProtocolError(Exception):
    """A legacy peer broke the Micronets message format; the text says how."""


def parse(payload: bytes) -> dict:
    try:
        envelope = json_value(payload, field="the message")
    except BadInput as e:
        raise ProtocolError(e.message) from None
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise ProtocolError("the message has no 'message' object")
    if not isinstance(message.get("messageType"), str):
        raise ProtocolError("'messageType' must be a string")
    return message


def check_hello(message: dict) -> None:
    """The seed's checks of a CONN:HELLO, and the types its README gives peerClass and peerId."""
    if message["messageType"] != "CONN:HELLO":
        raise ProtocolError(f"the first message must be CONN:HELLO, not {message['messageType']}")
    for name, kind in (("messageId", int), ("requiresResponse", bool), ("peerClass", str), ("peerId", str)):
        value = message.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ProtocolError(f"CONN:HELLO field '{name}' must be a {kind.__name__}")


@dataclass(slots=True)
class Meetups:
    """What every legacy connection of one realm shares (a reload replaces
    ``settings``, its path kept: the endpoint is mounted at start)."""

    realm: object
    settings: LegacySettings
    connections: set = field(default_factory=set)  # the open connections, for shutdown
    pending_by_authid: Counter = field(default_factory=Counter)  # upgrades that have not joined yet


class LegacyPeer:
    """The core's view of a legacy connection: it turns what the router sends into frames."""

    def __init__(self, conn: "LegacyProtocol") -> None:
        self.conn = conn

    def send(self, message: m.Message) -> None:
        self.conn.from_router(message)

    def close(self) -> None:
        self.conn.dropConnection(abort=False)


class LegacyProtocol(WebSocketServerProtocol):
    is_micronets = True  # what shutdown closes with a frame, not as a connection that never upgraded
    identity: pairs.PeerIdentity | None = None
    session = None
    hello: dict | None = None
    partner: "LegacyProtocol | None" = None  # the other legacy peer, when relaying verbatim

    # ------------------------------------------------------------- opening

    def onConnect(self, request):
        meetups: Meetups = self.factory.meetups
        prefix = "/" + meetups.settings.path.strip("/") + "/"
        if not request.path.startswith(prefix):
            raise ConnectionDeny(404, f"no Micronets endpoint at {request.path}")
        meetup_id = request.path[len(prefix):]
        is_secure, peer_cert, _ = tls_facts(self.transport)
        self.info = TransportInfo(kind="micronets", peer=self.peer, serializer="json",
                                  is_secure=is_secure, peer_cert=peer_cert)
        authid = self._certificate_authid(meetups.realm)
        identity = meetups.realm.pairs.policy.identify(authid)
        if identity is None:
            raise ConnectionDeny(403, f"the client certificate (authid '{authid}') is not a pair's peer")
        expected = meetups.settings.meetup.format(subscriber=identity.subscriber, box=identity.box)
        if meetup_id != expected:
            meetups.realm.counters["pair.refused_foreign_meetup"] += 1
            raise ConnectionDeny(403, f"the client certificate is pair {identity.subscriber}/{identity.box}'s: "
                                 f"its meetup id is '{expected}', not '{meetup_id}'")
        if meetups.pending_by_authid[authid] >= MAX_PENDING_PER_PEER:
            meetups.realm.counters["pair.micronets_pending_refused"] += 1
            raise ConnectionDeny(429, f"authid '{authid}' already has {MAX_PENDING_PER_PEER} Micronets "
                                 "connections that have not joined their pair")
        meetups.pending_by_authid[authid] += 1
        self._pending_authid = authid
        self.identity = identity
        self.meetups = meetups
        self._next_id = 0
        self._requests: dict[int, object] = {}  # our WAMP request id -> what to do with the answer
        self._invocations: dict[int, int] = {}  # our REST:REQUEST messageId -> INVOCATION request id
        return None

    def _certificate_authid(self, realm) -> str:
        authenticator = realm.authenticators.get("tls")
        if authenticator is None:
            raise ConnectionDeny(403, f"realm '{realm.name}' has no TLS client-certificate authentication")
        decision = authenticator.hello(JoinRequest(realm.name, ("tls",), None, None, {}, self.info))
        if not isinstance(decision, Accept):
            raise ConnectionDeny(403, getattr(decision, "message", "client certificate refused"))
        return decision.authid

    def onOpen(self) -> None:
        self.meetups.connections.add(self)
        self._ping = None
        self._ping_timer = self.factory.clock.callLater(self.meetups.settings.ping_interval, self._send_ping)
        self._hello_timer = self.factory.clock.callLater(self.factory.hello_timeout, self._hello_deadline)

    _pending_authid = None
    _hello_timer = None

    def _hello_deadline(self) -> None:
        self._hello_timer = None
        if self._pending_authid is not None:
            self.meetups.realm.counters["pair.micronets_hello_timeouts"] += 1
            self._close(1008, f"no CONN:HELLO and join within limits.hello_timeout "
                              f"({self.factory.hello_timeout:g} seconds)")

    def _not_pending(self) -> None:
        """Joined, or gone: no longer one of its certificate's pending connections."""
        authid, self._pending_authid = self._pending_authid, None
        if authid is not None:
            pending = self.meetups.pending_by_authid
            pending[authid] -= 1
            if pending[authid] <= 0:
                del pending[authid]

    # --------------------------------------------------------- from the peer

    def onMessage(self, payload: bytes, is_binary: bool) -> None:
        # Only the HELLO must parse: after it the seed proxy reads nothing, it
        # copies frames, so a frame the router cannot read never ends a pair.
        if self.hello is None:
            self._hello(payload)
        elif self.mode == "verbatim":
            self.partner.sendMessage(payload, is_binary)
        elif self.mode == "waiting":
            self._drop("before its peer arrived", payload)
        else:
            self._from_legacy(payload, is_binary)

    def _hello(self, payload: bytes) -> None:
        try:
            message = parse(payload)
            check_hello(message)
        except ProtocolError as e:
            log.info("Micronets protocol error from {peer}: {error}", peer=self.peer, error=str(e))
            self._close(1008, str(e))
            return
        self.hello = {"message": message}
        self._join()

    def _from_legacy(self, payload: bytes, is_binary: bool) -> None:
        """A frame for a WAMP peer: a Micronets message is translated, anything else dropped and counted."""
        try:
            message = None if is_binary else parse(payload)
        except ProtocolError as e:
            self._drop(f"that the WAMP peer cannot be given ({e})", payload)
            return
        if message is None:
            self._drop("that the WAMP peer cannot be given (a binary frame)", payload)
            return
        self._translate(message)

    def _drop(self, why: str, payload: bytes) -> None:
        self.meetups.realm.counters["pair.micronets_dropped"] += 1
        log.info("Micronets peer {peer} sent a frame {why}: dropped ({size} bytes)",
                 peer=self.peer, why=why, size=len(payload))

    mode = "waiting"

    def _join(self) -> None:
        self.session = self.factory.router.session(LegacyPeer(self), self.info)
        self.session.receive([1, self.meetups.realm.name, {"roles": ROLES, "authmethods": ["tls"]}])

    # ----------------------------------------------------- from the router

    def from_router(self, message: m.Message) -> None:
        handler = getattr(self, f"_on_{type(message).__name__.lower()}", None)
        if handler is not None:
            handler(message)

    def _on_welcome(self, welcome: m.Welcome) -> None:
        # The router sends WELCOME before it has finished the join (presence, the
        # pair table): act on the next turn, as a peer across the network would.
        self.factory.clock.callLater(0, self._joined)

    def _joined(self) -> None:
        if self.session is None:
            return
        self._not_pending()
        ident = self.identity
        self._send(m.Register(self._request(None), pairs.rest_procedure(ident.subscriber, ident.box,
                                                                        ident.peer_class)))
        self._send(m.Subscribe(self._request(self._presence_subscribed),
                               pairs.presence_topic(ident.subscriber, ident.box)))
        self._send(m.Subscribe(self._request(None), ident.prefix + "event.", match="prefix"))
        self._send(m.Call(self._request(self._peer_state), pairs.PEER))

    def _on_abort(self, abort: m.Abort) -> None:
        self.session = None
        self._close(1008, (abort.message or abort.reason))

    def _on_goodbye(self, goodbye: m.Goodbye) -> None:
        # Kicked or replaced: the legacy protocol has no GOODBYE, only a close.
        self._send(m.Goodbye("wamp.close.goodbye_and_out"))
        self._close(1000, goodbye.message or goodbye.reason)

    def _on_result(self, result: m.Result) -> None:
        self._answer(result.request, result.args[0] if result.args else None, None)

    def _on_subscribed(self, subscribed: m.Subscribed) -> None:
        self._answer(subscribed.request, subscribed, None)

    def _on_error(self, error: m.Error) -> None:
        if not self._answer(error.request, None, error):
            log.warn("Micronets bridge for {peer}: {uri} ({text})", peer=self.peer, uri=error.error,
                     text=error.args[0] if error.args else "")

    def _answer(self, request: int, value, error) -> bool:
        then = self._requests.pop(request, None)
        if then is None:
            return False
        then(value, error)
        return True

    _presence_subscription = None

    def _presence_subscribed(self, subscribed, error) -> None:
        if subscribed is not None:
            self._presence_subscription = subscribed.subscription

    def _on_event(self, event: m.Event) -> None:
        if event.subscription == self._presence_subscription:
            self._presence(event.args[0] if event.args else None)
        elif self.mode == "translated":
            name = (event.topic or "")[len(self.identity.prefix + "event."):]
            body = event.args[0] if event.args else None
            content_type = (event.kwargs or {}).get("content_type")
            frame = {"message": {"messageId": self._frame_id(), "messageType": f"EVENT:{name}",
                                 "requiresResponse": False,
                                 **rest.legacy_body_fields(content_type, body)}}
            self._send_frame(frame)

    def _on_invocation(self, invocation: m.Invocation) -> None:
        try:
            req = rest.request(invocation.args[0] if invocation.args else None)
        except rest.RestError as e:
            self._send(m.Error(m.Invocation.MESSAGE_TYPE, invocation.request, "wamp.error.invalid_argument",
                               args=[str(e)]))
            return
        message_id = self._frame_id()
        self._invocations[message_id] = invocation.request
        self._send_frame(rest.request_to_legacy(req, message_id))

    # ------------------------------------------------------------ pairing

    def _peer_state(self, answer, error) -> None:
        if error is None and answer and answer.get("present"):
            self._peer_arrived(answer.get("session"), answer.get("authid"))

    def _presence(self, details) -> None:
        if not isinstance(details, dict) or details.get("peer_class") != self.identity.other_class:
            return
        if details.get("event") == "join":
            self._peer_arrived(details.get("session"), details.get("peer_id"))
        elif details.get("event") == "leave" and self.mode != "waiting":
            self._close(*PEER_GONE)

    def _peer_arrived(self, session_id, authid) -> None:
        if self.mode != "waiting":
            return
        session = self.meetups.realm.sessions.get(session_id)
        other = session.peer.conn if session is not None and isinstance(session.peer, LegacyPeer) else None
        if other is not None:
            # Legacy on both sides: exchange the HELLOs, then relay verbatim (the seed's way).
            self.mode = other.mode = "verbatim"
            self.partner, other.partner = other, self
            self._send_frame(other.hello)
            other._send_frame(self.hello)
            return
        self.mode = "translated"
        self._send_frame({"message": {"messageId": 0, "messageType": "CONN:HELLO", "requiresResponse": False,
                                      "peerClass": self.identity.other_class, "peerId": authid or ""}})

    # ------------------------------------------------------------ translating

    def _translate(self, message: dict) -> None:
        kind = message["messageType"]
        ident = self.identity
        if kind == "REST:REQUEST":
            self._forward_request(message)
        elif kind == "REST:RESPONSE":
            self._forward_response(message)
        elif kind.startswith("EVENT:"):
            content_type, body = rest.legacy_body(message)
            self._send(m.Publish(self._request(None), ident.prefix + "event." + kind[len("EVENT:"):],
                                 args=[body], kwargs={"content_type": content_type} if content_type else None))
        else:
            self._drop(f"of type {kind}, which has no WAMP counterpart,", b"")

    def _forward_request(self, message: dict) -> None:
        in_response_to = message.get("messageId")
        try:
            req = rest.request_from_legacy(message)
        except rest.RestError as e:
            self._send_frame(rest.response_to_legacy(rest.error_response(400, "Bad Request", str(e)),
                                                     self._frame_id(), in_response_to))
            return

        def answered(value, error) -> None:
            if error is not None:
                status = 503 if error.error == pairs.PEER_ABSENT else 502
                text = error.args[0] if error.args else error.error
                resp = rest.error_response(status, "Service Unavailable" if status == 503 else "Bad Gateway", text)
            else:
                try:
                    resp = rest.response(value)
                except rest.RestError as e:
                    resp = rest.error_response(502, "Bad Gateway", str(e))
            self._send_frame(rest.response_to_legacy(resp, self._frame_id(), in_response_to))

        ident = self.identity
        procedure = pairs.rest_procedure(ident.subscriber, ident.box, ident.other_class)
        self._send(m.Call(self._request(answered), procedure, args=[req]))

    def _forward_response(self, message: dict) -> None:
        invocation = self._invocations.pop(message.get("inResponseTo"), None)
        if invocation is None:
            log.info("Micronets peer {peer} answered a request it was not sent: dropped", peer=self.peer)
            return
        try:
            resp = rest.response_from_legacy(message)
        except rest.RestError as e:
            self._send(m.Error(m.Invocation.MESSAGE_TYPE, invocation, "relayrouter.error.bad_response",
                               args=[f"the Micronets peer's REST:RESPONSE is malformed: {e}"]))
            return
        self._send(m.Yield(invocation, args=[resp]))

    # ------------------------------------------------------------- plumbing

    def _request(self, then) -> int:
        self._next_id += 1
        if then is not None:
            self._requests[self._next_id] = then
        return self._next_id

    def _frame_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _send(self, message: m.Message) -> None:
        if self.session is not None:
            self.session.receive_message(message)

    def _send_frame(self, frame: dict) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(json.dumps(frame).encode(), False)

    # ------------------------------------------------------------- liveness

    def _send_ping(self) -> None:
        self._ping_timer = None
        if self.state != self.STATE_OPEN:
            return
        self._ping = self.factory.clock.callLater(self.meetups.settings.ping_timeout, self._ping_timed_out)
        self.sendPing()

    def onPong(self, payload: bytes) -> None:
        if self._ping is not None and self._ping.active():
            self._ping.cancel()
            self._ping = None
            self._ping_timer = self.factory.clock.callLater(self.meetups.settings.ping_interval, self._send_ping)

    def _ping_timed_out(self) -> None:
        self._ping = None
        self._close(1002, f"Ping timed out ({self.meetups.settings.ping_timeout:g} seconds)")

    # --------------------------------------------------------------- closing

    def _close(self, code: int, reason: str) -> None:
        """A close frame with the seed's codes (1002, 1008), which sendClose reserves to Autobahn."""
        self.sendCloseFrame(code, reason.encode()[:123], isReply=False)

    def shut_down(self, reason: str) -> None:
        """The router is stopping: close 1001 (going away), the peer's partner too."""
        self._close(1001, reason)

    def onClose(self, was_clean: bool, code, reason) -> None:
        meetups = getattr(self, "meetups", None)
        if meetups is not None:
            meetups.connections.discard(self)
            self._not_pending()
        for timer in (getattr(self, "_ping_timer", None), getattr(self, "_ping", None), self._hello_timer):
            if timer is not None and timer.active():
                timer.cancel()
        session, self.session = self.session, None
        if session is not None:
            session.transport_lost()
        partner, self.partner = self.partner, None
        if partner is not None:
            partner.partner = None
            partner._close(*PEER_GONE)


class LegacyFactory(WebSocketServerFactory):
    protocol = LegacyProtocol

    def __init__(self, router, meetups: Meetups, clock, settings: ListenerSettings) -> None:
        super().__init__()
        self.router = router
        self.meetups = meetups
        self.clock = clock
        self.hello_timeout = settings.hello_timeout
        # failByDrop=False: a frame over the limit gets close 1009, as on the WAMP endpoint.
        self.setProtocolOptions(maxMessagePayloadSize=settings.max_message_size,
                                maxFramePayloadSize=settings.max_message_size, failByDrop=False,
                                openHandshakeTimeout=settings.hello_timeout)


class _MeetupResource(Resource):
    """Every path below the endpoint is a meetup id: hand the request to the WebSocket resource."""

    isLeaf = True
    openapi = http_doc.MICRONETS

    def __init__(self, factory: LegacyFactory) -> None:
        super().__init__()
        self.websocket = WebSocketResource(factory)  # the router's requests answer other methods with 405

    def render(self, request):
        return self.websocket.render(request)


def mount(children: dict, router, realm, settings: LegacySettings, clock, limits: ListenerSettings) -> Meetups:
    """Add the resource serving ``settings.path`` for ``realm`` to a site's root ``children``."""
    parts = [p.encode() for p in settings.path.split("/") if p]
    meetups = Meetups(realm, settings)
    leaf = _MeetupResource(LegacyFactory(router, meetups, clock, limits))
    for part in parts[:-1]:
        child = children.get(part)
        if child is None:
            child = children[part] = Resource()
        children = child.children
    children[parts[-1]] = leaf
    return meetups
