"""Every documented query shape is served by an index, at 100,000 and at 1,000,000 records.

SQLite: a store of a few thousand records is filled and analyzed, then its
statistics (``sqlite_stat1``, all SQLite's planner reads: this build has no
STAT4) are scaled to the target size and every statement a search runs goes
through ``EXPLAIN QUERY PLAN``.  PostgreSQL: a database of its own with
100,000 generated records, analyzed, and ``EXPLAIN``.  A table scan of
``records`` fails the test, and each shape names the index its plan must use.

The full-text plan is picked from how many records match (``Dialect.text_filter``);
``RARE`` is set to 50 here so that the small store's three words take the three plans
(``gamma``: ids drive; ``beta``: a set looked up; ``alpha``: checked per row); the same for
the phrases of two words, answered from the word pairs (``records_pairs``), and for the prefixes
of two and three letters, answered from FTS5's prefix indexes.
"""

import random
import re

import pytest

from connectors.decrypt_search import query
from connectors.decrypt_search import store as store_module
from connectors.decrypt_search.ingest import Record
from connectors.decrypt_search.store import postgres_store, sqlite_store

from ..iot_agent.pg import own_database
from .support import make_config, org_keys

CONFIG = make_config("acme", org_keys())
SMALL = 4000
T0 = 1_700_000_000
CITIES = ["Lyon", "Paris", "Nice", "Lille", "Nantes", "Bordeaux", "Toulouse", "Rennes", "Brest", "Dijon",
          "Metz", "Reims", "Tours", "Angers", "Caen", "Rouen", "Nancy", "Pau", "Annecy", "Grenoble"]

# (shape, parameters, regular expression the SQLite plan of its first statement must match, the same
#  for PostgreSQL, whose cost-based planner may prefer the order index to a filter's index: it must use
#  an index, and bound the range); "page 2" shapes run with the cursor of the first page.
T1, T2 = str(T0 + 1000), str(T0 + 2000)
SHAPES = [
    ("newest first", {}, r"SCAN r USING INDEX records_by_created", r"records_by_created"),
    ("ordered by a field", {"order": "amount"}, r"SEARCH r USING INDEX records_by_amount \(f_amount>\?\)",
     r"records_by_amount"),
    ("ordered by a field, page 2", {"order": "-amount", "page": 2},
     r"SEARCH r USING INDEX records_by_amount \(f_amount>\? AND f_amount<\?\)", r"Index Cond: .*f_amount"),
    ("keyword, newest first", {"status": "paid"}, r"SEARCH r USING INDEX records_status_created \(f_status=\?\)",
     r"Index"),
    ("two keywords, newest first", {"status": "paid", "city": "Lyon"},
     r"SEARCH r USING INDEX records_(status|city)_created", r"Index"),
    ("keyword in a list, newest first", {"status.in": "new,paid"},
     r"SCAN r USING INDEX records_by_created|SEARCH r USING INDEX records_status_created", r"Index"),
    ("time window, newest first", {"created.gte": T1, "created.lt": T2},
     r"SEARCH r USING INDEX records_by_created \(created>\? AND created<\?\)", r"Index Cond: .*created"),
    ("keyword and time window, newest first", {"city": "Lyon", "created.gte": T1},
     r"SEARCH r USING INDEX records_city_created \(f_city=\? AND created>\?\)", r"Index Cond: .*created"),
    ("range ordered by its field", {"amount.gte": "450", "order": "amount"},
     r"SEARCH r USING INDEX records_by_amount \(f_amount>\?\)", r"Index Cond: .*f_amount"),
    ("date before, latest first", {"placed.lt": "2026-09-01", "order": "-placed"},
     r"SEARCH r USING INDEX records_by_placed \(f_placed>\? AND f_placed<\?\)", r"Index Cond: .*f_placed"),
    ("keyword and range, ordered by the range's field",
     {"status": "paid", "amount.gte": "100", "amount.lt": "400", "order": "-amount"},
     r"SEARCH r USING INDEX records_by_amount \(f_amount>\? AND f_amount<\?\)", r"Index Cond: .*f_(amount|status)"),
    ("keyword and range, ordered by the range's field, page 2",
     {"status": "paid", "amount.gte": "100", "order": "-amount", "page": 2},
     r"SEARCH r USING INDEX records_by_amount \(f_amount>\? AND f_amount<\?\)", r"Index Cond: .*f_(amount|status)"),
    ("rare word, newest first", {"q": "gamma"}, r"SEARCH r USING (INTEGER PRIMARY KEY|INDEX \w+ \(.*id=\?\))",
     r"Index"),
    ("word in some records, newest first", {"q": "beta"}, r"SCAN r USING INDEX records_by_created", r"Index"),
    ("common word, newest first", {"q": "alpha"}, r"SCAN r USING INDEX records_by_created", r"Index"),
    ("phrase and prefix, newest first", {"q": '"beta filler" alp*'}, r"SCAN r USING INDEX records_by_created",
     r"Index"),
    ("rare phrase of two words, newest first", {"q": '"gamma filler"'},
     r"SEARCH r USING (INTEGER PRIMARY KEY|INDEX \w+ \(.*id=\?\))", r"Index"),
    ("common phrase of two words, newest first", {"q": '"alpha filler"'}, r"SCAN r USING INDEX records_by_created",
     r"Index"),
    ("phrase of two words and a list, ordered by a field", {"q": '"beta filler"', "status.in": "new,paid",
                                                            "order": "amount"},
     r"SEARCH r USING INDEX records_by_amount \(f_amount>\?\)", r"Index"),
    ("prefix of three letters, ordered by a date", {"q": "alp*", "placed.gte": "2026-03-01", "order": "placed"},
     r"SEARCH r USING INDEX records_by_placed \(f_placed>\?\)", r"Index Cond: .*f_placed|records_tsv"),
    ("prefix of two letters, newest first", {"q": "ga*"}, r"SEARCH r USING (INTEGER PRIMARY KEY|INDEX \w+ \(.*id=\?\))",
     r"Index"),
    ("word and keyword, newest first", {"q": "alpha", "city": "Lyon"},
     r"SEARCH r USING INDEX records_city_created \(f_city=\?\)", r"Index"),
    ("word and range ordered by its field", {"q": "beta", "amount.gte": "250", "order": "-amount"},
     r"SEARCH r USING INDEX records_by_amount \(f_amount>\?\)", r"Index Cond: .*f_amount|records_tsv"),
]
ANALYTICS = {"by": "status", "bucket": "hour", "from": str(T0 + 1000), "to": str(T0 + 5000)}


