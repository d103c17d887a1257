"""Inbound: the mailbox taken from the router and delivered to the agent.

One long ``relayrouter.mailbox.take`` per session (progressive results);
messages go to the agent one at a time, lowest ID first, as
:mod:`.delivery` decides. A message is acknowledged only after the agent
answered 2xx, and the next POST waits for the router's RESULT of that ack,
so a crash repeats at most the one message in delivery. What the agent keeps
refusing becomes a dead letter in the state store.
"""

import time

import treq
from autobahn.wamp.types import CallOptions
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.http_headers import Headers

from ..common import Backoff, HttpError
from . import delivery
from .delivery import DELIVERED, REFUSED, InboundQueue, Message
from .troubles import describe_error, trouble

class _QuietHTTP11ClientFactory(_HTTP11ClientFactory):
    noisy = False


TAKE = "relayrouter.mailbox.take"
ACK = "relayrouter.mailbox.ack"
ENDPOINT = "relayrouter.mailbox.endpoint"
RECENT_DEAD_LETTERS = 10


class Inbound:
    """Takes the mailbox and delivers it to the agent, in order, each message acknowledged after a 2xx."""

    log = Logger()
    http = treq  # post() and content(); tests give an agent in memory

    def __init__(self, proxy) -> None:  # a MediatorProxy
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
        self.pool._factory = _QuietHTTP11ClientFactory  # no two log lines per connection to the agent
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
                self._take_failed(session, f"cannot learn the public endpoint of {self.mailbox}: {describe_error(e)}")
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
        message = describe_error(result) if hasattr(result, "value") else "the router ended the take"
        self._take_failed(self.session, f"taking {self.mailbox} ended: {message}")

    def _take_failed(self, session, message: str) -> None:
        """Logged once per kind of trouble; taken again with backoff while the session lasts."""
        self.last_error = trouble("take", message)
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
            return None, describe_error(e), None
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
            if gen == self.generation and session.is_attached():  # a lost session says so itself
                self.log.warn("acknowledging message {id} failed: {error}", id=message.id, error=describe_error(e))
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
        self.last_error = trouble("agent", message)
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
