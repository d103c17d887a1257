"""Where deny-list entries live between restarts.

The store is deliberately dumb: it keeps rows of ``(claim, value,
expires_at, reason)`` and knows nothing of sessions.  The router opens it and
loads every row once at start (``startService``, never while the service is
only being built) into :class:`relayrouter.core.revocation.DenyList`, and
writes through on each add or remove; checks never touch the store.
"""

import os
import sqlite3
from pathlib import Path
from typing import Iterable, Protocol

from ..core.revocation import DenyEntry
from . import versioned

SCHEMA_VERSION = 1  # PRAGMA user_version (relayrouter.store.versioned)


class DenyListStore(Protocol):
    def open(self) -> None:
        """Before anything else; may touch the disk."""

    def load(self, now: float) -> list[DenyEntry]:
        """Every entry still valid at ``now``; expired ones may be purged."""

    def put(self, entry: DenyEntry) -> None:
        """Insert or replace the entry for ``entry.key``."""

    def delete(self, claim: str, value: str) -> None: ...

    def close(self) -> None: ...


class MemoryDenyListStore:
    """For tests, and for routers that need no persistence."""

    def __init__(self, entries: Iterable[DenyEntry] = ()) -> None:
        self.entries_by_key = {e.key: e for e in entries}

    def open(self) -> None:
        pass

    def load(self, now: float) -> list[DenyEntry]:
        return [e for e in self.entries_by_key.values() if e.expires_at > now]

    def put(self, entry: DenyEntry) -> None:
        self.entries_by_key[entry.key] = entry

    def delete(self, claim: str, value: str) -> None:
        self.entries_by_key.pop((claim, value), None)

    def close(self) -> None:
        pass


_SCHEMA = """
CREATE TABLE IF NOT EXISTS denylist (
    claim TEXT NOT NULL,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (claim, value)
)
"""


class SqliteDenyListStore:
    """The embedded default: one SQLite file in the state directory."""

    FILENAME = "denylist.sqlite3"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = None  # connected by open()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(os.fspath(self.path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        versioned.upgrade(self._db, self.path, SCHEMA_VERSION)

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> "SqliteDenyListStore":
        return cls(Path(state_dir) / cls.FILENAME)

    def load(self, now: float) -> list[DenyEntry]:
        with self._db:
            self._db.execute("DELETE FROM denylist WHERE expires_at <= ?", (now,))
        rows = self._db.execute("SELECT claim, value, expires_at, reason FROM denylist")
        return [DenyEntry(*row) for row in rows]

    def put(self, entry: DenyEntry) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO denylist (claim, value, expires_at, reason) VALUES (?, ?, ?, ?)",
                (entry.claim, entry.value, entry.expires_at, entry.reason))

    def delete(self, claim: str, value: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM denylist WHERE claim = ? AND value = ?", (claim, value))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
