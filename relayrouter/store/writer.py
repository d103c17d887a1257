"""One writer thread per database, committing work in groups.

Theory of operation
-------------------
Callers (the reactor thread) put ``(kind, argument, done)`` on a queue and
return at once.  The writer thread takes everything queued (up to
``max_batch``), runs it in ONE transaction and commits: while it commits,
the next group gathers, so under load one commit (one fsync) covers many
messages, and when idle a lone message is committed at once, with no timer.
Consecutive work of the same kind is handed to the backend together
(``run(connection, kind, arguments) -> results``), so it can use one
``executemany``.

Outcomes go back through ``deliver(fn, *args)`` (``reactor.callFromThread``
in the router): one call per group, in submission order.  If the group's
transaction fails, it is rolled back and each piece of work is retried in a
transaction of its own, so one bad item fails alone; if the commit itself
fails (disk full, server gone), every item of the group gets the error.
"""

import os
import queue
import threading
import time
from typing import Any, Callable

from twisted.logger import Logger

from ..core.stats import Histogram
from ..core.records import StoreError

log = Logger(namespace="relayrouter.store")

_STOP = object()


class Writer:
    def __init__(self, name: str, connect: Callable[[], Any], run: Callable,
                 deliver: Callable, max_batch: int = 4096) -> None:
        self.name = name
        self._connect = connect
        self._run = run
        self._deliver = deliver
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None  # the process that started the thread
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.failures = 0  # work that failed, done callback or not
        self.commits = 0
        self.commit_latency = Histogram()  # seconds per group commit (work + COMMIT), for metrics
        self.items = 0

    # ------------------------------------------------------------ reactor side

    def start(self, setup: Callable[[Any], Any]) -> Any:
        """Start the thread, connect there and run ``setup(connection)``
        (schema upgrade, loading); blocks until done and returns its result."""
        result: list = []

        def first(connection):
            result.append(setup(connection))

        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._main, args=(first,),
                                        name=f"relayrouter-store-{self.name}", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error
        return result[0] if result else None

    def after_fork(self) -> None:
        """In a process forked since :meth:`start`, where the thread is gone: a
        new thread on a connection of its own (the old one is left untouched,
        as a database connection must not be used across a fork), taking the
        work queued so far."""
        if self._thread is None or self._pid == os.getpid():
            return
        queued = []
        while True:
            try:
                queued.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._queue = queue.SimpleQueue()
        for item in queued:
            self._queue.put(item)
        self._ready = threading.Event()
        self.start(lambda connection: None)

    def submit(self, kind: str, argument: Any, done: Callable | None = None) -> None:
        self._queue.put((kind, argument, done))

    def call(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(connection)`` on the writer thread and wait for it (start-up, tests)."""
        box: list = []
        finished = threading.Event()

        def done(outcome):
            box.append(outcome)
            finished.set()

        self._queue.put(("__call__", fn, done))
        finished.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def alive(self) -> bool:
        """Whether the writer thread runs (what readiness asks of the store)."""
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None

    # -------------------------------------------------------------- the thread

    def _main(self, setup) -> None:
        try:
            connection = self._connect()
            setup(connection)
        except BaseException as e:  # noqa: BLE001 - reported to start()
            self._startup_error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop(connection)
        finally:
            try:
                connection.close()
            except Exception:  # noqa: BLE001
                pass

    def _loop(self, connection) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            work = [item for item in batch if item is not _STOP]
            if work:
                outcomes = self._group(connection, work)
                self._hand_back(work, outcomes)
            if stop:
                return

    def _group(self, connection, work: list) -> list:
        started = time.monotonic()
        try:
            outcomes = self._run_all(connection, work)
            connection.commit()
            self.commit_latency.observe(time.monotonic() - started)
            self.commits += 1
            self.items += len(work)
            return outcomes
        except Exception as e:  # noqa: BLE001
            _rollback(connection)
            if len(work) == 1:
                return [self._failed(e, work[0])]
        # One item failed the group: each on its own, so only it fails.
        return [self._alone(connection, item) for item in work]

    def _alone(self, connection, item) -> Any:
        try:
            outcome = self._run_all(connection, [item])[0]
            connection.commit()
            self.commits += 1
            self.items += 1
            return outcome
        except Exception as e:  # noqa: BLE001
            _rollback(connection)
            return self._failed(e, item)

    def _run_all(self, connection, work: list) -> list:
        outcomes: list = []
        start = 0
        while start < len(work):
            kind = work[start][0]
            end = start + 1
            while end < len(work) and work[end][0] == kind:
                end += 1
            arguments = [item[1] for item in work[start:end]]
            if kind == "__call__":
                outcomes.extend(fn(connection) for fn in arguments)
            else:
                outcomes.extend(self._run(connection, kind, arguments))
            start = end
        return outcomes

    def _failed(self, error: Exception, item) -> StoreError:
        self.failures += 1
        if isinstance(error, StoreError):
            return error
        if item[2] is None:
            log.error("Store {name}: {kind} failed: {error}", name=self.name, kind=item[0],
                      error=_describe(error))
        failure = StoreError(f"{item[0]} failed: {_describe(error)}")
        failure.__cause__ = error
        return failure

    def _hand_back(self, work: list, outcomes: list) -> None:
        calls = []
        for item, outcome in zip(work, outcomes):
            if item[0] == "__call__":
                # call() waits on this thread's answer: what was submitted
                # before it is handed back first, so it is a barrier.
                if calls:
                    self._deliver(_complete, calls)
                    calls = []
                item[2](outcome)
            elif item[2] is not None:
                calls.append((item[2], outcome))
        if calls:
            self._deliver(_complete, calls)


def _complete(calls: list) -> None:
    for done, outcome in calls:
        try:
            done(outcome)
        except Exception:  # noqa: BLE001 - one caller's bug must not stop the others
            log.failure("Store completion raised")


def _rollback(connection) -> None:
    try:
        connection.rollback()
    except Exception:  # noqa: BLE001
        pass


def _describe(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
