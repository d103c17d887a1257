"""The mediator-proxy's services: router side, agent side, local HTTP.

``MediatorProxy`` (a MultiService) holds the :class:`RouterConnection`, the
local :class:`HttpService` and the state store, and wires two workers:

* :class:`Inbound` takes the mailbox (one long ``relayrouter.mailbox.take``
  per session, progressive results) and delivers it to the agent one message
  at a time, as :mod:`.delivery` decides; it acknowledges only after the
  agent answered 2xx and the next POST waits for the router's RESULT of that
  ack, so a crash repeats at most the one message in delivery.
* :class:`Outbound` sends what the agent posted to ``/outbound/<mailbox>``:
  spooled on disk first (202), then published with ``acknowledge`` in spool
  order while the router is up, removed from the spool once PUBLISHED.

Both keep what they cannot deliver as dead letters in the state store, never
drop it.
"""

import base64
import re
import time
from dataclasses import dataclass

import treq
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, PublishOptions
from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool
from twisted.web.http_headers import Headers

from ..common import (Backoff, HttpError, HttpService, JsonResource, JsonRoot, RouterConnection, RouterSettings,
                      StateStore, read_body)
from . import delivery
from .delivery import DELIVERED, REFUSED, InboundQueue, Message

TAKE = "relayrouter.mailbox.take"
ACK = "relayrouter.mailbox.ack"
ENDPOINT = "relayrouter.mailbox.endpoint"
STATS = "relayrouter.mailbox.stats"
URI = re.compile(r"^[0-9a-z_]+(\.[0-9a-z_]+)*$", re.IGNORECASE)
RECENT_DEAD_LETTERS = 10


@dataclass(frozen=True)
class ProxyConfig:
    router: RouterSettings
    agent_endpoint: str
    state_dir: str
    listen: str = "tcp:8081:interface=127.0.0.1"
    mailbox: str = "mailbox.{authid}"
    public_url: str | None = None
    max_attempts: int = 5
    max_inflight: int = 32
    agent_timeout: float = 30.0
    agent_retry_initial: float = 0.5
    agent_retry_max: float = 30.0
    max_outbound_bytes: int = 1048576
    max_outbound_messages: int = 100000


def _error(kind: str, message: str) -> dict:
    return {"kind": kind, "message": message, "at": time.time()}


def _describe(failure) -> str:
    e = failure.value if hasattr(failure, "value") else failure
    if isinstance(e, ApplicationError):
        return e.error_message()
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text and type(e).__name__ not in text else (text or type(e).__name__)


