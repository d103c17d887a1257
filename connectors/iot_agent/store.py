"""The agent's database thread: every registry and data operation runs there,
in group commits, and its result comes back on the reactor thread.

``Store.run(fn, *args)`` queues ``fn(tables, *args)``; the thread takes all
that is queued (up to ``max_batch``), runs each, commits once, and only then
fires each Deferred with its result (or its exception; a failing operation
is rolled back alone by a savepoint, the others of the batch commit).  So a
Deferred that fires means "durable": with SQLite in WAL mode and
``synchronous=FULL`` it survives ``kill -9`` and power loss; with PostgreSQL,
the server's commit.
"""

import queue
import threading
import time

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from .registry import Tables, connect

log = Logger()
_STOP = object()


class StoreClosed(Exception):
    pass


class Store:
    def __init__(self, dsn: str, reactor=None, max_batch: int = 2048, synchronous: str = "full") -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.dsn = dsn
        self.synchronous = synchronous
        self.max_batch = max_batch
        self.dialect = "postgresql" if dsn.startswith(("postgresql://", "postgres://")) else "sqlite"
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = None
        self._opened = threading.Event()
        self._open_error = None
        self.commits = 0
        self.operations = 0
        self.busy_seconds = 0.0  # time the thread spent running and committing batches
        self.cpu_seconds = 0.0  # the thread's CPU time in them (the rest: waiting for the disk, or for the GIL)

    def stats(self) -> dict:
        return {"commits": self.commits, "operations": self.operations,
                "busy_seconds": round(self.busy_seconds, 3),
                "cpu_seconds": round(self.cpu_seconds, 3), "queued": self._queue.qsize()}

    def describe(self) -> str:
        if self.dialect == "sqlite":
            return f"SQLite {self.dsn}"
        tail = self.dsn.rsplit("@", 1)[-1].split("?", 1)[0]  # never the credentials
        return f"PostgreSQL {tail}"

    def start(self) -> None:
        """Open the database (on the thread) and wait for it: a bad DSN fails the start."""
        self._thread = threading.Thread(target=self._main, name="iot-agent-store", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._open_error is not None:
            raise self._open_error

    def run(self, fn, *args) -> defer.Deferred:
        d = defer.Deferred()
        if self._thread is None or not self._thread.is_alive():
            d.errback(StoreClosed("the store is closed"))
            return d
        self._queue.put((fn, args, d))
        return d

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(10)

    # ------------------------------------------------------------- thread

    def _main(self) -> None:
        try:
            tables = Tables(*connect(self.dsn, self.synchronous))
        except Exception as e:  # noqa: BLE001 - the driver's own error, reported at start
            text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            self._open_error = RuntimeError(f"cannot open the database ({self.describe()}): {text}")
            self._opened.set()
            return
        self._opened.set()
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                batch = [first]
                while len(batch) < self.max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        self._queue.put(_STOP)
                        break
                    batch.append(item)
                self._commit(tables, batch)
        finally:
            tables.close()

    def _commit(self, tables: Tables, batch: list) -> None:
        began, cpu = time.perf_counter(), time.thread_time()
        outcomes = []
        savepoints = len(batch) > 1
        tables.begin()
        for fn, args, d in batch:
            try:
                if savepoints:
                    tables._run("SAVEPOINT op")
                outcomes.append((d, fn(tables, *args)))
                if savepoints:
                    tables._run("RELEASE SAVEPOINT op")
            except Exception:  # noqa: BLE001 - this operation's failure goes to its caller
                failure = Failure()
                if savepoints:
                    try:
                        tables._run("ROLLBACK TO SAVEPOINT op")
                        tables._run("RELEASE SAVEPOINT op")
                    except Exception:  # noqa: BLE001
                        pass
                else:
                    tables.rollback()
                outcomes.append((d, failure))
        try:
            tables.commit()
            self.commits += 1
        except Exception:  # noqa: BLE001 - nothing of the batch is durable
            failure = Failure()
            tables.rollback()
            outcomes = [(d, failure) for d, _ in outcomes]
        self.operations += len(batch)
        self.busy_seconds += time.perf_counter() - began
        self.cpu_seconds += time.thread_time() - cpu
        self.reactor.callFromThread(_deliver, outcomes)


def _deliver(outcomes) -> None:
    for d, outcome in outcomes:
        if isinstance(outcome, Failure):
            d.errback(outcome)
        else:
            d.callback(outcome)
