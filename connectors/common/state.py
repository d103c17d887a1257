"""What a connector keeps between runs: its ``--state-dir``.

The directory is created 0700 (an existing one open to group or others is
refused) and holds one SQLite database, ``state.sqlite3``, with two things:

* a small key/value table (JSON values; read from memory, written through);
* spools: named FIFO queues of ``(meta, body)`` records, for messages that
  must survive a restart until someone takes them off.

Every write runs on one writer thread, so the reactor never waits for the
disk; writes queued while a commit is under way are committed together (a
group commit, one fsync for all of them).  A Deferred returned by a write
fires on the reactor thread only after its transaction is durable
(``synchronous=FULL`` in WAL mode): "spooled" means it survives ``kill -9``.
"""

import json
import os
import queue
import sqlite3
import stat
import threading
from dataclasses import dataclass

from twisted.internet import defer
from twisted.python.failure import Failure

from relayrouter.api import ConfigError

DB_NAME = "state.sqlite3"
SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    created REAL NOT NULL,
    meta TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_by_queue ON spool (queue, seq);
"""


def open_state_dir(path: str) -> str:
    """Create ``path`` 0700 if missing; refuse one that others may enter."""
    path = os.path.abspath(path)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ConfigError(f"--state-dir: cannot create {path}: {e.strerror}") from None
    if mode & 0o077:
        raise ConfigError(f"--state-dir: {path} is accessible by group or others (mode "
                          f"{stat.S_IMODE(mode):04o}); run chmod 700 {path}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"--state-dir: {path} is not writable")
    return path


@dataclass(frozen=True, slots=True)
class SpoolItem:
    seq: int
    created: float
    meta: dict
    body: bytes


class StateStore:
    """The connector's SQLite state: key/value plus spools."""

    def __init__(self, path: str, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.path = open_state_dir(path)
        self.db_path = os.path.join(self.path, DB_NAME)
        self._kv: dict = {}
        self._counts: dict[str, int] = {}
        self._load()
        self._queue: queue.Queue = queue.Queue()
        # The writer thread starts with the first write, in the process that writes:
        # twistd daemonizes (forks) after making the service, and a thread caught by
        # the fork inside SQLite would leave SQLite's locks held in the daemon.
        self._thread: threading.Thread | None = None
        self._pid: int | None = None

    def _start_writer(self) -> None:
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._writer, name="state-writer", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------- key/value

    def get(self, key: str, default=None):
        return self._kv.get(key, default)

    def put(self, key: str, value) -> defer.Deferred:
        text = json.dumps(value, sort_keys=True)
        self._kv[key] = json.loads(text)

        def upsert(db):
            db.execute("INSERT INTO kv (key, value) VALUES (?, ?)"
                       " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, text))

        return self._submit(upsert)

    # ------------------------------------------------------------- spools

    def spool(self, name: str) -> "Spool":
        return Spool(self, name)

    def count(self, name: str) -> int:
        return self._counts.get(name, 0)

    # ---------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Finish queued writes, then stop the writer thread."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(30)

    # ----------------------------------------------------------- internals

    def _load(self) -> None:
        db = self._connect()
        try:
            db.executescript(SCHEMA)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(f"--state-dir: {self.db_path} was written by a newer version (schema {version})")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._kv = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM kv")}
            self._counts = dict(db.execute("SELECT queue, COUNT(*) FROM spool GROUP BY queue").fetchall())
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"--state-dir: {self.db_path}: {e}") from None
        finally:
            db.close()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        os.chmod(self.db_path, 0o600)
        return db

    def _submit(self, work) -> defer.Deferred:
        """Run ``work(db)`` in a transaction on the writer thread."""
        if self._thread is None:
            self._start_writer()
        elif self._pid != os.getpid():
            self._after_fork()
        d = defer.Deferred()
        self._queue.put((work, d))
        return d

    def _after_fork(self) -> None:
        """twistd daemonizes (forks) after making the service, which may have opened
        this store: the writer thread did not survive; start another, with what
        was queued."""
        # The items, read without the old queue's lock: the fork may have caught the
        # writer thread holding it (it had just started), and no thread would release it.
        queued = list(self._queue.queue)
        self._queue = queue.Queue()
        for item in queued:
            self._queue.put(item)
        self._start_writer()

    def _writer(self) -> None:
        db = self._connect()
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if None in batch:
                stopping = True
                batch = [item for item in batch if item is not None]
            if batch:
                self._commit(db, batch)
        db.close()

    def _commit(self, db, batch) -> None:
        outcomes = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for work, d in batch:
                db.execute("SAVEPOINT op")
                try:
                    outcomes.append((d, work(db)))
                    db.execute("RELEASE op")
                except Exception:
                    outcomes.append((d, Failure()))
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
            db.execute("COMMIT")
        except Exception:
            failure = Failure()
            if db.in_transaction:
                db.execute("ROLLBACK")
            outcomes = [(d, failure) for _, d in batch]
        for d, outcome in outcomes:
            self.reactor.callFromThread(_fire, d, outcome)


def _fire(d: defer.Deferred, outcome) -> None:
    if isinstance(outcome, Failure):
        d.errback(outcome)
    else:
        d.callback(outcome)


class Spool:
    """A durable FIFO queue in the state store."""

    def __init__(self, store: StateStore, name: str) -> None:
        self.store = store
        self.name = name

    def __len__(self) -> int:
        return self.store.count(self.name)

    def append(self, body: bytes, meta: dict | None = None, created: float | None = None) -> defer.Deferred:
        """Fires with the new item's ``seq`` once it is durable."""
        meta_text = json.dumps(meta or {}, sort_keys=True)
        created = self.store.reactor.seconds() if created is None else created
        body = bytes(body)

        def insert(db):
            return db.execute("INSERT INTO spool (queue, created, meta, body) VALUES (?, ?, ?, ?)",
                              (self.name, created, meta_text, body)).lastrowid

        d = self.store._submit(insert)
        d.addCallback(self._counted, +1)
        return d

    def first(self, limit: int = 100, after: int = 0) -> defer.Deferred:
        """The oldest ``limit`` items (with ``seq > after``), oldest first."""

        def select(db):
            rows = db.execute("SELECT seq, created, meta, body FROM spool WHERE queue = ? AND seq > ?"
                              " ORDER BY seq LIMIT ?", (self.name, after, limit)).fetchall()
            return [SpoolItem(seq, created, json.loads(meta), bytes(body)) for seq, created, meta, body in rows]

        return self.store._submit(select)

    def get(self, seq: int) -> defer.Deferred:
        """The item ``seq``, or None."""

        def select(db):
            row = db.execute("SELECT seq, created, meta, body FROM spool WHERE queue = ? AND seq = ?",
                             (self.name, seq)).fetchone()
            return SpoolItem(row[0], row[1], json.loads(row[2]), bytes(row[3])) if row else None

        return self.store._submit(select)

    def remove(self, seq: int) -> defer.Deferred:
        """Fires with 1 once the item is gone for good (0 if it was not there)."""
        d = self.store._submit(lambda db: db.execute(
            "DELETE FROM spool WHERE queue = ? AND seq = ?", (self.name, seq)).rowcount)
        d.addCallback(lambda n: self._counted(n, -n))
        return d

    def _counted(self, result, delta: int):
        self.store._counts[self.name] = self.store._counts.get(self.name, 0) + delta
        return result