def generated(n: int, seed: int = 5):
    rng = random.Random(seed)
    for i in range(1, n + 1):
        words = ["alpha"] if rng.random() < 0.6 else []
        words += ["beta"] if rng.random() < 0.1 else []
        words += ["gamma"] if i % 200 == 0 else []
        doc = {"order": i, "amount": round(rng.uniform(1, 500), 2), "status": rng.choice(["new", "paid", "shipped"]),
               "ship": {"city": rng.choice(CITIES)}, "note": " ".join(words + ["filler"])}
        if i % 50:
            doc["placed"] = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T00:00:00Z"
        fields = {"amount": doc["amount"], "status": doc["status"], "city": doc["ship"]["city"]}
        if "placed" in doc:
            from connectors.decrypt_search.ingest import parse_date
            fields["placed"] = parse_date(doc["placed"])
        yield Record(i, f"com.orders.r{i % 10}", f"{i:032x}", "globex", "kid", T0 + i, T0 + i, doc, fields,
                     doc["note"])


class Recorder:
    """A connection whose cursors remember the statements over ``records`` a search runs."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.statements = []

    def cursor(self):
        recorder, real = self, self.conn.cursor()

        class Cursor:
            def execute(self, sql, params=()):
                if re.search(r"FROM records( |$)", sql) and "MAX(id)" not in sql:
                    recorder.statements.append((sql, list(params)))
                return real.execute(sql, params)

            def __getattr__(self, name):
                return getattr(real, name)

        return Cursor()


def statements(store, conn, params: dict) -> list:
    params = dict(params)
    if params.pop("page", None):
        first = store.search(conn, query.parse_search({**params, "limit": "5"}, CONFIG))
        assert first["next_cursor"], "the first page should have a next one"
        params.update(cursor=first["next_cursor"], limit="5")
    recorder = Recorder(conn)
    result = store.search(recorder, query.parse_search(params, CONFIG))
    assert result["records"], f"{params}: no records (the shape should find some)"
    return recorder.statements


def analytics_statements(store, conn) -> list:
    recorder = Recorder(conn)
    store.analytics(recorder, query.parse_analytics(ANALYTICS, CONFIG))
    return recorder.statements


def scale_statistics(conn, to: int) -> None:
    """sqlite_stat1 of the small store as the planner would see it at ``to`` records of the same data:
    rows per value grow with the store unless a value is (nearly) unique."""
    factor = to / SMALL
    rows = conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1 WHERE tbl = 'records'").fetchall()
    assert rows, "ANALYZE should have written statistics"
    for tbl, idx, stat in rows:
        numbers = [int(x) for x in stat.split()]
        scaled = [to] + [n if n <= 1 else round(n * factor) for n in numbers[1:]]
        conn.execute("UPDATE sqlite_stat1 SET stat = ? WHERE tbl = ? AND idx IS ?",
                     (" ".join(map(str, scaled)), tbl, idx))
    conn.commit()


@pytest.fixture(scope="module")
def sqlite_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("plans") / "records.sqlite3")
    store = sqlite_store(CONFIG, path)
    conn = store.connect()
    store.create_schema(conn)
    store.write(conn, list(generated(SMALL)), {}, now=1.0)
    assert store.maintain(conn, force=True) == SMALL
    conn.close()
    return path


def sqlite_plan(conn, sql, params) -> list:
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()]


def check_sqlite(plans: list, expected: str, shape: str) -> None:
    for plan in plans:
        for line in plan:
            assert not re.match(r"SCAN r$|SCAN records$", line), f"{shape}: full scan: {plan}"
            if "TEMP B-TREE FOR ORDER BY" in line:
                # sorting is bounded only when the set of the (few) matching ids drives the query
                assert any(re.search(r"SEARCH r .*(INTEGER PRIMARY KEY|id=\?)", x) for x in plan), \
                    f"{shape}: sorts every match: {plan}"
    assert any(re.search(expected, line) for line in plans[0]), f"{shape}: expected {expected!r}, got {plans[0]}"


@pytest.mark.parametrize("records", [100_000, 1_000_000])
def test_every_shape_is_served_by_an_index_on_sqlite(sqlite_path, monkeypatch, records):
    monkeypatch.setattr(store_module, "RARE", 50)
    setup = sqlite_store(CONFIG, sqlite_path).connect()
    scale_statistics(setup, records)
    setup.close()
    store = sqlite_store(CONFIG, sqlite_path)
    conn = store.connect(reader=True)  # a new connection reads the statistics as written above
    try:
        for shape, params, expected, _ in SHAPES:
            found = statements(store, conn, params)
            check_sqlite([sqlite_plan(conn, sql, p) for sql, p in found], expected, shape)
            terms = query.parse_q(params.get("q", ""))
            if "phrase of two words" in shape:  # one token of the word pairs, not two position lists
                assert store.dialect._text_index(terms, conn.cursor())[0] == "records_pairs", shape
        plans = [sqlite_plan(conn, sql, p) for sql, p in analytics_statements(store, conn)]
        check_sqlite(plans, r"SEARCH records USING INDEX records_by_created \(created>\? AND created<\?\)",
                     "analytics")
    finally:
        conn.close()


def test_the_sqlite_check_fails_on_a_scan(sqlite_path):
    """The checker itself: a version 1 order index (an expression) cannot bound a range: a scan."""
    conn = sqlite_store(CONFIG, sqlite_path).connect()
    plan = sqlite_plan(conn, "SELECT id FROM records r WHERE f_amount >= ? ORDER BY COALESCE(f_amount, 0), id "
                             "LIMIT 21", [450])
    conn.close()
    with pytest.raises(AssertionError, match="full scan|sorts every match|expected"):
        check_sqlite([plan], r"SEARCH r USING INDEX records_by_amount", "version 1 shape")


PG_FILL = """
INSERT INTO records (publication, message_id, topic, sender, sender_kid, created, received, document,
                     f_amount, f_status, f_placed, f_city, tsv)
