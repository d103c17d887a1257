"""``twistd mediator-proxy didcomm``: the process.

Set-up (``status`` ``init`` -> ``setup`` -> ``ready``), as the seed does it:
connect to the external mediator from its invitation, request mediation and
register our key; offer our invitation to the agent; once both connections
exist, retrieve.  What the set-up learnt (keys, both connections, the grant,
the agent's keys) is kept in the state directory, so a restart resumes
``ready`` without a new invitation.

Retrieval: Message Pickup 2.0 where the mediator discloses it
(:mod:`.pickup`); else a WebSocket to the mediator's ``ws`` endpoint, where
every ``POLL_INTERVAL`` a trust ping with ``return_route: all`` makes the
mediator send what it queued for us (:class:`Retriever`; a lost socket is
opened again with backoff).  A mediator that can reach ``ENDPOINT`` may also
POST there.  A ``forward`` is taken only when it was packed for our key on
the mediator's connection (else the problem report
``forward-from-unauthorized-connection``), and is appended to the inbound
spool (on disk, committed) before the socket, the HTTP request or the
pickup is answered.  Delivery posts the spool head, as packed, to the
agent's endpoint: removed after a 2xx, retried with backoff otherwise, a
dead letter after ``--max-attempts`` refusals.  With ``ENABLE_STORE`` the
first start takes the proxy-mediator's connections (:mod:`.seedstore`).
"""

import json
from dataclasses import dataclass, field

import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.application import service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.web import server

from relayrouter.api import httpinput, openapi

from ...common import ApiToken, Backoff, HttpError, HttpService, JsonResource, JsonRoot, StateStore, TokenGuard
from .. import delivery, http_doc
from ..delivery import DELIVERED, REFUSED
from . import envelope, messages, seedstore
from .messages import ProtocolError
from .pickup import Retrieval

DIDCOMM_TYPE = "application/didcomm-envelope-enc"
KEYS = "didcomm.keys"
MEDIATOR = "didcomm.mediator"
AGENT = "didcomm.agent"
INVITATION = "didcomm.invitation"
MAX_BODY = 10 * 1024 * 1024
MAX_ANSWER = 4 * MAX_BODY  # a mediator's answer: a pickup delivery carries up to 10 messages


@dataclass(frozen=True)
class DidcommConfig:
    port: str  # a Twisted endpoint string
    endpoint: str
    state_dir: str
    mediator_invite: str | None = None
    poll_interval: float = 20.0
    max_attempts: int = 5
    agent_timeout: float = 30.0
    agent_retry_initial: float = 0.5
    agent_retry_max: float = 30.0
    reconnect_max: float = 30.0
    max_spooled: int = 100000
    api_token: ApiToken | None = field(default=None, repr=False)  # guards the admin routes when given
    seed_store: tuple[str, str] | None = field(default=None, repr=False)  # REPO_URI, REPO_KEY with ENABLE_STORE


