"""The running connector: the store off the reactor thread, replication from
the router (live and from its event history), the API behind HTTP and WAMP.

Replication, theory of operation.  On every join the connector subscribes to
each ``[[topics]]`` pattern *first* and buffers what arrives, then reads the
router's event history (``relayrouter.history.read``) for the pattern from
the last publication it stored (the pattern's cursor), page by page, each
page committed before the next is asked for; then it takes the buffer and
goes live.  A publication that is both in the history and in the buffer is
recognised by its id and taken once, so there is no gap (we listened before
we read) and no duplicate (ids are checked in memory and again, under a
unique constraint, in the store).  Records, quarantine entries and cursors
are committed together, so after ``kill -9`` the cursor says exactly what
the store holds.  A failed commit is retried; nothing is dropped.
"""

import dataclasses
import signal
import time
from collections import OrderedDict

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions, SubscribeOptions
from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from relayrouter.api import e2e, httpinput, publish_envelope

from . import query
from .directory import Directory
from .feed import Feed
from .hooks import HookContext, Hooks
from .hooks import load as load_hooks
from .ingest import INTERNAL_ERROR, Ingestor, Quarantined
from .keyring import KeyBook
from .store import PerThread, Store

log = Logger(namespace="decrypt_search")

HISTORY_READ = "relayrouter.history.read"
UNKNOWN_PUBLICATION = "relayrouter.error.unknown_publication"
RECENT = 200_000  # publication ids remembered to skip catch-up/live overlap before decrypting
RETRY_WRITE = 1.0


class Database:
    """A :class:`Store` used from the reactor: one writer thread, reader threads."""

    def __init__(self, store: Store, reactor, readers: int = 2) -> None:
        self.store = store
        self.reactor = reactor
        self.writer = ThreadPool(1, 1, "decrypt-search-writer")
        self.readers = ThreadPool(1, readers, "decrypt-search-reader")
        self.writer_conns = PerThread(store, reader=False)
        self.reader_conns = PerThread(store, reader=True)
        self.open = False
        self._waiting: list = []

    def start(self) -> defer.Deferred:
        self.writer.start()
        self.readers.start()
        d = self._on(self.writer, self._open)
        return d.addCallback(self._opened)

    def _open(self) -> list:
        conn = self.writer_conns.get()
        migrated = self.store.create_schema(conn)
        self.store.maintain(conn)
        return migrated

    def _opened(self, migrated: list) -> None:
        for step in migrated:
            log.info("store migrated in place: {step}", step=step)
        self.open = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def _when_open(self) -> defer.Deferred:
        """Requests that come before the schema is ready wait for it."""
        if self.open:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting.append(d)
        return d

    def stop(self) -> None:
        self.writer.stop()
        self.readers.stop()
        self.writer_conns.close_all()
        self.reader_conns.close_all()

    def _on(self, pool, fn) -> defer.Deferred:
        return deferToThreadPool(self.reactor, pool, fn)

    def write(self, items: list, cursors: dict) -> defer.Deferred:
        return self._on(self.writer, lambda: self._write(items, cursors))

    def _write(self, items: list, cursors: dict):
        conn = self.writer_conns.get()
        result = self.store.write(conn, items, cursors, time.time())
        if result.stored:
            self.store.maintain(conn)
        return result

    def call(self, method: str, *args) -> defer.Deferred:
        """``store.method(connection, *args)`` on the writer thread."""
        return self._on(self.writer, lambda: getattr(self.store, method)(self.writer_conns.get(), *args))

    def read(self, method: str, *args) -> defer.Deferred:
        run = lambda: getattr(self.store, method)(self.reader_conns.get(), *args)  # noqa: E731
        if self.open:
            return self._on(self.readers, run)
        return self._when_open().addCallback(lambda _: self._on(self.readers, run))