SELECT g, md5(g::text), 'com.orders.r' || (g % 10), 'globex', 'kid', {t0} + g, {t0} + g, '{{}}',
       round((1 + random() * 499)::numeric, 2), (ARRAY['new', 'paid', 'shipped'])[1 + g % 3],
       CASE WHEN g % 50 = 0 THEN NULL ELSE 1767225600 + random() * 31536000 END,
       (ARRAY[{cities}])[1 + (g * 7) % 20],
       to_tsvector('simple', CASE WHEN random() < 0.6 THEN 'alpha ' ELSE '' END
                             || CASE WHEN random() < 0.1 THEN 'beta ' ELSE '' END
                             || CASE WHEN g % 200 = 0 THEN 'gamma ' ELSE '' END || 'filler')
FROM generate_series(1, {n}) AS g
"""


def pg_plan(conn, sql, params) -> str:
    cur = conn.cursor()
    cur.execute("EXPLAIN " + sql, params)
    return "\n".join(row[0] for row in cur.fetchall())


def check_postgres(plans: list, expected: str, shape: str) -> None:
    for plan in plans:
        assert "Seq Scan on records" not in plan, f"{shape}: full scan:\n{plan}"
    assert re.search(expected, plans[0]), f"{shape}: expected {expected!r}, got\n{plans[0]}"


def test_every_shape_is_served_by_an_index_on_postgresql():
    n = 100_000
    with own_database("ds_plans") as dsn:
        store = postgres_store(CONFIG, dsn)
        conn = store.connect()
        store.create_schema(conn)
        cities = ", ".join(f"'{c}'" for c in CITIES)
        conn.execute(PG_FILL.format(t0=T0, n=n, cities=cities))
        conn.commit()
        conn.close()
        conn = store.connect(reader=True)
        conn.execute("ANALYZE records")
        try:
            for shape, params, _, expected in SHAPES:
                found = statements(store, conn, params)
                check_postgres([pg_plan(conn, store.dialect.sql(sql), p) for sql, p in found], expected, shape)
            plans = [pg_plan(conn, store.dialect.sql(sql), p) for sql, p in analytics_statements(store, conn)]
            check_postgres(plans, r"records_by_created", "analytics")
        finally:
            conn.close()