class DidcommProxy(service.MultiService):
    log = Logger()

    def __init__(self, config: DidcommConfig, reactor=None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.store = StateStore(config.state_dir, reactor)
        self.spool = self.store.spool("didcomm-inbound")
        self.dead = self.store.spool("didcomm-dead-letters")
        self.state = "init"
        self.keys: dict[str, object] = {}  # role -> askar Key: mediator, invitation, agent
        self.mediator_invited = defer.Deferred()
        self.http = HttpService(config.port, self._resources(), name="mediator-proxy didcomm", reactor=reactor)
        self.http.setServiceParent(self)
        self.retriever = Retrieval(self, Retriever(self))
        self.delivered = 0
        self.refused_forwards = 0
        self._delivering = False
        self._stopped = False

    def _resources(self):
        return site(self, self.config.api_token)

    def describe(self) -> dict:
        """The seed's ``{"status"}``, and what this proxy adds: counters and the spool."""
        return {"status": self.state, "delivered": self.delivered, "spooled": len(self.spool),
                "dead_letters": len(self.dead), "refused_forwards": self.refused_forwards,
                "mediator_socket": self.retriever.connected, "retrieval": self.retriever.mode,
                "agent_keys": len((self.store.get(AGENT) or {}).get("keys") or [])}

    # ------------------------------------------------------------- lifecycle

    def startService(self) -> None:
        super().startService()
        self._load_keys()
        self.log.info("mediator-proxy didcomm: endpoint {endpoint}, state {state}, poll every {poll} s",
                      endpoint=self.config.endpoint, state=self.store.path, poll=self.config.poll_interval)
        if self.config.api_token is None:
            self.log.warn("the admin routes (/retrieve_agent_invitation, /receive_mediator_invitation) are open,"
                          " as the proxy-mediator's are: whoever reaches PORT first may connect as the agent;"
                          " set MEDIATOR_PROXY_API_TOKEN or --api-token-file to guard them")
        else:
            self.log.info("the admin routes ask for the token in {source}", source=self.config.api_token.source)
        self.set_up().addErrback(lambda f: self.log.failure("the DIDComm set-up failed", f))

    @defer.inlineCallbacks
    def stopService(self):
        self._stopped = True
        self.retriever.stop()
        yield super().stopService()
        self.store.close()

    def _load_keys(self) -> None:
        secrets = dict(self.store.get(KEYS) or {})
        for role in ("mediator", "invitation", "agent"):
            if role not in secrets:
                secrets[role] = envelope.new_key().get_secret_bytes().hex()
        self.store.put(KEYS, secrets)
        self.keys = {role: envelope.key_from_secret(bytes.fromhex(secret)) for role, secret in secrets.items()}

    def verkey(self, role: str) -> str:
        return envelope.verkey(self.keys[role])

    def our_keys(self) -> dict:
        return {envelope.verkey(key): key for key in self.keys.values()}

    @defer.inlineCallbacks
    def set_up(self):
        self.state = "setup"
        if self.config.seed_store is not None and not self.store.get(MEDIATOR):
            yield self._import_seed_store(*self.config.seed_store)
        if not (self.store.get(MEDIATOR) or {}).get("keylist_updated"):
            yield self._mediator_from_invite()
        yield self._offer_invitation()

    @defer.inlineCallbacks
    def _import_seed_store(self, uri: str, key: str):
        """The proxy-mediator's connections, once, into an empty state directory (argon2 and askar in a
        thread: the reactor goes on)."""
        imported = yield threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                                   seedstore.read, uri, key)
        where = seedstore.describe_uri(uri)
        if imported is None:
            self.log.info("no proxy-mediator connections at REPO_URI {uri}: setting up anew", uri=where)
            return
        yield self.store.put(KEYS, dict(self.store.get(KEYS) or {}, **imported["keys"]))
        self._load_keys()
        if imported["agent"] is not None:
            yield self.store.put(AGENT, imported["agent"])
        yield self.store.put(MEDIATOR, imported["mediator"])
        self.log.info("took the proxy-mediator's connections from REPO_URI {uri}: the mediator's{agent}",
                      uri=where, agent=" and the agent's" if imported["agent"] else " (no agent yet)")

    @defer.inlineCallbacks
    def _mediator_from_invite(self):
        """MEDIATOR_INVITE, tried with backoff while the mediator is unreachable; else (or if it is
        refused) the invitation posted to /receive_mediator_invitation."""
        backoff = Backoff(1.0, self.config.reconnect_max)
        while self.config.mediator_invite and not self._stopped and not self.mediator_invited.called:
            try:
                yield self.connect_mediator(self.config.mediator_invite)
                return
            except ProtocolError as e:
                self.log.error("MEDIATOR_INVITE refused: {code}: {message}; waiting for POST"
                               " /receive_mediator_invitation", code=e.code, message=str(e))
                break
            except Exception as e:  # noqa: BLE001 - unreachable, or an answer we could not open
                self.log.warn("the mediator did not set us up ({error}); trying again", error=f"{type(e).__name__}: {e}")
                yield task.deferLater(self.reactor, backoff.next(), lambda: None)
        self.log.info("waiting for the mediator's invitation: POST /receive_mediator_invitation")
        yield self.mediator_invited

    @defer.inlineCallbacks
    def _offer_invitation(self):
        if not self.store.get(AGENT):
            invitation = self.store.get(INVITATION)
            if invitation is None:
                _, url = messages.oob_invitation(self.verkey("invitation"), self.config.endpoint)
                yield self.store.put(INVITATION, {"url": url})
                self.log.info("invitation for the agent: GET /retrieve_agent_invitation")
            return  # ready once the agent's connection request arrives
        self.became_ready()

    def became_ready(self) -> None:
        if self.state != "ready":
            self.state = "ready"
            self.log.info("ready: retrieving from the mediator, delivering to the agent")
            self.retriever.start()
            self.kick()

    # ------------------------------------------------------ the mediator side

    @defer.inlineCallbacks
    def connect_mediator(self, url: str):
        """Connection, mediation and key registration, each answered over return-route."""
        invitation = messages.parse_invitation(url)
        if not invitation["endpoint"].startswith(("http://", "https://")):
            raise ProtocolError("unsupported-invitation", f"the invitation's endpoint {invitation['endpoint']!r}"
                                " is not http(s): ask the mediator for an invitation on its HTTP endpoint")
        if invitation["routing_keys"]:
            raise ProtocolError("unsupported-invitation", "a mediator invitation with routing keys is not"
                                " supported: invite from the mediator itself")
        key = self.keys["mediator"]
        target = yield self._connect_to(invitation, key)
        http = [e for e in target["endpoints"] if e.startswith(("http://", "https://"))] or [invitation["endpoint"]]
        target = dict(target, http=http[0])
        grant = yield self._exchange(target["http"], messages.mediate_request(), target["verkey"], key)
        if messages.type_of(grant) != f"{messages.MEDIATION}/mediate-grant":
            raise ProtocolError("mediation-denied", f"the mediator answered {messages.type_of(grant)!r}")
        record = dict(target, grant={"endpoint": grant.get("endpoint"),
                                     "routing_keys": [envelope.verkey_of(k) for k in grant.get("routing_keys") or []]})
        yield self.store.put(MEDIATOR, record)
        update = yield self._exchange(target["http"], messages.keylist_update(envelope.verkey(key)),
                                      target["verkey"], key)
        results = [u.get("result") for u in update.get("updated") or []]
        if results != ["success"] and results != ["no_change"]:
            raise ProtocolError("keylist-update-failed", f"the mediator answered the key update with {results}")
        yield self.store.put(MEDIATOR, dict(record, keylist_updated=True))
        self.log.info("mediation granted by the external mediator at {endpoint}", endpoint=invitation["endpoint"])
        if not self.mediator_invited.called:
            self.mediator_invited.callback(None)

    def ask_mediator(self, message: dict):
        """One message to the mediator's HTTP endpoint, its answer from the response (return route)."""
        mediator = self.store.get(MEDIATOR)
        return self._exchange(mediator["http"], message, mediator["verkey"], self.keys["mediator"])

    @defer.inlineCallbacks
    def _connect_to(self, invitation: dict, key):
        """The mediator's target, by the handshake its invitation offers first."""
        if invitation["kind"] == "connections":
            request = messages.connection_request("proxy-mediator", envelope.verkey(key), self.config.endpoint)
            answer = yield self._exchange(invitation["endpoint"], request, invitation["verkey"], key)
            return messages.their_connection(answer, invitation["verkey"])
        request = messages.didexchange_request("proxy-mediator", envelope.verkey(key), self.config.endpoint,
                                               invitation["id"], key)
        answer = yield self._exchange(invitation["endpoint"], request, invitation["verkey"], key)
        if messages.type_of(answer) != f"{messages.DIDEXCHANGE}/response":
            raise ProtocolError("request-not-accepted", f"the mediator answered {messages.type_of(answer)!r}"
                                f" ({str((answer.get('description') or {}).get('en', ''))[:200]})")
        target = messages.their_didexchange(answer, invitation["verkey"])
        yield self._send(invitation["endpoint"], messages.didexchange_complete(request), target["verkey"], key)
        return target

    @defer.inlineCallbacks
    def _send(self, endpoint: str, message: dict, to: str, key):
        """POST one message that wants no answer."""
        response = yield treq.post(endpoint, data=envelope.pack(message, [to], key),
                                   headers={"Content-Type": DIDCOMM_TYPE}, timeout=self.config.agent_timeout)
        yield treq.content(response)
        if not 200 <= response.code < 300:
            raise ProtocolError("not-accepted", f"{endpoint} answered {response.code}")

    @defer.inlineCallbacks
    def _exchange(self, endpoint: str, message: dict, to: str, key):
        """POST one message (return route) and open the answer that comes back in the response."""
        packed = envelope.pack(message, [to], key)
        response = yield treq.post(endpoint, data=packed, headers={"Content-Type": DIDCOMM_TYPE},
                                   timeout=self.config.agent_timeout)
        body = yield _bounded_body(response, MAX_ANSWER)
        if not 200 <= response.code < 300 or not body:
            raise ProtocolError("no-answer", f"{endpoint} answered {response.code} without a message")
        return envelope.unpack(body, self.our_keys()).message

    # --------------------------------------------------------- the agent side

    @defer.inlineCallbacks
    def handle_inbound(self, body: bytes):
        """A message POSTed to us -> the packed answer for the HTTP response, or None."""
        opened = envelope.unpack(body, self.our_keys())
        message, kind = opened.message, messages.type_of(opened.message)
        try:
            answer = yield self._dispatch(kind, message, opened)
        except ProtocolError as e:
            answer = messages.problem_report(e.code, str(e), message)
            self.log.warn("refused a {kind} message: {code}", kind=kind or "typeless", code=e.code)
        if answer is None or opened.sender is None:
            return None
        handshake = kind in (f"{messages.CONNECTIONS}/request", f"{messages.DIDEXCHANGE}/request")
        answering = self.keys["agent"] if handshake else self.keys_for(opened.recipient)
        packed = envelope.pack(answer, [opened.sender], answering)
        if (message.get("~transport") or {}).get("return_route") == "all":
            return packed
        agent = self.store.get(AGENT) or {}
        if opened.sender == agent.get("verkey"):
            yield self._post(agent["endpoints"][0], packed)
        return None

    def keys_for(self, verkey_b58: str):
        return self.our_keys()[verkey_b58]

    @defer.inlineCallbacks
    def _dispatch(self, kind: str, message: dict, opened):
        if kind in (f"{messages.CONNECTIONS}/request", f"{messages.DIDEXCHANGE}/request"):
            return (yield self._agent_connects(message, opened))
        if kind == "routing/1.0/forward":
            if opened.recipient != self.verkey("mediator"):
                self.refused_forwards += 1
                raise ProtocolError("forward-from-unauthorized-connection",
                                    "forward messages are taken only on the mediator's connection")
            if self.spool_full():
                raise SpoolFull()
            yield self.spool_forward(message)
            return None
        agent = self.store.get(AGENT)
        if agent is None or opened.sender != agent["verkey"]:
            raise ProtocolError("agent-connection-not-established", "this key has no connection with the proxy")
        if kind == "trust_ping/1.0/ping":
            return messages.reply("trust_ping/1.0/ping_response", message) if message.get(
                "response_requested", True) else None
        if kind == f"{messages.MEDIATION}/mediate-request":
            mediator = self.store.get(MEDIATOR) or {}
            if "grant" not in mediator:
                raise ProtocolError("external-mediation-not-established", "no mediation from the external"
                                    " mediator yet")
            routing = [self.verkey("mediator"), *mediator["grant"]["routing_keys"]]
            return messages.mediate_grant(message, mediator["grant"]["endpoint"], routing)
        if kind == f"{messages.MEDIATION}/keylist-update":
            keys, answer = messages.apply_keylist_update(agent.get("keys") or [], message)
            yield self.store.put(AGENT, dict(agent, keys=keys))
            return answer
        if kind == f"{messages.MEDIATION}/keylist-query":
            return messages.reply(f"{messages.MEDIATION}/keylist", message,
                                  keys=[{"recipient_key": envelope.did_key(k)} for k in agent.get("keys") or []])
        return None

    @defer.inlineCallbacks
    def _agent_connects(self, request: dict, opened):
        if opened.recipient != self.verkey("invitation"):
            raise ProtocolError("request-not-accepted", "connection requests are taken on the invitation key")
        if self.store.get(AGENT):
            raise ProtocolError("request-not-accepted", "the proxy serves one agent and is connected to it")
        if messages.type_of(request) == f"{messages.CONNECTIONS}/request":
            target = messages.their_connection(request)
            answer = messages.connection_response(request, self.keys["invitation"], self.verkey("agent"),
                                                  self.config.endpoint)
        else:
            target = messages.their_didexchange(request)
            answer = messages.didexchange_response(request, self.keys["invitation"], self.verkey("agent"),
                                                   self.config.endpoint)
        yield self.store.put(AGENT, dict(target, keys=[]))
        self.log.info("the agent connected")
        if (self.store.get(MEDIATOR) or {}).get("keylist_updated"):
            self.reactor.callLater(0, self.became_ready)
        return answer

    # --------------------------------------------------------------- delivery

    @defer.inlineCallbacks
    def retrieved(self, body: bytes):
        """A message from the mediator's socket: a forward for the agent is spooled, nothing else kept."""
        opened = envelope.unpack(body, {self.verkey("mediator"): self.keys["mediator"]})
        if messages.type_of(opened.message) == "routing/1.0/forward":
            yield self.spool_forward(opened.message)

    @defer.inlineCallbacks
    def take_retrieved(self, body: bytes | None, ident: str):
        """A message picked up (Pickup 2.0): a forward for the agent is spooled, anything else kept as a
        dead letter with the reason -- either way committed before the mediator may delete it."""
        try:
            if body is None:
                raise ProtocolError("invalid-attachment", "the attachment carries no packed message")
            opened = envelope.unpack(body, {self.verkey("mediator"): self.keys["mediator"]})
            if messages.type_of(opened.message) != "routing/1.0/forward":
                raise ProtocolError("not-a-forward", f"picked up a {messages.type_of(opened.message)!r} message")
            to, inner = messages.forward_target(opened.message)
        except (ProtocolError, envelope.EnvelopeError) as e:
            yield self.dead.append(body or b"", {"pickup_id": ident, "status": None, "reason": str(e)})
            self.log.error("a message picked up from the mediator became a dead letter: {reason}", reason=str(e))
            return
        yield self.spool.append(json.dumps(inner).encode(), {"to": to, "pickup_id": ident})
        self.kick()

    def spool_full(self) -> bool:
        return len(self.spool) >= self.config.max_spooled

    @defer.inlineCallbacks
    def spool_forward(self, message: dict):
        """Committed to the spool before we answer anyone: what the mediator handed over survives kill -9."""
        to, inner = messages.forward_target(message)
        yield self.spool.append(json.dumps(inner).encode(), {"to": to})
        self.kick()

    def kick(self) -> None:
        if not self._delivering and self.state == "ready" and not self._stopped:
            self._delivering = True
            d = self._deliver_all()
            d.addErrback(lambda f: self.log.failure("delivering to the agent failed unexpectedly", f))
            d.addBoth(lambda _: setattr(self, "_delivering", False))

    @defer.inlineCallbacks
    def _deliver_all(self):
        while not self._stopped and (items := (yield self.spool.first(1))):
            yield self._deliver(items[0])

    @defer.inlineCallbacks
    def _deliver(self, item):
        backoff = Backoff(self.config.agent_retry_initial, self.config.agent_retry_max)
        refusals = 0
        while not self._stopped:
            agent = self.store.get(AGENT) or {}
            known = [agent.get("verkey"), *(agent.get("keys") or [])]
            if not agent.get("any_key") and item.meta.get("to") not in known:  # any_key: imported from the seed
                status, detail = 404, f"forward for {item.meta.get('to')}, not a key the agent registered"
            else:
                status, detail = yield self._post(agent["endpoints"][0], item.body)
            outcome = delivery.verdict(status)
            if outcome == DELIVERED:
                yield self.spool.remove(item.seq)
                self.delivered += 1
                return
            if outcome == REFUSED:
                refusals += 1
                if refusals >= self.config.max_attempts:
                    yield self.dead.append(item.body, dict(item.meta, status=status, reason=detail))
                    yield self.spool.remove(item.seq)
                    self.log.error("a forwarded message became a dead letter: {reason}", reason=detail)
                    return
            yield task.deferLater(self.reactor, backoff.next(), lambda: None)

    @defer.inlineCallbacks
    def _post(self, url: str, body: bytes):
        try:
            response = yield treq.post(url, data=body, headers={"Content-Type": DIDCOMM_TYPE},
                                       timeout=self.config.agent_timeout)
            yield treq.content(response)
        except Exception as e:  # noqa: BLE001 - refused, reset, timeout: the agent is down
            return None, f"{type(e).__name__}: {e}"
        return response.code, f"HTTP {response.code}"


