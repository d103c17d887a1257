"""The store on SQLite (FTS5) and on PostgreSQL (tsvector, a database of its own
created and dropped here): exact search results, paging, analytics, dedupe."""

import re

import pytest

from connectors.decrypt_search import query
from connectors.decrypt_search.ingest import Ingestor, Quarantined, Record
from connectors.decrypt_search.store import postgres_store, sqlite_store
from relayrouter import e2e

from ..iot_agent.pg import own_database
from .support import make_config, org_keys

KEYS = org_keys()
CONFIG = make_config("acme", KEYS)

# (order, amount, status, placed, city, note, created second)
ROWS = [
    (1, 5.0, "new", "2026-11-01T08:00:00Z", "Lyon", "blue vase, fragile", 0),
    (2, 12.5, "paid", "2026-11-02T08:00:00Z", "Paris", "red chair", 30),
    (3, 30.0, "paid", "2026-11-03T08:00:00Z", "Lyon", "blue chair and a vase", 90),
    (4, 7.25, "shipped", "2026-11-04T08:00:00Z", "Nice", "vasectomy clinic supplies", 3600),
    (5, 99.0, "new", None, None, "Crème brûlée pans, blue", 3700),
    (6, 12.5, "shipped", "2026-11-06T08:00:00Z", "Lyon", "fragile blue vase set", 86400),
]


def records():
    ingestor = Ingestor(CONFIG, KEYS["acme"], clock=lambda: 2_000_000.0)
    out = []
    for n, amount, status, placed, city, note, second in ROWS:
        doc = {"order": n, "amount": amount, "status": status, "note": note}
        if placed:
            doc["placed"] = placed
        if city:
            doc["ship"] = {"city": city}
        envelope = e2e.seal(doc, "com.orders.eu", KEYS["globex"], [KEYS["acme"].public],
                            created_ms=(1_000_000 + second) * 1000)
        out.append(ingestor.process(100 + n, "com.orders.eu", [envelope]))
    assert all(isinstance(r, Record) for r in out)
    return out


def sqlite(tmp_path):
    return sqlite_store(CONFIG, str(tmp_path / "records.sqlite3"))


@pytest.fixture
def postgres():
    with own_database("ds_test") as dsn:
        yield postgres_store(CONFIG, dsn)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield sqlite(tmp_path)
    else:
        yield request.getfixturevalue("postgres")


@pytest.fixture
def filled(store):
    writer = store.connect()
    store.create_schema(writer)
    result = store.write(writer, records(), {"prefix:com.orders.": 106}, now=1.0)
    assert len(result.stored) == 6 and result.skipped == 0
    reader = store.connect(reader=True)
    yield store, writer, reader
    writer.close()
    reader.close()


def orders(store, reader, **params):
    page = store.search(reader, query.parse_search(params, CONFIG))
    return [r["document"]["order"] for r in page["records"]], page["next_cursor"]


def test_text_prefix_and_phrase(filled):
    store, _, reader = filled
    assert orders(store, reader, q="vase", order="created")[0] == [1, 3, 6]
    assert orders(store, reader, q="vas*", order="created")[0] == [1, 3, 4, 6]
    assert orders(store, reader, q='"blue vase"', order="created")[0] == [1, 6]
    assert orders(store, reader, q='"blue vase" fragile set', order="created")[0] == [6]
    assert orders(store, reader, q="chair lyon", order="created")[0] == [3]  # text of all strings, city too
    assert orders(store, reader, q="nothingmatches")[0] == []


def test_text_with_filters_and_order(filled):
    store, _, reader = filled
    assert orders(store, reader, q="blue", **{"amount.gte": "10"}, order="-amount")[0] == [5, 3, 6]
    assert orders(store, reader, q="blue", **{"status.in": "new,shipped"}, order="amount")[0] == [1, 6, 5]
    assert orders(store, reader, **{"placed.gt": "2026-11-02T08:00:00Z", "placed.lte": "2026-11-04T08:00:00Z"},
                  order="placed")[0] == [3, 4]
    assert orders(store, reader, city="Lyon", order="-created")[0] == [6, 3, 1]
    assert orders(store, reader, sender="globex", topic="com.orders.eu", order="created",
                  **{"created.lt": str(1_000_000 + 3600)})[0] == [1, 2, 3]


def test_missing_values_sort_last_both_ways(filled):
    store, _, reader = filled
    assert orders(store, reader, order="placed")[0] == [1, 2, 3, 4, 6, 5]
    assert orders(store, reader, order="-placed")[0] == [6, 4, 3, 2, 1, 5]
    assert orders(store, reader, order="-city")[0] == [2, 4, 6, 3, 1, 5]


