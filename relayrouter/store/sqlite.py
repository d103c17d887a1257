"""The embedded default: one SQLite file in the state directory, in WAL mode.

``synchronous = FULL`` (the default here) makes every group commit wait for
the disk: what was acknowledged survives a power cut, not only ``kill -9``.
``NORMAL`` keeps WAL's guarantee against process crashes (what is committed
survives ``kill -9``) and may lose the last commits on power loss.
"""

import os
import sqlite3
from pathlib import Path

from .sql import Dialect, history_ddl, mailbox_counters_ddl, mailbox_ddl, mailbox_numbers_ddl

FILENAME = "relayrouter.sqlite3"
SYNCHRONOUS = ("full", "normal")


class SqliteDialect(Dialect):
    name = "sqlite"

    def __init__(self, path: str | Path, synchronous: str = "full") -> None:
        self.path = Path(path)
        self.synchronous = synchronous

    def connect(self):
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        connection = sqlite3.connect(os.fspath(self.path), check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
        connection.execute("PRAGMA busy_timeout=10000")
        return connection

    def migrations(self) -> dict[int, list[str]]:
        return {
            1: history_ddl("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB", "REAL"),
            2: mailbox_ddl("BLOB", "REAL"),
            3: mailbox_counters_ddl(),
            4: mailbox_numbers_ddl(),
        }

    def describe(self) -> str:
        return f"SQLite at {self.path}"
