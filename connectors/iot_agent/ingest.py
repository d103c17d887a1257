"""From a device message to a stored, published dojot message.

``accept(device, items)`` normalizes what a device sent (refusing it whole
with ``Invalid`` when a value is bad), queues the messages for the next group
commit and returns a Deferred that fires once they are durable — then each is
published on ``device-data`` in its tenant's realm and handed to the
Kafka-WS connections.  Callers answer the device only after that (HTTP 204,
MQTT PUBACK): what a device was told is stored survives ``kill -9``.

Messages go to the store in batches: at most ``max_in_flight`` (1) batch is
being committed at a time, and what arrives meanwhile waits for the next
one, so a batch grows with the load and the commit rate stays bounded (one
fsync per batch).  A second batch in flight gained nothing: the store thread
took it from its queue into the first one's transaction, under savepoints
(more statements for a smaller batch), and the store thread was busy twice
as long for the same messages.

Lingering.  Devices that post one message at a time and wait for the answer
(HTTP keep-alive clients, an MQTT connection's in-flight window) come back
right after their answer, but too late for the next commit: that one has
already started with what arrived during the last.  So they split into two
cohorts that take turns, each commit carrying half of them, and when
commits are slow (a loaded disk) the rate is half what one commit could
carry.  When a commit lands with messages waiting, the next one therefore
waits for as many callers as it had plus those just answered, but never
longer than the last commit took (at most ``max_linger``): under steady
load the cohorts merge; a pending batch with nobody coming back waits at
most one commit's time; and a message that finds the store idle is
committed at once, as before.
"""

from collections import Counter

from twisted.internet import defer
from twisted.logger import Logger

from .normalize import Invalid, envelope, normalize
from .registry import Tables, data_rows

log = Logger()

DEVICE_DATA = "device-data"


class Ingest:
    def __init__(self, store, directory, reactor, publish=None, hub=None, max_batch: int = 5000,
                 max_in_flight: int = 1, max_linger: float = 0.002) -> None:
        self.store = store
        self.directory = directory
        self.reactor = reactor
        self.publish = publish  # fn(tenant, topic, message) -> None when sent, else why not
        self.hub = hub  # KafkaWsHub
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self.max_linger = max_linger
        self.in_flight = 0
        self.counters: Counter = Counter()
        self._pending: list[tuple[dict, defer.Deferred]] = []
        self._pending_callers = 0  # the Deferreds in _pending (a create-many post is one caller)
        self._awaited = 0  # while lingering: the callers the next flush waits for
        self._flush_call = None
        self._flushed_at = 0.0

    def now_ms(self) -> int:
        return int(self.reactor.seconds() * 1000)

    def accept(self, device: dict, bodies: list, envelope_only: bool = True) -> defer.Deferred:
        """Normalize and queue; raises Invalid (nothing queued) when one body is bad."""
        try:
            messages = self.normalized(device, bodies, envelope_only)
        except Invalid:
            self.counters["refused_invalid"] += 1
            raise
        return self.queue(messages)

    def normalized(self, device: dict, bodies: list, envelope_only: bool = True) -> list[dict]:
        """The stored messages of ``bodies``, or Invalid; changes nothing (the
        HTTP lane tries it before it takes a request)."""
        tenant, device_id = device["tenant"], device["id"]
        types = self.directory.types.get((tenant, device_id))
        now = self.now_ms()
        messages = []
        for index, body in enumerate(bodies):
            try:
                attrs, ts = envelope(body, now, envelope_only)
                messages.append(normalize(tenant, device_id, attrs, ts, types))
            except Invalid as e:
                if len(bodies) > 1:
                    e.index = index  # create-many answers {index: reason}, as dojot does
                raise
        return messages

    def queue(self, messages: list[dict]) -> defer.Deferred:
        """Queue normalized messages for the next commit; the Deferred fires once they are stored."""
        d = defer.Deferred()
        for message in messages[:-1]:
            self._pending.append((message, None))
        self._pending.append((messages[-1], d))
        self._pending_callers += 1
        if self.in_flight >= self.max_in_flight:
            return d
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self._flush)
        elif self._awaited and self._pending_callers >= self._awaited:
            self._flush()  # lingering, and all it waited for has come
        return d

    def _flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        self._awaited = 0
        if not self._pending or self.in_flight >= self.max_in_flight:
            return
        batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        rows = data_rows([message for message, _ in batch])
        self._pending_callers -= _callers(batch)
        self.in_flight += 1
        self._flushed_at = self.reactor.seconds()
        stored = self.store.run(Tables.insert_rows, rows)
        stored.addCallbacks(self._stored, self._not_stored, (batch,), None, (batch,), None)
        stored.addBoth(self._landed, batch)

    def _landed(self, _, batch) -> None:
        """After a commit's callers are answered: the next batch, if any,
        lingers for them (module docstring)."""
        self.in_flight -= 1
        if not self._pending:
            return
        if len(self._pending) >= self.max_batch:
            self._flush()  # a full batch waits for nobody
            return
        self._awaited = self._pending_callers + _callers(batch)
        linger = min(self.reactor.seconds() - self._flushed_at, self.max_linger)
        self._flush_call = self.reactor.callLater(max(linger, 0), self._flush)

    def _stored(self, _, batch) -> None:
        self.counters["stored"] += len(batch)
        for message, d in batch:
            tenant = message["metadata"]["tenant"]
            if self.publish is not None:
                refused = self.publish(tenant, DEVICE_DATA, message)
                self.counters["published" if refused is None else f"not_published_{refused}"] += 1
            if self.hub is not None:
                self.hub.deliver(tenant, DEVICE_DATA, message)
        for _, d in batch:
            if d is not None:
                d.callback(None)

    def _not_stored(self, failure, batch) -> None:
        self.counters["store_failed"] += len(batch)
        log.error("storing {count} device messages failed: {error}", count=len(batch),
                  error=failure.getErrorMessage())
        for _, d in batch:
            if d is not None:
                d.errback(failure)


def _callers(batch) -> int:
    return sum(1 for _, d in batch if d is not None)