@defer.inlineCallbacks
def _bounded_body(response, limit: int):
    """The response's body, the connection dropped past ``limit`` bytes (a ProtocolError)."""
    chunks, size = [], [0]

    def take(data: bytes) -> None:
        size[0] += len(data)
        if size[0] > limit:
            raise ProtocolError("answer-too-large", f"the answer is over {limit} bytes")
        chunks.append(data)

    yield treq.collect(response, take)
    return b"".join(chunks)


class SpoolFull(Exception):
    def __init__(self) -> None:
        super().__init__("the proxy's spool is full (--max-spooled) while the agent is not taking messages;"
                         " the mediator keeps this one until then")


class Retriever:
    """The WebSocket to the mediator: a trust ping every poll interval; reopened with backoff."""

    log = Logger()

    def __init__(self, proxy: DidcommProxy) -> None:
        self.proxy = proxy
        self.protocol = None
        self.backoff = Backoff(0.5, proxy.config.reconnect_max)
        self.poll = None
        self.running = False
        self.retry = None
        self.logged = None

    @property
    def connected(self) -> bool:
        return self.protocol is not None

    def url(self) -> str:
        endpoints = (self.proxy.store.get(MEDIATOR) or {}).get("endpoints") or []
        found = [e for e in endpoints if e.startswith(("ws://", "wss://"))]
        if not found:
            raise ProtocolError("no-websocket", f"the mediator offers no ws:// endpoint (only {endpoints})")
        return found[0]

    def start(self) -> None:
        self.running = True
        self._connect()

    def stop(self) -> None:
        self.running = False
        if self.retry is not None and self.retry.active():
            self.retry.cancel()
        if self.poll is not None and self.poll.running:
            self.poll.stop()
        if self.protocol is not None:
            self.protocol.dropConnection(abort=True)

    def _connect(self) -> None:
        self.retry = None
        url = self.url()
        factory = _MediatorSocketFactory(url)
        factory.retriever = self
        connectWS(factory)

    def opened(self, protocol) -> None:
        self.protocol = protocol
        self.backoff.reset()
        if self.logged:
            self.log.info("the mediator's socket is open again")
        self.logged = None
        self.poll = task.LoopingCall(self.ping)
        self.poll.clock = self.proxy.reactor
        self.poll.start(self.proxy.config.poll_interval, now=True)

    def ping(self) -> None:
        """No ping while the spool is full: what the mediator holds stays there until we took some."""
        if self.protocol is not None and not self.proxy.spool_full():
            mediator = self.proxy.store.get(MEDIATOR)
            packed = envelope.pack(messages.trust_ping(), [mediator["verkey"]], self.proxy.keys["mediator"])
            self.protocol.sendMessage(packed, isBinary=True)

    def received(self, payload: bytes) -> None:
        d = self.proxy.retrieved(payload)
        d.addErrback(lambda f: self.log.warn("a message from the mediator was not spooled: {e}", e=f.value))

    def lost(self, reason: str) -> None:
        self.protocol = None
        if self.poll is not None and self.poll.running:
            self.poll.stop()
        if not self.running:
            return
        if self.logged != reason:
            self.logged = reason
            self.log.warn("the mediator's socket closed ({reason}); opening it again with backoff", reason=reason)
        self.retry = self.proxy.reactor.callLater(self.backoff.next(), self._connect)