@pytest.mark.parametrize("order", ["amount", "-amount", "city", "-city", "-created", "placed"])
def test_cursor_paging_returns_every_record_once_in_order(filled, order):
    store, _, reader = filled
    everything, _ = orders(store, reader, order=order, limit="100")
    seen, cursor = [], None
    while True:
        params = {"order": order, "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        page, cursor = orders(store, reader, **params)
        seen += page
        if cursor is None:
            break
    assert seen == everything and sorted(seen) == [1, 2, 3, 4, 5, 6]


def test_get_and_counts_and_cursors(filled):
    store, _, reader = filled
    first = store.search(reader, query.parse_search({"order": "created", "limit": "1"}, CONFIG))["records"][0]
    again = store.get(reader, first["id"])
    assert again == first and again["document"]["note"] == "blue vase, fragile" and again["sender"] == "globex"
    assert store.get(reader, 999999) is None
    assert store.counts(reader) == {"records": 6, "quarantine": {}}
    assert store.cursors(reader) == {"prefix:com.orders.": 106}


def test_analytics_buckets(filled):
    store, _, reader = filled
    base = 1_000_000
    a = store.analytics(reader, query.parse_analytics(
        {"by": "status", "bucket": "hour", "from": str(base - 3600), "to": str(base + 2 * 86400)}, CONFIG))
    hour0 = (base // 3600) * 3600
    assert [(b["start"] - hour0, b["value"], b["count"]) for b in a["buckets"]] == [
        (0, "new", 1), (0, "paid", 2), (3600, "new", 1), (3600, "shipped", 1), (86400, "shipped", 1)]
    a = store.analytics(reader, query.parse_analytics(
        {"by": "topic", "bucket": "day", "from": str(base), "to": str(base + 3650), "amount.lt": "50"}, CONFIG))
    assert [(b["value"], b["count"]) for b in a["buckets"]] == [("com.orders.eu", 4)]
    assert a["total"] == 4


def test_dedupe_replays_and_quarantine(filled):
    store, writer, reader = filled
    again = records()  # same documents sealed anew: new message ids, same publication ids
    result = store.write(writer, again[:2], {}, now=2.0)
    assert result.skipped == 2 and not result.stored
    replay = Record(**{**again[0].__dict__, "publication": 500})
    original = store.search(reader, query.parse_search({"order": "created", "limit": "1"}, CONFIG))["records"][0]
    replay = Record(**{**replay.__dict__, "message_id": original["message_id"]})
    bad = Quarantined(501, "com.orders.eu", "bad_signature", "signature does not verify", 3.0, b"\x01\x02")
    result = store.write(writer, [replay, bad], {"prefix:com.orders.": 501}, now=3.0)
    assert [q.reason for q in result.quarantined] == ["duplicate", "bad_signature"]
    listed = store.quarantine(reader, None, 10, None)
    assert [(e["publication"], e["reason"]) for e in listed["entries"]] == [(501, "bad_signature"),
                                                                           (500, "duplicate")]
    assert store.quarantine(reader, "duplicate", 10, None)["entries"][0]["message_id"] == original["message_id"]
    page = store.quarantine(reader, None, 1, None)
    assert page["next_before"] is not None
    assert len(store.quarantine(reader, None, 1, page["next_before"])["entries"]) == 1
    assert store.counts(reader)["quarantine"] == {"bad_signature": 1, "duplicate": 1}
    assert store.cursors(reader)["prefix:com.orders."] == 501


def test_schema_survives_reopening_and_refuses_a_changed_field_type(tmp_path):
    first = sqlite(tmp_path)
    conn = first.connect()
    first.create_schema(conn)
    first.create_schema(conn)
    conn.close()
    changed = make_config("acme", KEYS, index=[{"name": "amount", "type": "keyword"}])
    from connectors.decrypt_search.store import sqlite_store as open_sqlite
    store = open_sqlite(changed, str(tmp_path / "records.sqlite3"))
    with pytest.raises(ValueError, match="amount"):
        store.create_schema(store.connect())


@pytest.mark.parametrize("common_factor", [1e6, 0])
def test_common_text_takes_the_other_plans_with_the_same_results(filled, monkeypatch, common_factor):
    """Text matching more than RARE records is looked up per row, or checked per row beyond the bound."""
    from connectors.decrypt_search import store as store_module

    monkeypatch.setattr(store_module, "RARE", 0)
    monkeypatch.setattr(store_module, "COMMON_FACTOR", common_factor)
    test_text_prefix_and_phrase(filled)
    test_text_with_filters_and_order(filled)
    test_cursor_paging_returns_every_record_once_in_order(filled, "-amount")


def test_a_batch_skips_publications_stored_and_quarantines_replays_in_order(filled):
    """One batch with all of it (PostgreSQL writes a batch in a few statements, SQLite record by
    record: the same outcome): a publication stored already or twice in the batch is skipped, a
    message stored already or earlier in the batch is a duplicate naming its record, the others are
    stored with ids in batch order."""
    store, writer, reader = filled
    ids = {r["message_id"]: r["id"] for r in store.search(reader, query.parse_search({"limit": "10"}, CONFIG))
           ["records"]}
    fresh = records()  # sealed anew: new message ids
    first = Record(**{**fresh[0].__dict__, "publication": 600})
    again = Record(**{**fresh[0].__dict__, "publication": 601})  # first's message, in the same batch
    stored_before = Record(**{**fresh[1].__dict__, "publication": 602, "message_id": next(iter(ids))})
    second = Record(**{**fresh[2].__dict__, "publication": 603})
    bad = Quarantined(604, "com.orders.eu", "bad_signature", "signature does not verify", 3.0, b"\x03")
    batch = [fresh[3], first, again, stored_before, second, bad, Record(**{**fresh[4].__dict__, "publication": 603})]
    result = store.write(writer, batch, {"prefix:com.orders.": 604}, now=3.0)
    assert result.skipped == 2  # fresh[3]: publication 104 is stored; 603 twice
    assert [r.publication for _, r in result.stored] == [600, 603]
    (a, _), (b, _) = result.stored
    assert max(ids.values()) < a < b
    assert [(q.publication, q.reason) for q in result.quarantined] == [(601, "duplicate"), (602, "duplicate"),
                                                                       (604, "bad_signature")]
    assert f"stored already as record {a} (a replay)" in result.quarantined[0].message
    assert f"stored already as record {ids[next(iter(ids))]} (a replay)" in result.quarantined[1].message
    assert store.counts(reader) == {"records": 8, "quarantine": {"bad_signature": 1, "duplicate": 2}}
    assert store.get(reader, b)["document"]["order"] == 3
    assert store.cursors(reader)["prefix:com.orders."] == 604


def test_a_replayed_envelope_is_quarantined_with_its_payload_as_received(store):
    """The same envelope published twice: the second is a replay, kept byte for byte."""
    writer = store.connect()
    store.create_schema(writer)
    envelope = e2e.seal({"order": 9, "amount": 1.0, "status": "new"}, "com.orders.eu", KEYS["globex"],
                        [KEYS["acme"].public])
    ingestor = Ingestor(CONFIG, KEYS["acme"], clock=lambda: 2_000_000.0)
    first, again = (ingestor.process(p, "com.orders.eu", [envelope]) for p in (700, 701))
    result = store.write(writer, [first, again], {}, now=1.0)
    assert len(result.stored) == 1 and [q.reason for q in result.quarantined] == ["duplicate"]
    reader = store.connect(reader=True)
    entry = store.quarantine(reader, "duplicate", 10, None)["entries"][0]
    assert entry["publication"] == 701 and entry["size"] == len(envelope)
    cur = reader.cursor()
    cur.execute(store.dialect.sql("SELECT payload FROM quarantine WHERE publication = ?"), (701,))
    assert bytes(cur.fetchone()[0]) == envelope
    writer.close()
    reader.close()


REPORTS = [{"name": "revenue", "field": "amount", "by": ["status"],
            "metrics": ["count", "sum", "avg", "min", "max", "p50", "p90"]},
           {"name": "hourly", "field": "amount", "bucket": "hour", "metrics": ["sum", "p50"]},
           {"name": "by_topic_city", "field": "amount", "by": ["topic", "city"], "metrics": ["count"]}]


def reporting(store):
    from connectors.decrypt_search.store import Store

    config = make_config("acme", KEYS, reports=REPORTS)
    return config, Store(config, store._connect, store.dialect)


def test_reports_aggregate_a_number_field_per_group_with_the_searchs_filters(filled):
    store, _, reader = filled
    config, store = reporting(store)
    base = 1_000_000
    window = {"from": str(base - 3600), "to": str(base + 2 * 86400)}

    def run(name, **params):
        return store.report(reader, query.parse_report(name, {**window, **params}, config))["groups"]

    assert run("revenue") == [
        {"status": "new", "count": 2, "sum": 104.0, "avg": 52.0, "min": 5.0, "max": 99.0, "p50": 5.0, "p90": 99.0},
        {"status": "paid", "count": 2, "sum": 42.5, "avg": 21.25, "min": 12.5, "max": 30.0, "p50": 12.5,
         "p90": 30.0},
        {"status": "shipped", "count": 2, "sum": 19.75, "avg": 9.875, "min": 7.25, "max": 12.5, "p50": 7.25,
         "p90": 12.5}]
    assert [(g["status"], g["sum"]) for g in run("revenue", q="vase")] == [("new", 5.0), ("paid", 30.0),
                                                                          ("shipped", 12.5)]
    assert run("hourly", city="Lyon") == [{"start": 997200.0, "sum": 35.0, "p50": 5.0},
                                          {"start": 1083600.0, "sum": 12.5, "p50": 12.5}]
    assert run("by_topic_city", **{"amount.gte": "10"}) == [
        {"topic": "com.orders.eu", "city": "Lyon", "count": 2}, {"topic": "com.orders.eu", "city": "Paris", "count": 1},
        {"topic": "com.orders.eu", "city": None, "count": 1}]
    assert run("revenue", **{"from": str(base + 10 * 86400), "to": str(base + 11 * 86400)}) == []


@pytest.mark.parametrize("name, params, message", [
    ("nope", {}, "name: 'nope' is not a configured report (revenue, hourly, by_topic_city)"),
    ("revenue", {"amount.near": "1"}, "amount.near: unknown operator"),
    ("hourly", {"from": "0", "to": "100000000"}, "from: more than 10000 hours"),
    ("revenue", {"from": "10", "to": "5"}, "from: must be before to"),
])
def test_report_requests_are_checked(name, params, message):
    config = make_config("acme", KEYS, reports=REPORTS)
    with pytest.raises(query.QueryError, match=re.escape(message)):
        query.parse_report(name, params, config)


@pytest.mark.parametrize("report, message", [
    ({"name": "r", "field": "status"}, "reports[0].field: 'status' is not an indexed number field (amount)"),
    ({"name": "r", "field": "amount", "metrics": ["median"]}, "reports[0].metrics: 'median' is not count"),
    ({"name": "r", "field": "amount", "by": ["amount"]}, "reports[0].by: up to 3 different keyword fields"),
    ({"name": "r", "field": "amount", "bucket": "week"}, "reports[0].bucket: must be minute, hour or day"),
    ({"name": "R!", "field": "amount"}, "reports[0].name"),
])
def test_report_definitions_are_checked_at_start(report, message):
    from connectors.decrypt_search.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config("acme", KEYS, reports=[report])


def test_the_feeds_reads_records_after_an_id_and_text_of_a_batch(filled):
    """What the live feed asks the store: its replay (id order, filters) and a batch's text check."""
    store, _, reader = filled
    everything = store.after(reader, (), (), 0, 100)
    ids = [r["id"] for r in everything]
    assert [r["document"]["order"] for r in everything] == [1, 2, 3, 4, 5, 6] and ids == sorted(ids)
    blue = query.parse_search({"q": "blue", "amount.gte": "10"}, CONFIG)
    assert [r["document"]["order"] for r in store.after(reader, blue.conditions, blue.terms, ids[2], 100)] == [5, 6]
    assert [r["document"]["order"] for r in store.after(reader, (), (), ids[0], 2)] == [2, 3]
    assert store.text_matches(reader, query.parse_q("vase"), ids) == {ids[0], ids[2], ids[5]}
    assert store.text_matches(reader, query.parse_q('"blue vase"'), ids[:3]) == {ids[0]}


def test_maintenance_runs_when_the_store_has_doubled(store, monkeypatch):
    """Planner statistics (and SQLite's full-text merge) from MAINTAIN_FROM records on, then at each doubling."""
    from connectors.decrypt_search import store as store_module

    monkeypatch.setattr(store_module, "MAINTAIN_FROM", 4)
    writer = store.connect()
    store.create_schema(writer)
    batches = [records()[:3], records()[3:]]
    store.write(writer, batches[0], {}, now=1.0)
    assert store.maintain(writer) is None  # 3 records: not yet
    store.write(writer, [Record(**{**r.__dict__, "publication": r.publication + 1000,
                                   "message_id": r.message_id[:-1] + "x"}) for r in batches[0]], {}, now=1.0)
    assert store.maintain(writer) == 6
    assert store.maintain(writer) is None  # not doubled since
    store.write(writer, batches[1], {}, now=1.0)
    assert store.maintain(writer) is None  # 9 < 12
    assert store.maintain(writer, force=True) == 9
    writer.close()


def test_the_key_directory_keeps_the_latest_record_per_organisation(store):
    writer = store.connect()
    store.create_schema(writer)
    assert store.key_records(writer) == {}
    store.save_key_record(writer, "globex", 2, '{"seq": 2}', 1.0)
    store.save_key_record(writer, "globex", 1, '{"seq": 1}', 2.0)  # an older one never replaces it
    store.save_key_record(writer, "globex", 2, '{"seq": "2 again"}', 3.0)  # nor one of the same seq
    store.save_key_record(writer, "acme", 1, '{"seq": 1}', 4.0)
    store.save_key_record(writer, "globex", 3, '{"seq": 3}', 5.0)
    reader = store.connect(reader=True)
    assert store.key_records(reader) == {"globex": '{"seq": 3}', "acme": '{"seq": 1}'}
    reader.close()
    writer.close()