class MediatorProxy(service.MultiService):
    log = Logger()

    def __init__(self, config: ProxyConfig, remembered: dict | None = None, reactor=None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor
        self.config = config
        self.reactor = reactor
        self.remembered = remembered or {}
        self.store = StateStore(config.state_dir, reactor)
        self.router = RouterConnection(config.router, on_join=self._joined, on_leave=self._left, reactor=reactor)
        self.router.setServiceParent(self)
        self.inbound = Inbound(self)
        self.outbound = Outbound(self)
        self.http = HttpService(config.listen, self._resources(), name="mediator-proxy", reactor=reactor)
        self.http.setServiceParent(self)
        self.mailbox: str | None = None

    def _resources(self):
        root = JsonRoot()
        root.putChild(b"status", StatusPage(self))
        root.putChild(b"endpoint", EndpointPage(self))
        root.putChild(b"outbound", OutboundPage(self))
        root.putChild(b"dead-letters", DeadLettersPage(self))
        return root

    def startService(self) -> None:
        if self.remembered:
            self.store.put("options", self.remembered)
        c = self.config
        self.log.info("mediator-proxy: router {router} realm {realm} ({method}{authid}), mailbox {mailbox},"
                      " agent {agent}, state {state}", router=c.router.url, realm=c.router.realm,
                      method=c.router.credentials.method,
                      authid=f" as {c.router.credentials.authid}" if c.router.credentials.authid else "",
                      mailbox=c.mailbox, agent=c.agent_endpoint, state=self.store.path)
        self.inbound.load()
        super().startService()

    @defer.inlineCallbacks
    def stopService(self):
        self.inbound.stop()
        self.outbound.stop()
        yield super().stopService()
        yield self.inbound.close()
        self.store.close()

    # --------------------------------------------------------- router side

    @defer.inlineCallbacks
    def _joined(self, session, details):
        self.mailbox = self.config.mailbox.replace("{authid}", details.authid or "")
        yield self.inbound.loaded
        self.inbound.start(session, self.mailbox)
        self.outbound.kick(session)

    def _left(self, reason: str) -> None:
        self.inbound.session_ended()

    # ------------------------------------------------------------- status

    def status(self) -> str:
        if self.router.status == "ready" and self.inbound.taking:
            return "ready"
        return "init" if self.router.status == "init" else "connecting"

    def public_endpoint(self) -> dict | None:
        known = self.store.get("endpoint")
        if not known:
            return None
        base = (self.config.public_url or "").rstrip("/")
        url = base + known["path"] if base else (known.get("url") or self.config.router.http_base + known["path"])
        return {"endpoint": url, "mailbox": known.get("mailbox"), "realm": known.get("realm")}

    @defer.inlineCallbacks
    def describe(self):
        stats = yield self._stats()  # first: what follows is one snapshot, taken after it
        errors = [e for e in (self.router.last_error, self.inbound.last_error, self.outbound.last_error) if e]
        mailbox = {"uri": self.mailbox or self.config.mailbox, "taking": self.inbound.taking,
                   "pending": len(self.inbound.queue), "in_delivery": self.inbound.in_delivery}
        if stats is not None:
            mailbox["router"] = stats
        return {
            "status": self.status(),
            "router": self.router.describe(),
            "mailbox": mailbox,
            "agent": self.inbound.describe(),
            "outbound": self.outbound.describe(),
            "dead_letters": self.inbound.describe_dead(),
            "last_error": max(errors, key=lambda e: e["at"]) if errors else None,
        }

    @defer.inlineCallbacks
    def _stats(self):
        session = self.router.session
        if self.router.status != "ready" or session is None or self.mailbox is None:
            return None
        try:
            d = session.call(STATS, self.mailbox)
            d.addTimeout(2, self.reactor)
            stats = yield d
        except Exception as e:
            return {"error": _describe(e)}
        return stats


class Inbound:
    """Takes the mailbox and delivers it to the agent, in order, each message acknowledged after a 2xx."""

    log = Logger()
    http = treq  # post() and content(); tests give an agent in memory

    def __init__(self, proxy: MediatorProxy) -> None:
        self.proxy = proxy
        self.config = proxy.config
        self.reactor = proxy.reactor
        self.queue = InboundQueue()
        self.dead = proxy.store.spool("dead-letters")
        self.dead_ids: set[int] = set()
        self.recent_dead: list[dict] = []
        self.loaded = defer.Deferred()
        self.pool = HTTPConnectionPool(self.reactor, persistent=True)
        self.pool.maxPersistentPerHost = 2
        self.session = None
        self.mailbox = None
        self.generation = 0
        self.taking = False
        self.in_delivery: int | None = None
        self._loop_generation = None  # the generation whose delivery loop runs
        self._sleep: defer.Deferred | None = None
        self._take_backoff = Backoff(1.0, 60.0)
        self._take_retry = None
        self._logged_take_error = None
        self.delivered = 0
        self.retries = 0
        self.refusals = 0
        self.agent_up: bool | None = None
        self.last_error: dict | None = None
        self._logged_agent_error = None

    # ------------------------------------------------------------ lifecycle

    @defer.inlineCallbacks
    def load(self):
        after = 0
        while True:
            items = yield self.dead.first(1000, after=after)
            if not items:
                break
            for item in items:
                self.dead_ids.add(item.meta.get("id"))
                self.recent_dead = (self.recent_dead + [self._dead_summary(item)])[-RECENT_DEAD_LETTERS:]
            after = items[-1].seq
        self.loaded.callback(None)

    def start(self, session, mailbox: str) -> None:
        self.session_ended()
        self.session, self.mailbox = session, mailbox
        self._begin(session, self.generation)

    @defer.inlineCallbacks
    def _begin(self, session, gen):
        """Learn the public endpoint (once per session), then take the mailbox until the session ends."""
        try:
            endpoint = yield session.call(ENDPOINT, self.mailbox)
        except Exception as e:
            if gen == self.generation and session.is_attached():
                self._take_failed(session, f"cannot learn the public endpoint of {self.mailbox}: {_describe(e)}")
            return
        if gen != self.generation:
            return
        yield self.proxy.store.put("endpoint", endpoint)
        options = CallOptions(on_progress=lambda *args, **kw: self._taken(gen, args))
        self.taking = True
        d = session.call(TAKE, self.mailbox, max_inflight=self.config.max_inflight, options=options)
        d.addBoth(self._take_ended, gen)

    def session_ended(self) -> None:
        """Whatever we hold now will come again from the router."""
        self.generation += 1
        self.session = None
        self.taking = False
        self.queue.clear()
        if self._sleep is not None:
            self._sleep.cancel()
        if self._take_retry is not None and self._take_retry.active():
            self._take_retry.cancel()
        self._take_retry = None

    def stop(self) -> None:
        self.session_ended()

    def close(self):
        return self.pool.closeCachedConnections()

    def _take_ended(self, result, gen) -> None:
        if gen != self.generation or self.session is None or not self.session.is_attached():
            return  # the session ended; the next join takes again
        message = _describe(result) if hasattr(result, "value") else "the router ended the take"
        self._take_failed(self.session, f"taking {self.mailbox} ended: {message}")

    def _take_failed(self, session, message: str) -> None:
        """Logged once per kind of trouble; taken again with backoff while the session lasts."""
        self.last_error = _error("take", message)
        key = message.split(": ", 2)[:2]
        if self._logged_take_error != key:
            self._logged_take_error = key
            self.log.error("{message}; trying again with backoff (logged again only if this changes)",
                           message=message)
        self.session_ended()
        self._take_retry = self.reactor.callLater(self._take_backoff.next(), self._retake, session)

    def _retake(self, session) -> None:
        self._take_retry = None
        if session.is_attached() and self.proxy.router.session is session:
            self.start(session, self.proxy.mailbox)

    # ------------------------------------------------------------- delivery

    def _taken(self, gen, args) -> None:
        if gen != self.generation or not args:
            return
        try:
            message = Message.from_take(args[0])
        except ValueError as e:
            self.log.error("the router sent something that is not a mailbox message: {error}", error=str(e))
            return
        self._take_backoff.reset()
        self._logged_take_error = None
        if self.queue.offer(message) and self._loop_generation != gen:
            self._deliver_all(gen)

    @defer.inlineCallbacks
    def _deliver_all(self, gen):
        """One loop per session; a loop of an ended session may still wait on a call that
        never answers (Autobahn does not fail calls on a lost transport), so it is left behind."""
        self._loop_generation = gen
        try:
            while gen == self.generation and (message := self.queue.head()) is not None:
                self.in_delivery = message.id
                yield self._deliver(gen, message)
        except defer.CancelledError:
            pass
        except Exception:
            self.log.failure("delivering {mailbox} failed unexpectedly", mailbox=self.mailbox)
        finally:
            if self._loop_generation == gen:
                self._loop_generation = None
                self.in_delivery = None

    @defer.inlineCallbacks
    def _deliver(self, gen, message: Message):
        backoff = Backoff(self.config.agent_retry_initial, self.config.agent_retry_max)
        refusals = 0
        while gen == self.generation:
            if message.id in self.dead_ids:  # dead-lettered before, its ack was lost
                yield self._ack(gen, message)
                return
            status, detail, wait = yield self._post(message)
            if gen != self.generation:
                return  # the session ended meanwhile: the router hands it out again
            outcome = delivery.verdict(status)
            if outcome == DELIVERED:
                self._agent_ok()
                if (yield self._ack(gen, message)):
                    self.delivered += 1
                return
            if outcome == REFUSED:
                refusals += 1
                self.refusals += 1
                self._agent_trouble(f"agent refused message {message.id}: {detail}", ("refused", status))
                if refusals >= self.config.max_attempts:
                    yield self._dead_letter(message, status, detail, refusals)
                    yield self._ack(gen, message)
                    return
            else:
                self.retries += 1
                self._agent_trouble(f"agent did not take message {message.id}: {detail}",
                                    ("down", status or detail.split(":")[0]))
            self._sleep = task.deferLater(self.reactor, wait if wait is not None else backoff.next(), lambda: None)
            try:
                yield self._sleep
            finally:
                self._sleep = None

    @defer.inlineCallbacks
    def _post(self, message: Message, mailbox: str | None = None):
        """(status or None, what happened, Retry-After seconds or None)."""
        headers = Headers({"Content-Type": [message.content_type],
                           delivery.MESSAGE_ID_HEADER: [str(message.id)],
                           delivery.ATTEMPT_HEADER: [str(message.attempt)],
                           delivery.MAILBOX_HEADER: [mailbox or self.mailbox]})
        try:
            response = yield self.http.post(self.config.agent_endpoint, data=message.body, headers=headers,
                                            pool=self.pool, timeout=self.config.agent_timeout)
            body = yield self.http.content(response)
        except Exception as e:
            return None, _describe(e), None
        detail = f"HTTP {response.code}"
        if response.code >= 300:
            text = body[:200].decode("utf-8", "replace").strip()
            detail += f" {text}" if text else ""
        wait = delivery.retry_after((response.headers.getRawHeaders("retry-after") or [None])[0],
                                    self.config.agent_retry_max)
        return response.code, detail, wait

    @defer.inlineCallbacks
    def _ack(self, gen, message: Message):
        """True once the router answered the ack (the message will not come back)."""
        session = self.session
        if gen != self.generation or session is None:
            return False
        try:
            yield session.call(ACK, self.mailbox, message.id)
        except Exception as e:
            if gen == self.generation:
                self.log.warn("acknowledging message {id} failed: {error}", id=message.id, error=_describe(e))
            raise defer.CancelledError() from None  # delivered again by the router; the agent sees the same id
        if gen != self.generation:
            return False
        self.queue.finish(message.id)
        return True

    @defer.inlineCallbacks
    def _dead_letter(self, message: Message, status, detail: str, attempts: int):
        meta = {"id": message.id, "mailbox": self.mailbox, "content_type": message.content_type,
                "status": status, "reason": detail, "attempts": attempts, "timestamp": message.timestamp,
                "dead_at": time.time()}
        seq = yield self.dead.append(message.body, meta)
        self.dead_ids.add(message.id)
        summary = dict(self._dead_summary_meta(meta), seq=seq, size=len(message.body))
        self.recent_dead = (self.recent_dead + [summary])[-RECENT_DEAD_LETTERS:]
        self.log.error("message {id} of {mailbox} moved to the dead letters after {attempts} refusals ({detail});"
                       " see GET /dead-letters", id=message.id, mailbox=self.mailbox, attempts=attempts, detail=detail)

    @defer.inlineCallbacks
    def retry_dead(self, seq: int):
        """POST a dead letter to the agent once more; it leaves the list only on a 2xx."""
        item = yield self.dead.get(seq)
        if item is None:
            raise HttpError(404, f"no inbound dead letter {seq}")
        meta = item.meta
        message = Message(meta["id"], int(meta.get("attempts") or 0) + 1, float(meta.get("timestamp") or 0),
                          item.body, meta.get("content_type") or delivery.DEFAULT_CONTENT_TYPE)
        status, detail, _ = yield self._post(message, meta.get("mailbox"))
        if delivery.verdict(status) != DELIVERED:
            raise HttpError(502, f"the agent did not take dead letter {seq} (message {message.id}): {detail};"
                                 " it is still kept")
        yield self.forget_dead(seq, item)
        self.log.info("dead letter {seq} (message {id}) delivered on request", seq=seq, id=message.id)
        return {"delivered": True, "seq": seq, "id": message.id, "status": status}

    @defer.inlineCallbacks
    def forget_dead(self, seq: int, item=None):
        item = item or (yield self.dead.get(seq))
        if item is None:
            raise HttpError(404, f"no inbound dead letter {seq}")
        yield self.dead.remove(seq)
        self.dead_ids.discard(item.meta.get("id"))
        self.recent_dead = [d for d in self.recent_dead if d["seq"] != seq]
        return {"removed": seq}

    def _dead_summary(self, item) -> dict:
        return dict(self._dead_summary_meta(item.meta), seq=item.seq, size=len(item.body))

    @staticmethod
    def _dead_summary_meta(meta: dict) -> dict:
        return {k: meta.get(k) for k in ("id", "mailbox", "status", "reason", "attempts", "dead_at")}

    # -------------------------------------------------------------- health

    def _agent_ok(self) -> None:
        if self.agent_up is False:
            self.log.info("agent {url} takes messages again", url=self.config.agent_endpoint)
        self.agent_up = True
        self._logged_agent_error = None

    def _agent_trouble(self, message: str, key: tuple) -> None:
        """Logged once per kind of trouble (refused with 400, down with ConnectionRefusedError, ...)."""
        self.agent_up = key[0] == "refused"
        self.last_error = _error("agent", message)
        if self._logged_agent_error == key:
            return
        self._logged_agent_error = key
        self.log.warn("{message}; retrying with backoff (logged again only if this changes)", message=message)

    def describe(self) -> dict:
        return {"endpoint": self.config.agent_endpoint, "up": self.agent_up, "delivered": self.delivered,
                "retries": self.retries, "refusals": self.refusals,
                "last_error": self.last_error if self.last_error and self.last_error["kind"] == "agent" else None}

    def describe_dead(self) -> dict:
        return {"count": len(self.dead), "recent": list(self.recent_dead)}


class Outbound:
    """The agent's messages for other mailboxes: spooled on disk, then put in spool order."""

    log = Logger()

    def __init__(self, proxy: MediatorProxy) -> None:
        self.proxy = proxy
        self.reactor = proxy.reactor
        self.spool = proxy.store.spool("outbound")
        self.dead = proxy.store.spool("outbound-dead-letters")
        self._sending_for = None  # the session whose send loop runs
        self._writing = 0
        self.sent = 0
        self.last_error: dict | None = None
        self._sleep: defer.Deferred | None = None
        self._stopped = False

    def held(self) -> int:
        """Messages in the spool, counting those being written."""
        return len(self.spool) + self._writing

    def accept(self, mailbox: str, body: bytes, content_type: str) -> defer.Deferred:
        self._writing += 1
        d = self.spool.append(body, {"mailbox": mailbox, "content_type": content_type})
        d.addBoth(self._spooled)
        return d

    def _spooled(self, seq):
        self._writing -= 1
        self.kick()
        return seq

    def stop(self) -> None:
        self._stopped = True
        if self._sleep is not None:
            self._sleep.cancel()

    def kick(self, session=None) -> None:
        session = session or self.proxy.router.session
        if self._stopped or len(self.spool) == 0 or session is None or not session.is_attached():
            return
        if self._sending_for is not session:
            self._send_all(session)

    @defer.inlineCallbacks
    def _send_all(self, session):
        self._sending_for = session
        backoff = Backoff(0.5, 30.0)
        try:
            while not self._stopped and session.is_attached():
                items = yield self.spool.first(100)
                if not items:
                    break
                for item in items:
                    done = yield self._send(session, item, backoff)
                    if not done:
                        return
        except defer.CancelledError:
            pass
        except Exception:
            self.log.failure("sending the outbound spool failed unexpectedly")
        finally:
            if self._sending_for is session:
                self._sending_for = None
        if session.is_attached():
            self.kick(session)  # what was spooled meanwhile; after a new join, that join kicks

    @defer.inlineCallbacks
    def _send(self, session, item, backoff):
        """True once the item left the spool (put, or dead-lettered); False if the session is gone."""
        mailbox, content_type = item.meta["mailbox"], item.meta["content_type"]
        while not self._stopped and session.is_attached():
            try:
                yield session.publish(mailbox, item.body, content_type=content_type,
                                      options=PublishOptions(acknowledge=True))
            except Exception as e:
                error_uri = e.error if isinstance(e, ApplicationError) else None
                message = f"putting outbound message {item.seq} into {mailbox} failed: {_describe(e)}"
                self.last_error = _error("outbound", message)
                if delivery.put_verdict(error_uri) == REFUSED:
                    yield self.dead.append(item.body, dict(item.meta, reason=_describe(e), dead_at=time.time()))
                    yield self.spool.remove(item.seq)
                    self.log.error("{message}; kept as an outbound dead letter", message=message)
                    return True
                self.log.debug("{message}; retrying", message=message)
                self._sleep = task.deferLater(self.reactor, backoff.next(), lambda: None)
                try:
                    yield self._sleep
                finally:
                    self._sleep = None
                continue
            yield self.spool.remove(item.seq)
            self.sent += 1
            backoff.reset()
            return True
        return False

    def describe(self) -> dict:
        return {"spooled": len(self.spool), "sent": self.sent, "dead_letters": len(self.dead),
                "last_error": self.last_error}

    @defer.inlineCallbacks
    def retry_dead(self, seq: int):
        """Back into the outbound spool (at its end), to be put again."""
        item = yield self.dead.get(seq)
        if item is None:
            raise HttpError(404, f"no outbound dead letter {seq}")
        spooled = yield self.accept(item.meta["mailbox"], item.body, item.meta["content_type"])
        yield self.dead.remove(seq)
        return 202, {"spooled": spooled, "mailbox": item.meta["mailbox"]}

    @defer.inlineCallbacks
    def forget_dead(self, seq: int):
        if not (yield self.dead.remove(seq)):
            raise HttpError(404, f"no outbound dead letter {seq}")
        return {"removed": seq}


# ------------------------------------------------------------------ HTTP


class StatusPage(JsonResource):
    def __init__(self, proxy) -> None:
        super().__init__()
        self.proxy = proxy

    def render_GET(self, request):
        return self.proxy.describe()


class EndpointPage(JsonResource):
    """What the agent advertises as its public endpoint: the router's POST /mailbox/{name} URL."""

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

    def __init__(self, proxy) -> None:
        super().__init__()
        self.proxy = proxy

    def render_POST(self, request):
        if len(request.postpath) != 1 or not URI.match(request.postpath[0].decode("utf-8", "replace")):
            raise HttpError(400, "POST to /outbound/<mailbox uri>, e.g. /outbound/mailbox.agenta")
        mailbox = request.postpath[0].decode("ascii")
        body = read_body(request, self.proxy.config.max_outbound_bytes)
        if self.proxy.outbound.held() >= self.proxy.config.max_outbound_messages:
            raise HttpError(507, f"the outbound spool holds {self.proxy.config.max_outbound_messages} messages"
                                 " (--max-outbound-messages) while the router is away; try again later")
        content_type = request.getHeader("content-type") or delivery.DEFAULT_CONTENT_TYPE
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

    def __init__(self, proxy) -> None:
        super().__init__()
        self.proxy = proxy

    def _target(self, request, action: str | None):
        parts = [p.decode("ascii", "replace") for p in request.postpath if p]
        wanted = 3 if action else 2
        if (len(parts) != wanted or parts[0] not in ("inbound", "outbound") or not parts[1].isdigit()
                or (action and parts[2] != action)):
            shape = "/dead-letters/<inbound|outbound>/<seq>" + (f"/{action}" if action else "")
            raise HttpError(404 if request.method == b"GET" else 400, f"use {shape}")
        worker = self.proxy.inbound if parts[0] == "inbound" else self.proxy.outbound
        return worker, int(parts[1])

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