class _MediatorSocketFactory(WebSocketClientFactory):
    noisy = False

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.protocol = _MediatorSocket

    def clientConnectionFailed(self, connector, reason):
        self.retriever.lost(f"cannot connect: {reason.getErrorMessage()}")


class _MediatorSocket(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.retriever.opened(self)

    def onMessage(self, payload, isBinary):
        self.factory.retriever.received(payload)

    def onClose(self, wasClean, code, reason):
        self.factory.retriever.lost(f"code {code}" if code else "connection lost")


# ------------------------------------------------------------------- HTTP


def site(proxy, token) -> "Inbound":
    """The seed's surface: ``POST /``, ``GET /status``, the invitation routes (behind ``token``
    when there is one)."""
    root = Inbound(proxy)
    root.putChild(b"status", _Page(lambda request: proxy.describe(), http_doc.DIDCOMM_STATUS))
    admin = {b"retrieve_agent_invitation": _Page(
                 lambda request: {"invitation_url": (proxy.store.get(INVITATION) or {}).get("url")},
                 http_doc.AGENT_INVITATION),
             b"receive_mediator_invitation": MediatorInvitation(proxy)}
    for name, page in admin.items():
        root.putChild(name, TokenGuard(page, token, "mediator-proxy") if token is not None else page)
    # Open, as the seed's surface is: it says which routes need the token, not the token.
    openapi.mount(root, http_doc.DIDCOMM_TITLE, http_doc.DIDCOMM_DESCRIPTION, http_doc.SECURITY_SCHEMES)
    return root


def reference_document() -> dict:
    """The OpenAPI document every mediator proxy in DIDComm mode serves (its reference page)."""
    return site(None, None).children[b"openapi.json"].document()


class _Page(JsonResource):
    def __init__(self, answer, document: dict) -> None:
        super().__init__()
        self.answer = answer
        self.openapi = document

    def render_GET(self, request):
        return self.answer(request)


class MediatorInvitation(JsonResource):
    """``POST /receive_mediator_invitation {"invitation_url"}``: 200 once mediation is set up."""

    openapi = http_doc.MEDIATOR_INVITATION

    def __init__(self, proxy: DidcommProxy) -> None:
        super().__init__()
        self.proxy = proxy

    @defer.inlineCallbacks
    def render_POST(self, request):
        url = httpinput.string_field(httpinput.json_object(request, 65536), "invitation_url")
        if not url:
            raise HttpError(400, 'send {"invitation_url": "<the mediator\'s invitation URL>"}')
        if (self.proxy.store.get(MEDIATOR) or {}).get("keylist_updated"):
            raise HttpError(409, "the proxy already has a mediator")
        try:
            yield self.proxy.connect_mediator(url)
        except ProtocolError as e:
            raise HttpError(400, f"{e.code}: {e}") from None
        except Exception as e:  # noqa: BLE001 - the mediator unreachable or answering nonsense
            raise HttpError(502, f"the mediator could not be reached or answered badly: {type(e).__name__}: {e}")
        return {}


class Inbound(JsonRoot):
    """``POST /``: a DIDComm message; 200 with the answer for a return route, else 202."""

    openapi = http_doc.DIDCOMM_INBOUND

    def __init__(self, proxy: DidcommProxy) -> None:
        super().__init__()
        self.proxy = proxy

    def getChild(self, path, request):
        if path == b"":
            return self
        return super().getChild(path, request)

    def render(self, request):
        if request.method != b"POST":
            request.setHeader(b"allow", b"POST")
            return _json(request, 405, {"error": "method_not_allowed", "message": "POST a DIDComm message here"})
        body = request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _json(request, 413, {"error": "too_large", "message": f"over {MAX_BODY} bytes"})
        d = self.proxy.handle_inbound(body)
        d.addCallbacks(self._answered, self._failed, (request,), None, (request,), None)
        return server.NOT_DONE_YET

    @staticmethod
    def _answered(packed, request) -> None:
        if packed is None:
            request.setResponseCode(202)
        else:
            request.setHeader(b"content-type", DIDCOMM_TYPE.encode())
            request.write(packed)
        request.finish()

    def _failed(self, failure, request) -> None:
        if failure.check(SpoolFull):
            request.setHeader(b"retry-after", b"30")
            body = _json(request, 503, {"error": "unavailable", "message": str(failure.value)})
        elif failure.check(envelope.EnvelopeError):
            body = _json(request, 400, {"error": "bad_request", "message": str(failure.value)})
        else:
            self.proxy.log.failure("handling an inbound DIDComm message failed", failure)
            body = _json(request, 500, {"error": "internal_error", "message": "see the proxy's log"})
        request.write(body)
        request.finish()


def _json(request, code: int, body: dict) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode()
