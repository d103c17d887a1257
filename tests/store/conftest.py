"""The durable store's tests run against every backend: in memory, SQLite,
and the PostgreSQL on 127.0.0.1:5432 (each test run creates its own
database and drops it at the end; RELAYROUTER_TEST_PG names another server)."""

import os
import queue
import uuid

import pytest

from relayrouter.store.memory import MemoryStore
from relayrouter.store.postgres import PostgresDialect
from relayrouter.store.sql import SqlStore
from relayrouter.store.sqlite import SqliteDialect

PG_SERVER = os.environ.get("RELAYROUTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture(scope="session")
def pg_database():
    import psycopg

    name = f"relayrouter_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_SERVER}/{name}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _clean_pg(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS history, mailbox_messages, counters, mailbox_counters, mailbox_numbers, relayrouter_schema")


class Backend:
    """Makes (and re-opens) stores of one kind; ``sync()`` waits for queued work."""

    def __init__(self, kind: str, tmp_path, request) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.outcomes: queue.SimpleQueue = queue.SimpleQueue()
        self.open_stores: list = []
        self.memory = None
        if kind == "postgresql":
            self.dsn = request.getfixturevalue("pg_database")
            _clean_pg(self.dsn)

    def dialect(self):
        if self.kind == "sqlite":
            return SqliteDialect(self.tmp_path / "state" / "relayrouter.sqlite3")
        return PostgresDialect(self.dsn)

    def open(self, **options):
        if self.kind == "memory":
            # "Re-opening" a memory store is the same object: what it holds stays.
            self.memory = self.memory or MemoryStore(**options)
            store = self.memory
        else:
            store = SqlStore(self.dialect(), deliver=lambda fn, *a: fn(*a), **options)
        store.start()
        self.open_stores.append(store)
        return store

    def close(self, store) -> None:
        if store in self.open_stores:
            self.open_stores.remove(store)
            store.close()

    def sync(self, store) -> None:
        if self.kind != "memory":
            store.writer.call(lambda connection: None)

    def result(self, store, submit):
        """Submit with a done callback; wait; return the outcome."""
        box = []
        submit(box.append)
        self.sync(store)
        assert len(box) == 1
        return box[0]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request, tmp_path):
    b = Backend(request.param, tmp_path, request)
    yield b
    for store in list(b.open_stores):
        b.close(store)


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_backend(request, tmp_path):
    b = Backend(request.param, tmp_path, request)
    yield b
    for store in list(b.open_stores):
        b.close(store)
