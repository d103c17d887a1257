"""Where tenants (realms made at run time) live between restarts: a small
SQLite file in the state directory, written on each create or delete (an
administrative action, rare) and read once at start.

A deleted tenant's stored data (event history, mailboxes) is purged from the
durable store after the delete; the name is kept in ``purges`` in the same
transaction as the delete and taken out once the purge has committed, so
that a purge cut short by a crash is done again at the next start."""

import os
import sqlite3
from pathlib import Path

from . import versioned

SCHEMA_VERSION = 1  # PRAGMA user_version (relayrouter.store.versioned)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tenants (name TEXT PRIMARY KEY, template TEXT NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tenancy (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS purges (name TEXT PRIMARY KEY)",
)


class SqliteTenantStore:
    FILENAME = "tenants.sqlite3"

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._db = sqlite3.connect(os.fspath(path))  # DML opens a transaction: put/delete are atomic
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._db.commit()
        versioned.upgrade(self._db, path, SCHEMA_VERSION)

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> "SqliteTenantStore":
        return cls(Path(state_dir) / cls.FILENAME)

    def load(self) -> tuple[int, list[tuple[str, str, float]]]:
        row = self._db.execute("SELECT value FROM tenancy WHERE key = 'seq'").fetchone()
        rows = self._db.execute("SELECT name, template, created FROM tenants ORDER BY created, name").fetchall()
        return (row[0] if row else 0), [tuple(r) for r in rows]

    def put(self, name: str, template: str, created: float, seq: int) -> None:
        with self._db:
            self._db.execute("INSERT INTO tenants (name, template, created) VALUES (?, ?, ?)",
                             (name, template, created))
            self._seq(seq)

    def delete(self, name: str, seq: int) -> None:
        with self._db:
            self._db.execute("DELETE FROM tenants WHERE name = ?", (name,))
            self._db.execute("INSERT OR IGNORE INTO purges (name) VALUES (?)", (name,))
            self._seq(seq)

    def purges(self) -> list[str]:
        """Deleted tenants whose stored data is not purged yet."""
        return [r[0] for r in self._db.execute("SELECT name FROM purges ORDER BY name")]

    def purged(self, name: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM purges WHERE name = ?", (name,))

    def _seq(self, seq: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO tenancy (key, value) VALUES ('seq', ?)", (seq,))

    def close(self) -> None:
        self._db.close()
