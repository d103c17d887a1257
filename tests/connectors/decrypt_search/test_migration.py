"""A store made before schema versions were kept (version 1) is migrated in place at start.

The fixtures were written by that connector's own store code (``fixtures/``: a SQLite file and a
``pg_dump --inserts`` of a PostgreSQL store, each with the six records of test_store.py and one quarantined
entry, cursor at publication 107), so this is what an existing installation has on disk. fixtures/make_store_v1.py
makes the SQLite one again with the previous release's code, as test_previous_release_store.py does on every run."""

import shutil
import sqlite3
from pathlib import Path

import pytest
import pytest_twisted

from connectors.decrypt_search import query
from connectors.decrypt_search.store import SCHEMA_VERSION, StoreVersionError, postgres_store, sqlite_store

from ..iot_agent.pg import own_database
from .support import Connector, World, get, router_process
from .test_store import CONFIG

FIXTURES = Path(__file__).parent / "fixtures"


def orders(store, conn, **params):
    return [r["document"]["order"] for r in store.search(conn, query.parse_search(params, CONFIG))["records"]]


def indexes(store, conn) -> set:
    cur = conn.cursor()
    if store.dialect.name == "sqlite":
        cur.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'")
    else:
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'records'")
    return {row[0] for row in cur.fetchall()}


def version(conn) -> str:
    cur = conn.cursor()
    cur.execute("SELECT value FROM store_meta WHERE name = 'schema_version'")
    return cur.fetchone()[0]


def check_migrated(store) -> None:
    conn = store.connect()
    before = indexes(store, conn)
    assert {"records_asc_amount", "records_desc_city"} <= before  # what version 1 made
    steps = store.create_schema(conn)
    assert len(steps) == 1 and steps[0].startswith(f"schema 1 -> {SCHEMA_VERSION}")
    after = indexes(store, conn)
    assert not {i for i in after if i.startswith(("records_asc_", "records_desc_"))}
    assert {"records_by_amount", "records_by_placed", "records_status_created", "records_city_created"} <= after
    assert version(conn) == str(SCHEMA_VERSION)
    assert store.create_schema(conn) == []  # once only
    reader = store.connect(reader=True)
    assert store.counts(reader) == {"records": 6, "quarantine": {"bad_signature": 1}}
    assert store.cursors(reader) == {"prefix:com.orders.": 107}
    assert orders(store, reader, order="placed") == [1, 2, 3, 4, 6, 5]
    assert orders(store, reader, order="-placed") == [6, 4, 3, 2, 1, 5]
    assert orders(store, reader, q="blue", **{"amount.gte": "10"}, order="-amount") == [5, 3, 6]
    reader.close()
    conn.close()


def test_a_version_1_sqlite_store_is_migrated_in_place(tmp_path):
    path = tmp_path / "records.sqlite3"
    shutil.copy(FIXTURES / "store-v1.sqlite3", path)
    check_migrated(sqlite_store(CONFIG, str(path)))


def test_a_version_1_postgresql_store_is_migrated_in_place():
    with own_database("ds_migrate") as dsn:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:  # pg_dump --inserts: plain statements
            conn.execute((FIXTURES / "store-v1.postgresql.sql").read_text())
        check_migrated(postgres_store(CONFIG, dsn))


def test_a_store_of_a_newer_schema_is_refused(tmp_path):
    store = sqlite_store(CONFIG, str(tmp_path / "records.sqlite3"))
    conn = store.connect()
    store.create_schema(conn)
    conn.execute("UPDATE store_meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    conn.commit()
    with pytest.raises(StoreVersionError, match=f"schema version {SCHEMA_VERSION + 1}, newer"):
        store.create_schema(conn)


@pytest_twisted.inlineCallbacks
def test_the_connector_migrates_a_version_1_store_at_start_and_says_so(tmp_path):
    world = World(tmp_path)
    router = router_process(tmp_path)
    router.start()
    connector = Connector(tmp_path, world, "acme", router)
    (connector.dir / "state").mkdir(mode=0o700)
    copy = connector.dir / "state" / "records.sqlite3"
    shutil.copy(FIXTURES / "store-v1.sqlite3", copy)
    with sqlite3.connect(copy) as conn:  # this router is new: it never had the fixture's publication 107
        conn.execute("DELETE FROM cursors")
    try:
        connector.start()
        assert "store migrated in place: schema 1 -> 2: the order indexes of amount, city, n, placed, status" \
            in connector.output()
        page = yield get(connector, "/search", {"order": "-amount", "amount.gte": "10"})
        assert [r["document"]["order"] for r in page["records"]] == [5, 3, 6, 2]  # 2 and 6 tie at 12.5: by id, descending
        status = yield get(connector, "/status")
        assert status["store"]["records"] == 6
    finally:
        connector.stop()
        router.stop()
