"""A store made before schema versions were kept (version 1), or by version 2, is migrated in place at start.

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
    assert steps[0].startswith("schema 1 -> 2")
    assert len(steps) == (3 if store.dialect.name == "sqlite" else 2)  # PostgreSQL: nothing for version 3
    assert steps[-1] == "schema 3 -> 4: the key directory's table (key_directory) added"
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


def test_a_version_2_sqlite_store_is_migrated_in_place(tmp_path):
    """``fixtures/store-v2.sqlite3`` was written by the version 2 connector's store code (the six
    records of test_store.py, one quarantined entry, cursor at publication 107): its full-text
    index is made anew with prefix indexes, and its word pairs, from the stored documents."""
    path = tmp_path / "records.sqlite3"
    shutil.copy(FIXTURES / "store-v2.sqlite3", path)
    store = sqlite_store(CONFIG, str(path))
    conn = store.connect()
    assert version(conn) == "2"
    # what the version 2 connector answers on this store
    searches = [(dict(q="blue"), [6, 5, 3, 1]), (dict(q="vas*"), [6, 4, 3, 1]),
                (dict(q="bl*", order="amount"), [1, 6, 3, 5]), (dict(q='"blue vase"'), [6, 1]),
                (dict(q='"blue vase" fra*'), [6, 1]), (dict(q="creme brulee"), [5]),
                (dict(q='"red chair"', status="paid"), [2])]
    steps = store.create_schema(conn)
    assert len(steps) == 2 and steps[0].startswith("schema 2 -> 3: the full-text index of 6 records made anew")
    assert steps[1] == "schema 3 -> 4: the key directory's table (key_directory) added"
    assert version(conn) == str(SCHEMA_VERSION) == "4"
    assert store.create_schema(conn) == []  # once only
    reader = store.connect(reader=True)
    for params, expected in searches:
        assert orders(store, reader, **params) == expected, params
    assert store.counts(reader) == {"records": 6, "quarantine": {"bad_signature": 1}}
    assert store.cursors(reader) == {"prefix:com.orders.": 107}
    sql = "SELECT rowid FROM records_pairs WHERE records_pairs MATCH ? ORDER BY rowid"
    assert [r[0] for r in reader.execute(sql, ('"blue_vase"',))] == [1, 6]
    assert [r[0] for r in reader.execute(sql, ('"_"',))] == [5]  # Crème brûlée: not ASCII
    config = reader.execute("SELECT sql FROM sqlite_master WHERE name = 'records_fts'").fetchone()[0]
    assert "prefix='2 3'" in config
    reader.close()
    # a connector of version 1 (it refused no version) wrote a record without its pairs
    conn.execute("INSERT INTO records (publication, message_id, topic, sender, sender_kid, created, received, "
                 "document) VALUES (200, 'm200', 'com.orders.eu', 'globex', 'kid', 1, 1, ?)",
                 ('{"order": 7, "note": "blue vase again"}',))
    conn.execute("INSERT INTO records_fts (rowid, body) VALUES (last_insert_rowid(), 'blue vase again')")
    conn.commit()
    steps = store.create_schema(conn)
    assert len(steps) == 1 and steps[0].startswith("schema 3, records without their word pairs: the full-text "
                                                   "index of 7 records made anew")
    assert [r[0] for r in conn.execute(sql, ('"blue_vase"',))] == [1, 6, 7]
    assert orders(store, conn, q='"blue vase"') == [6, 1, 7]  # created 1: the oldest
    conn.close()


def test_a_version_3_sqlite_store_gets_the_key_directory_table_and_keeps_everything(tmp_path):
    """``fixtures/store-v3.sqlite3`` was written by the version 3 connector's store code (as store-v2)."""
    path = tmp_path / "records.sqlite3"
    shutil.copy(FIXTURES / "store-v3.sqlite3", path)
    store = sqlite_store(CONFIG, str(path))
    conn = store.connect()
    assert version(conn) == "3"
    before = indexes(store, conn)
    assert store.create_schema(conn) == ["schema 3 -> 4: the key directory's table (key_directory) added"]
    assert indexes(store, conn) == before and version(conn) == "4"
    assert store.create_schema(conn) == []
    assert store.key_records(conn) == {}
    store.save_key_record(conn, "globex", 2, '{"x": 2}', 1.0)
    store.save_key_record(conn, "globex", 1, '{"x": 1}', 2.0)  # never back to an older one
    assert store.key_records(conn) == {"globex": '{"x": 2}'}
    reader = store.connect(reader=True)
    assert store.counts(reader) == {"records": 6, "quarantine": {"bad_signature": 1}}
    assert store.cursors(reader) == {"prefix:com.orders.": 107}
    assert orders(store, reader, q='"blue vase"') == [6, 1]
    assert orders(store, reader, order="-placed") == [6, 4, 3, 2, 1, 5]
    reader.close()
    conn.close()


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