class Workers:
    """Ingestion on worker threads, a batch split across them, results in order."""

    def __init__(self, ingestor: Ingestor, reactor, threads: int = 2) -> None:
        self.ingestor = ingestor
        self.reactor = reactor
        self.threads = threads
        self.pool = ThreadPool(1, threads, "decrypt-search-ingest")

    def start(self) -> None:
        self.pool.start()

    def stop(self) -> None:
        self.pool.stop()

    def _run(self, chunk: list) -> list:
        process = self.ingestor.process
        return [process(p, t, args) for p, t, args in chunk]

    def ingest(self, batch: list) -> defer.Deferred:
        size = max(1, -(-len(batch) // self.threads))
        chunks = [batch[i:i + size] for i in range(0, len(batch), size)]
        ds = [deferToThreadPool(self.reactor, self.pool, self._run, chunk) for chunk in chunks]
        d = defer.gatherResults(ds, consumeErrors=True)
        return d.addCallback(lambda parts: [outcome for part in parts for outcome in part])


class RecentIds:
    """The last ``size`` publication ids seen."""

    def __init__(self, size: int = RECENT) -> None:
        self.size = size
        self._ids: OrderedDict = OrderedDict()

    def add(self, publication: int) -> bool:
        """False when ``publication`` was seen already."""
        if publication in self._ids:
            return False
        self._ids[publication] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True


class Replicator:
    def __init__(self, config, ingestor: Ingestor, db: Database, hooks: Hooks, reactor) -> None:
        self.config = config
        self.ingestor = ingestor
        self.db = db
        self.hooks = hooks
        self.feed = None  # the live feed, offered each committed batch
        self.reactor = reactor
        self.recent = RecentIds()
        self.workers = Workers(ingestor, reactor)
        self.raw: list = []  # (publication, topic, args) accepted, not yet ingested
        self.raw_cursors: dict = {}
        self.ingesting: defer.Deferred | None = None
        self.ingesting_count = 0
        self.pending: list = []  # Record / Quarantined, not yet committed
        self.pending_cursors: dict = {}
        self.writing: defer.Deferred | None = None
        self.writing_count = 0
        self.buffers: dict[str, list] = {}  # rule key -> live events held back during its catch-up
        self.waiters: list = []  # (backlog below, Deferred)
        self.counts = {"received": 0, "stored": 0, "quarantined": 0, "overlap_skipped": 0, "write_errors": 0,
                       "history_events": 0}
        self.quarantined_by_reason: dict[str, int] = {}
        self.catchup: dict[str, dict] = {}
        self.session = None

    # ------------------------------------------------------------ sessions

    @defer.inlineCallbacks
    def joined(self, session, details):
        self.session = session
        for rule in self.config.topics:
            self.buffers[key(rule)] = []
            yield session.subscribe(self._handler(rule), rule.uri,
                                    options=SubscribeOptions(match=rule.match, details=True))
        cursors = yield self.db.read("cursors")
        for rule in self.config.topics:
            yield self.catch_up(session, rule, cursors.get(key(rule)))

    def left(self, reason) -> None:
        self.session = None
        self.buffers.clear()

    def _handler(self, rule):
        def on_event(*args, details=None, **kwargs):
            topic = details.topic or rule.uri
            buffer = self.buffers.get(key(rule))
            if buffer is not None:
                buffer.append((details.publication, topic, args))
            else:
                self.accept(rule, details.publication, topic, args)
        return on_event

    # ------------------------------------------------------------ catch-up

    @defer.inlineCallbacks
    def catch_up(self, session, rule, after):
        state = self.catchup[key(rule)] = {"from": after, "events": 0, "done": False, "error": None}
        started = time.time()
        page_size = self.config.catchup_page
        reading = self._read(session, rule, after)
        while True:
            try:
                page = yield reading
            except ApplicationError as e:
                if e.error == UNKNOWN_PUBLICATION and after is not None:
                    log.error("the router's history no longer holds publication {after} of {uri}: resuming from "
                              "the oldest event it keeps; events in between are lost to this connector",
                              after=after, uri=rule.uri)
                    state["error"] = f"history lost our place ({e.error}); resumed from its oldest event"
                    after = None
                    reading = self._read(session, rule, after)
                    continue
                state["error"] = f"{e.error}: {e.error_message()}"
                log.error("cannot catch up on {uri} from the router's history: {error} (live events only until "
                          "the next reconnect)", uri=rule.uri, error=state["error"])
                break
            events = page.get("events", [])
            if events:
                after = events[-1]["publication"]
            # ask for the next page now: the router reads it while we decrypt this one
            reading = self._read(session, rule, after) if page.get("more") else None
            for event in events:
                self.counts["history_events"] += 1
                self.accept(rule, event["publication"], event["topic"], event.get("args") or [])
            state["events"] += len(events)
            yield self.drain(below=2 * page_size)
            if reading is None:
                break
        yield self.drain()
        buffered = self.buffers.pop(key(rule), None) or []
        for publication, topic, args in buffered:
            self.accept(rule, publication, topic, args)
        state.update(done=True, seconds=round(time.time() - started, 3))
        if state["events"]:
            log.info("caught up on {uri}: {n} events from the router's history", uri=rule.uri, n=state["events"])

    def _read(self, session, rule, after) -> defer.Deferred:
        return session.call(HISTORY_READ, rule.uri, match=rule.match, after=after, limit=self.config.catchup_page)

    # ----------------------------------------------------------- ingestion

    def accept(self, rule, publication: int, topic: str, args) -> None:
        if not self.recent.add(publication):
            self.counts["overlap_skipped"] += 1
            return
        self.counts["received"] += 1
        self.raw.append((publication, topic, list(args)))
        self.raw_cursors[key(rule)] = publication
        self._pump()

    # Two stages, each one batch at a time, in order: ingest (decrypt, verify,
    # validate: on worker threads, libsodium runs without the GIL), then commit
    # (the writer thread).  While batch k commits, batch k+1 is decrypted.

    def backlog(self) -> int:
        return len(self.raw) + self.ingesting_count + len(self.pending) + self.writing_count

    def _pump(self) -> None:
        if self.ingesting is None and self.raw:
            batch, cursors = self.raw, self.raw_cursors
            self.raw, self.raw_cursors = [], {}
            self.ingesting_count = len(batch)
            self.ingesting = self.workers.ingest(batch)
            self.ingesting.addCallbacks(self._ingested, self._ingest_failed, callbackArgs=(cursors,),
                                        errbackArgs=(batch, cursors))
        if self.writing is None and self.pending:
            batch, cursors = self.pending, self.pending_cursors
            self.pending, self.pending_cursors = [], {}
            self.writing_count = len(batch)
            self.writing = self.db.write(batch, cursors)
            self.writing.addCallbacks(self._written, self._write_failed, errbackArgs=(batch, cursors))
        self._wake_waiters()

    def _ingested(self, outcomes: list, cursors: dict) -> None:
        self.ingesting, self.ingesting_count = None, 0
        self.pending += outcomes
        self.pending_cursors.update(cursors)
        self._pump()

    def _ingest_failed(self, failure, batch: list, cursors: dict) -> None:
        # Ingestor.process returns refusals as values; this is a bug of ours, never the input's fault:
        # keep the input in quarantine rather than lose it.
        log.failure("ingesting {n} events failed", failure, n=len(batch))
        now = time.time()
        self._ingested([Quarantined(p, t, INTERNAL_ERROR, f"the connector failed on it: {failure.value!r}"[:500],
                                    now, _payload(args)) for p, t, args in batch], cursors)

    def _written(self, result) -> None:
        self.writing, self.writing_count = None, 0
        self.counts["stored"] += len(result.stored)
        self.counts["quarantined"] += len(result.quarantined)
        self.counts["overlap_skipped"] += result.skipped
        for q in result.quarantined:
            seen = self.quarantined_by_reason[q.reason] = self.quarantined_by_reason.get(q.reason, 0) + 1
            if seen == 1 or seen % 1000 == 0:  # logged once per reason, then every thousandth
                log.warn("quarantined publication {publication} on {topic}: {reason}: {message} "
                         "({n} so far for this reason; GET /quarantine lists them)", publication=q.publication,
                         topic=q.topic, reason=q.reason, message=q.message, n=seen)
        if self.feed is not None:
            self.feed.publish(result.stored, result.committed)
        for record_id, record in result.stored:
            self.hooks.run(record.as_dict(record_id))
        self._pump()

    def _write_failed(self, failure, batch: list, cursors: dict) -> None:
        self.counts["write_errors"] += 1
        log.failure("committing {n} records failed; retrying in {s} s", failure, n=len(batch), s=RETRY_WRITE)
        self.pending = batch + self.pending
        self.pending_cursors = {**cursors, **self.pending_cursors}
        self.writing = task.deferLater(self.reactor, RETRY_WRITE, lambda: None)
        self.writing.addCallback(lambda _: self._retry())

    def _retry(self) -> None:
        self.writing, self.writing_count = None, 0
        self._pump()

    def drain(self, below: int = 1) -> defer.Deferred:
        """Fires when fewer than ``below`` accepted events are not yet committed (1: all committed)."""
        if self.backlog() < below:
            return defer.succeed(None)
        d = defer.Deferred()
        self.waiters.append((below, d))
        return d

    def _wake_waiters(self) -> None:
        backlog = self.backlog()
        ready = [(b, d) for b, d in self.waiters if backlog < b]
        if ready:
            self.waiters = [w for w in self.waiters if w not in ready]
            for _, d in ready:
                d.callback(None)

    def describe(self) -> dict:
        return {**self.counts, "quarantined_by_reason": dict(self.quarantined_by_reason),
                "pending": self.backlog(), "catchup": dict(self.catchup)}


def _payload(args) -> bytes:
    first = args[0] if args else b""
    return bytes(first) if isinstance(first, (bytes, bytearray)) else repr(args).encode()[:65536]


def key(rule) -> str:
    return f"{rule.match}:{rule.uri}"


class Api:
    """What the HTTP API and the WAMP procedures offer; each returns a Deferred."""

    def __init__(self, config, keys, db: Database, replicator: Replicator, router, hooks: Hooks,
                 book: KeyBook | None = None, directory=None) -> None:
        self.config = config
        self.keys = keys
        self.book = book if book is not None else KeyBook(config, keys)
        self.directory = directory
        self.db = db
        self.replicator = replicator
        self.router = router
        self.hooks = hooks
        self.feed = None

    def search(self, params: dict) -> defer.Deferred:
        return self.db.read("search", query.parse_search(params, self.config))

    def get(self, record_id) -> defer.Deferred:
        if isinstance(record_id, str) and record_id.isdigit():
            record_id = int(record_id)
        if not isinstance(record_id, int) or isinstance(record_id, bool):
            raise query.QueryError("id", f"{record_id!r} is not a record id")
        return self.db.read("get", record_id)

    def analytics(self, params: dict) -> defer.Deferred:
        return self.db.read("analytics", query.parse_analytics(params, self.config))

    def report(self, name, params: dict) -> defer.Deferred:
        return self.db.read("report", query.parse_report(name, params, self.config))

    def quarantine(self, params: dict) -> defer.Deferred:
        params = query.flat_params(params)
        reason = params.get("reason")
        limit = query.parse_limit(params.get("limit", 50))
        before = params.get("before")
        if before is not None:
            try:
                before = httpinput.integer(str(before), "before", low=0)
            except httpinput.BadInput:
                raise query.QueryError("before", f"{str(before)[:40]!r} is not a quarantine id") from None
        return self.db.read("quarantine", reason, limit, before)

    def recipients(self, names) -> list:
        view = self.book.view
        if names is None:
            names = self.config.publish_for if self.config.publish_for_given else sorted(view.recipients)
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise query.QueryError("recipients", "must be a list of organisation names")
        known = set(self.config.peers) | set(self.config.directory_pins) | set(view.recipients) | {self.config.org}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise query.QueryError("recipients", f"unknown organisation(s): {', '.join(unknown)}")
        chosen = [self.keys.public] + [view.recipients.get(n) for n in names if n != self.config.org]
        missing = [n for n, p in zip([self.config.org] + [n for n in names if n != self.config.org], chosen)
                   if p is None or not p.encryption or p.encryption_kid in view.retired]
        if missing:
            raise query.QueryError("recipients", f"no encryption key for {', '.join(missing)} "
                                   "(none configured or announced, or the current one is retired)")
        return chosen

    @defer.inlineCallbacks
    def publish(self, topic, document, recipients=None):
        """Seal ``document`` for us and the recipients, sign it as the organisation, publish (acknowledged)."""
        if not isinstance(topic, str) or not topic:
            raise query.QueryError("topic", "must be a topic URI")
        if not isinstance(document, dict):
            raise query.QueryError("document", "must be a JSON object")
        chosen = self.recipients(recipients)
        session = self.router.session
        if session is None or not session.is_attached():
            raise NotConnected("not connected to the router; try again shortly")
        envelope = e2e.seal(document, topic, self.keys, chosen)
        # exclude_me off: what the organisation signs is replicated into its own store too
        publication = yield publish_envelope(session, topic, envelope, acknowledge=True, exclude_me=False)
        return {"publication": publication.id, "topic": topic, "message_id": e2e.parse(envelope).message_id.hex(),
                "recipients": [p.org for p in chosen]}

    @defer.inlineCallbacks
    def status(self):
        counts = yield self.db.read("counts")
        return {"organisation": self.config.org, "encryption_kid": self.keys.public.encryption_kid,
                "signing_kid": self.keys.public.signing_kid, "keys": self.describe_keys(),
                "router": self.router.describe(),
                "store": {"backend": self.config.store_backend, **counts}, "replication": self.replicator.describe(),
                "hooks": self.hooks.describe(), "feed": self.feed.describe() if self.feed else None,
                "directory": self.directory.describe() if self.directory else None}

    def describe_keys(self) -> dict:
        """Key ids only: ours (current, previous), the peers' in use (current first), the retired ones."""
        def ids(public):
            return {"encryption_kid": public.encryption_kid, "signing_kid": public.signing_kid}

        view = self.book.view
        peers = {}
        for public in view.senders.values():
            if public.org != self.config.org:
                peers.setdefault(public.org, []).append(ids(public))
        for org, public in view.recipients.items():  # the current keys first
            current = ids(public)
            rest = [k for k in peers.get(org, []) if k != current]
            peers[org] = [current] + rest
        return {"current": ids(self.keys.public), "previous": [ids(k.public) for k in self.config.previous_keys],
                "peers": peers, "retired": sorted(view.retired)}


class NotConnected(Exception):
    pass


PROCEDURES = ("search", "get", "analytics", "report", "quarantine", "publish", "status")


class Procedures:
    """The API as WAMP procedures ``<prefix>.search`` etc.; the router's roles authorize them."""

    def __init__(self, api: Api, prefix: str) -> None:
        self.api = api
        self.prefix = prefix

    @defer.inlineCallbacks
    def register(self, session):
        for name in PROCEDURES:
            yield session.register(self._wrap(name), f"{self.prefix}.{name}", options=RegisterOptions())

    def _wrap(self, name: str):
        method = getattr(self, f"_{name}")

        @defer.inlineCallbacks
        def procedure(*args, **kwargs):
            try:
                result = yield method(*args, **kwargs)
            except query.QueryError as e:
                raise ApplicationError("wamp.error.invalid_argument", e.message)
            except NotConnected as e:
                raise ApplicationError("relayrouter.error.unavailable", str(e))
            return result

        return procedure

    def _search(self, **params):
        return self.api.search(params)

    def _get(self, record_id=None, **kwargs):
        return self.api.get(kwargs.get("id", record_id)).addCallback(_found)

    def _analytics(self, **params):
        return self.api.analytics(params)

    def _report(self, name=None, **params):
        return self.api.report(name, params)

    def _quarantine(self, **params):
        return self.api.quarantine(params)

    def _publish(self, topic=None, document=None, recipients=None):
        return self.api.publish(topic, document, recipients)

    def _status(self):
        return self.api.status()


def _found(record):
    if record is None:
        raise ApplicationError("relayrouter.error.not_found", "no such record")
    return record


# what SIGHUP reloads: the keys and whom they trust (the rest of the file waits for a restart)
KEY_SETTINGS = ("key_file", "key_env", "peers", "previous_peers", "previous_keys", "retired_keys",
                "trusted_senders", "trusted_senders_given", "publish_for", "publish_for_given", "directory_pins",
                "directory_trust")


class DecryptSearch(service.MultiService):
    """Store, replication, router connection, HTTP API, hooks: one service."""

    def __init__(self, config, keys, store: Store, router_factory, http_factory=None, reactor=None,
                 hook_functions=None, reread=None) -> None:
        super().__init__()
        self.reread = reread  # () -> (config, keys) read again from the files: SIGHUP reloads the keys
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.config = config
        self.db = Database(store, reactor)
        self.book = KeyBook(config, keys)
        self.ingestor = Ingestor(config, keys, book=self.book)
        self.directory = Directory(config, keys, self.book, self.db) if config.directory_topic else None
        functions = hook_functions if hook_functions is not None else load_hooks(config.hooks)
        self.hooks = Hooks(functions, HookContext(self._hook_publish))
        self.replicator = Replicator(config, self.ingestor, self.db, self.hooks, reactor)
        self.feed = self.replicator.feed = Feed(self.db, config, reactor)
        self.router = router_factory(on_join=self._joined, on_leave=self.replicator.left)
        self.api = Api(config, keys, self.db, self.replicator, self.router, self.hooks, self.book, self.directory)
        self.api.feed = self.feed
        self.procedures = Procedures(self.api, config.procedures) if config.procedures else None
        self.ready = defer.Deferred()
        self.http = http_factory(self.api) if http_factory else []
        for child in self.http:
            child.setServiceParent(self)

    def _hook_publish(self, topic, document, recipients):
        return self.api.publish(topic, document, recipients)

    @defer.inlineCallbacks
    def _joined(self, session, details):
        if self.directory is not None:  # the peers' keys first: replication needs them
            yield self.directory.joined(session)
        yield self.replicator.joined(session, details)
        if self.procedures is not None:
            yield self.procedures.register(session)

    def startService(self) -> None:
        super().startService()
        if self.reread is not None:
            signal.signal(signal.SIGHUP, lambda *_: self.reactor.callFromThread(self.on_sighup))
        self.replicator.workers.start()
        self.feed.start()
        d = self.db.start()
        d.addCallback(lambda _: self.router.setServiceParent(self))
        d.addCallbacks(lambda _: self.ready.callback(None), self._store_failed)

    # ------------------------------------------------------------ SIGHUP

    def on_sighup(self) -> None:
        """Read the files again and take their key settings; anything else waits for a restart."""
        try:
            config, keys = self.reread()
        except Exception as e:  # ConfigError, KeyFileError: the message names the key or file
            log.error("SIGHUP: keys not reloaded, those in use stay: {error}", error=str(e))
            return
        others = self.reload_keys(config, keys)
        view = self.book.view
        log.info("SIGHUP: keys reloaded: signing key {kid}, encryption key {enc}, {n} previous pair(s) of ours, "
                 "{r} retired key id(s)", kid=keys.public.signing_kid, enc=keys.public.encryption_kid,
                 n=len(config.previous_keys), r=len(view.retired))
        if others:
            log.warn("SIGHUP: {names} changed as well; they take effect at the next restart",
                     names=", ".join(others))
        session = self.router.session
        if self.directory is not None and session is not None and session.is_attached():
            self.directory.publish_own(session).addErrback(
                lambda f: log.failure("cannot publish our key record", f))

    def reload_keys(self, config, keys) -> list:
        """Use ``config``'s key settings and ``keys`` from now on; the names of other settings that differ."""
        old = self.config
        merged = dataclasses.replace(old, **{name: getattr(config, name) for name in KEY_SETTINGS})
        others = [f.name for f in dataclasses.fields(old)
                  if f.name not in KEY_SETTINGS and getattr(config, f.name) != getattr(old, f.name)]
        self.config = merged
        for part in (self.book, self.ingestor, self.api, self.directory):
            if part is not None:
                part.config, part.keys = merged, keys
        self.book.rebuild()
        return others

    def _store_failed(self, failure) -> None:
        log.failure("cannot open the store", failure)
        self.ready.errback(failure)
        from twisted.internet import reactor

        if reactor.running:
            reactor.stop()

    @defer.inlineCallbacks
    def stopService(self):
        self.feed.stop()
        yield super().stopService()
        yield self.replicator.drain()
        self.replicator.workers.stop()
        self.db.stop()

