"""What the router persists, behind narrow interfaces.

* Backends of the durable store, whose interface and values (history,
  mailboxes) belong to the core (:mod:`relayrouter.core.records`):
  :mod:`.sql` over :mod:`.sqlite` (the embedded default, a file in the state
  directory) or :mod:`.postgres`, and :mod:`.memory` for tests.  All writes go through one writer thread per
  database in group commits (:mod:`.writer`): nothing here runs on the
  reactor thread's publish/call path.
* :mod:`.denylist`: the deny list's own small SQLite file, read at start and
  written on administrative changes only.
"""

from pathlib import Path
from typing import Callable

from ..core.records import Store, StoreError  # noqa: F401 (the package's API)


def open_store(storage, state_dir: str | Path, deliver: Callable) -> "Store":
    """The configured backend (not started): PostgreSQL when ``storage.dsn``
    is set, else SQLite in ``state_dir``. ``deliver(fn, *args)`` runs
    completions on the reactor thread (``reactor.callFromThread``)."""
    from .sql import SqlStore

    if storage is not None and storage.dsn:
        from .postgres import PostgresDialect

        dialect = PostgresDialect(storage.dsn)
    else:
        from .sqlite import FILENAME, SqliteDialect

        synchronous = storage.synchronous if storage is not None else "full"
        dialect = SqliteDialect(Path(state_dir) / FILENAME, synchronous)
    max_batch = storage.max_batch if storage is not None else 4096
    return SqlStore(dialect, deliver, max_batch=max_batch)
