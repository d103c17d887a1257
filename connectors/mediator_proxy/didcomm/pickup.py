"""Retrieval from the external mediator: Message Pickup 2.0 where it is offered, else the seed's trust ping.

Theory of operation
-------------------
Once set up, :class:`Retrieval` asks the mediator (discover-features 1.0,
over HTTP with return route) whether it speaks ``messagepickup/2.0``
(Aries RFC 0685).  A mediator that answers without it, or does not answer
the query at all, gets the seed's retrieval (the trust-ping socket of
:mod:`.service`); one that cannot be reached is asked again with backoff.

With Pickup 2.0 (:class:`PickupRetriever`) every ``POLL_INTERVAL`` (and at
once again while messages wait) the proxy POSTs to the mediator's HTTP
endpoint, each answered in the response:

1. ``status-request`` -> ``status`` (``message_count``);
2. ``delivery-request`` (``limit``: at most a batch, and no more than the
   spool has room for) -> ``delivery``, the queued messages as attachments;
3. each attachment is committed to the spool (or, unreadable, to the dead
   letters with the reason) together with its id in ``didcomm.pickup.taken``;
4. ``messages-received`` with the ids committed -> ``status``: only now
   may the mediator delete them.

A ``kill -9`` anywhere in this loses nothing: before step 4 the mediator
still holds the batch and delivers it again; the ids already committed are
then acknowledged without being spooled twice.  (Between the spool write
and the id's write, which are usually one transaction, a kill repeats that
one message.)  No WebSocket is kept open in this mode: a session left in
``return_route: all`` lets an ACA-Py mediator push forwards onto it and
delete them as it sends, which is the window Pickup 2.0 exists to close.
"""

from twisted.internet import defer, task
from twisted.logger import Logger

from ...common import Backoff
from . import envelope, messages
from .messages import ProtocolError

TAKEN = "didcomm.pickup.taken"
BATCH = 10
MAX_BATCHES = 100  # per round: a mediator that never runs dry (or never forgets) waits for the next poll


class Retrieval:
    """Chooses Pickup 2.0 or the trust-ping socket, by asking the mediator."""

    log = Logger()

    def __init__(self, proxy, socket_retriever) -> None:
        self.proxy = proxy
        self.socket = socket_retriever
        self.active = None
        self.mode = None  # "pickup-2.0" | "trust-ping", once chosen
        self.running = False

    @property
    def connected(self) -> bool:
        return self.active is not None and self.active.connected

    def start(self) -> None:
        self.running = True
        self._choose().addErrback(lambda f: self.log.failure("choosing how to retrieve failed", f))

    def stop(self) -> None:
        self.running = False
        if self.active is not None:
            self.active.stop()

    @defer.inlineCallbacks
    def _choose(self):
        backoff, logged = Backoff(0.5, self.proxy.config.reconnect_max), None
        while self.running:
            try:
                answer = yield self.proxy.ask_mediator(messages.pickup_query())
                offered = messages.offers_pickup(answer)
                break
            except (ProtocolError, envelope.EnvelopeError) as e:
                self.log.info("the mediator did not disclose Message Pickup 2.0 ({why}); retrieving with"
                              " trust pings on its socket", why=str(e))
                offered = False
                break
            except Exception as e:  # noqa: BLE001 - unreachable: ask again
                if logged is None:
                    logged = f"{type(e).__name__}: {e}"
                    self.log.warn("cannot ask the mediator which pickup it offers ({error}); trying again",
                                  error=logged)
                yield task.deferLater(self.proxy.reactor, backoff.next(), lambda: None)
        if not self.running:
            return
        self.mode = "pickup-2.0" if offered else "trust-ping"
        self.active = PickupRetriever(self.proxy) if offered else self.socket
        self.log.info("retrieving from the mediator with {mode}", mode=self.mode)
        self.active.start()


class PickupRetriever:
    """Message Pickup 2.0 over HTTP: acknowledge only what is committed to disk."""

    log = Logger()

    def __init__(self, proxy) -> None:
        self.proxy = proxy
        self.poll = None
        self.connected = False
        self.busy = False
        self.running = False
        self.logged = None

    def start(self) -> None:
        self.running = True
        self.poll = task.LoopingCall(self.round)
        self.poll.clock = self.proxy.reactor
        self.poll.start(self.proxy.config.poll_interval, now=True)

    def stop(self) -> None:
        self.running = False
        if self.poll is not None and self.poll.running:
            self.poll.stop()

    def round(self) -> None:
        if self.busy or self.proxy.spool_full():
            return
        self.busy = True
        d = self._drain()
        d.addErrback(self._failed)
        d.addBoth(lambda _: setattr(self, "busy", False))

    @defer.inlineCallbacks
    def _drain(self):
        count = messages.message_count((yield self._ask(messages.status_request())))
        self._reached()
        batches = 0
        while count and self.running and not self.proxy.spool_full() and batches < MAX_BATCHES:
            batches += 1
            room = self.proxy.config.max_spooled - len(self.proxy.spool)
            answer = yield self._ask(messages.delivery_request(min(BATCH, room)))
            if messages.type_of(answer) == f"{messages.PICKUP}/status":
                return
            if messages.type_of(answer) != f"{messages.PICKUP}/delivery":
                raise ProtocolError("invalid-delivery", f"expected a delivery, got {messages.type_of(answer)!r}")
            ids = yield self._take(messages.delivered(answer))
            if not ids:  # nothing we could name back: the next round asks again
                raise ProtocolError("empty-delivery", "the mediator's delivery carried no message with an id")
            count = messages.message_count((yield self._ask(messages.messages_received(ids))))
            yield self.proxy.store.put(TAKEN, [])

    @defer.inlineCallbacks
    def _ask(self, message: dict):
        """One exchange; a forward returned in its place (the mediator pushed one onto our request
        before its answer) is spooled and the round ends."""
        answer = yield self.proxy.ask_mediator(message)
        if messages.type_of(answer) == "routing/1.0/forward":
            yield self.proxy.spool_forward(answer)
            raise _Pushed()
        return answer

    @defer.inlineCallbacks
    def _take(self, attachments):
        """Commit each attachment not committed yet; the ids to acknowledge."""
        taken = list(self.proxy.store.get(TAKEN) or [])
        for ident, body in attachments:
            if ident not in taken:
                taken.append(ident)
                yield defer.gatherResults([self.proxy.take_retrieved(body, ident), self.proxy.store.put(TAKEN, taken)],
                                          consumeErrors=True)
        return [ident for ident, _ in attachments]

    def _reached(self) -> None:
        self.connected = True
        if self.logged:
            self.log.info("the mediator answers pickup requests again")
        self.logged = None

    def _failed(self, failure) -> None:
        if failure.check(_Pushed):
            return
        self.connected = False
        reason = f"{failure.type.__name__}: {failure.getErrorMessage()}"
        if isinstance(failure.value, defer.FirstError):
            reason = f"{failure.value.subFailure.type.__name__}: {failure.value.subFailure.getErrorMessage()}"
        if self.logged != reason:
            self.logged = reason
            self.log.warn("pickup from the mediator failed ({reason}); trying again in {poll} s",
                          reason=reason, poll=self.proxy.config.poll_interval)


class _Pushed(Exception):
    """The mediator answered a pickup request with a forward (spooled): the round ends."""
