"""The local store of decrypted records: SQLite with FTS5, or PostgreSQL.

Theory of operation.  One ``records`` table holds every record with a column
per indexed field (``f_<name>``); a full-text index holds the record's text
(SQLite: contentless FTS5 tables whose rowid is the record id, one of the
words and one of the pairs of adjacent words; PostgreSQL:
a ``tsvector`` column with a GIN index, ``simple`` configuration).  Input we
could not use goes to ``quarantine`` with its reason and the payload as
received.  ``cursors`` holds, per subscription, the last publication stored;
it is written in the same transaction as the records, so after a crash the
connector resumes exactly where its data ends.

Sorting and paging.  Every indexed field F has one index ``(F, id)`` over
the plain column, which serves both directions and bounds a range on F;
every keyword field K (``topic`` and ``sender`` too) also has ``(K, created,
id)``, for "K equals this, newest first".  Records without F come last
whichever way one sorts: a search reads the records with F first (``F IS
NOT NULL``, in the index's order) and, when the page is not full yet, those
without it (``F IS NULL``, by id).  A page starts strictly after the
previous page's last key (keyset paging: no offsets, no record skipped or
repeated when new records arrive between pages).

Schema versions.  ``store_meta`` records the schema version.  A store made
before versions were recorded is version 1 (order indexes over ``CASE`` /
``COALESCE`` expressions, which a range on the sorted field cannot bound);
:meth:`Store.create_schema` migrates it in place, in one transaction, and
says so; a store of a newer version than this code knows is refused.
Version 4 adds ``key_directory``: per organisation, the last key record
accepted (ours: the last we published), so the key directory's trust and
rollback guard outlive a restart.
Version 3 (SQLite) has FTS5 prefix indexes and the word pairs (``records_pairs``,
see query.word_pairs); a version 2 store's full-text tables are made anew from
its documents.

The methods here are blocking; ``service.py`` runs writes on one writer
thread and reads on reader threads, each with its own connection.
"""

import itertools
import json
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass

from .config import BUILTIN_FIELDS, Config
from .ingest import DUPLICATE, Quarantined, Record, text_of
from .query import (BUCKETS, UNSURE, Analytics, ReportQuery, Search, encode_cursor, fts5_match, pairs_match,
                    pg_tsquery, word_pairs)

SCHEMA_VERSION = 4
# the lengths of word prefix FTS5 keeps an index of (characters): `word*` with these is one token's list
PREFIX_INDEX = (2, 3)
# statistics for the planner and the full-text index merged into one segment whenever the
# store has doubled since the last time (from this many records on): amortized, a constant per record
MAINTAIN_FROM = 10_000
QUARANTINE_PAGE = 100
# how many records match the text decides the search plan (see Dialect.text_filter): at most RARE,
# their ids drive; up to sqrt(COMMON_FACTOR x records x limit), a set of them is looked up
RARE = 3000
COMMON_FACTOR = 50


@dataclass
class WriteResult:
    stored: list  # (record id, Record) for each record committed
    quarantined: list  # Quarantined committed
    skipped: int  # publications already stored (catch-up overlapping live events)
    committed: float = 0.0  # time.perf_counter() right after the commit (the live feed's latency starts here)


class Dialect:
    """What differs between SQLite and PostgreSQL."""

    name = "sqlite"
    real = "REAL"
    blob = "BLOB"
    id_column = "INTEGER PRIMARY KEY"

    def sql(self, text: str) -> str:
        return text

    def bucket(self, seconds: int) -> str:
        return f"(CAST(created / {int(seconds)} AS INTEGER) * {int(seconds)})"

    def text_filter(self, terms, cur, limit: int) -> tuple:
        """(clause, parameter, checked per row) for the full-text part of a search.

        The plan depends on how many records match, counted (up to a bound) in the FTS index:
        at most RARE, their rowids drive the query and the matches are sorted; up to the bound,
        the order index drives and each row is looked up in the set of matches, built once;
        more, and the order index drives and each candidate that passes the other conditions is
        checked against the FTS index, which stops after a few rows (not for a prefix without a
        prefix index, 2 or 3 characters: it always takes the set, a check of one costing
        milliseconds).  The bound weighs building the set (about 0.4 us per match) against
        checking candidates (about 20 us each, and limit x records / matches of them):
        sqrt(COMMON_FACTOR x records x limit), 10,000 matches at 100,000 records, 32,000 at
        1,000,000.  No plan collects 80,000 matches to return 20 of them, and none checks a rare
        phrase row by row.  Phrases of two words are answered from ``records_pairs`` (one token
        each) where that is exact (see query.word_pairs), with the same plans.
        """
        table, match = self._text_index(terms, cur)
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM records")
        common = max(RARE, int(math.sqrt(COMMON_FACTOR * cur.fetchone()[0] * limit)))
        # a prefix beyond the prefix index never takes the per-record check: no need to count far
        prefix = table == "records_fts" and any(t.prefix and len(t.words[-1]) not in PREFIX_INDEX for t in terms)
        cur.execute(f"SELECT COUNT(*) FROM (SELECT rowid FROM {table} WHERE {table} MATCH ? LIMIT ?)",
                    (match, (RARE if prefix else common) + 1))
        matches = cur.fetchone()[0]
        if matches <= RARE:
            cur.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ?", (match,))
            return "r.id IN (SELECT value FROM json_each(?))", json.dumps([row[0] for row in cur.fetchall()]), False
        if matches <= common or prefix:
            # a prefix costs milliseconds per record to check (it is expanded each time), more than
            # building the set of its matches once
            # "+" keeps SQLite from driving the query by the set: it is only looked up
            return f"+r.id IN (SELECT rowid FROM {table} WHERE {table} MATCH ?)", match, False
        return f"EXISTS (SELECT 1 FROM {table} f WHERE {table} MATCH ? AND f.rowid = r.id)", match, True

    def _text_index(self, terms, cur) -> tuple:
        """(FTS5 table, MATCH expression): ``records_pairs`` for phrases of two words while it is
        exact (no record in the store is UNSURE), else the full-text index."""
        pairs = pairs_match(terms)
        if pairs is not None:
            cur.execute("SELECT 1 FROM records_pairs WHERE records_pairs MATCH ? LIMIT 1", (f'"{UNSURE}"',))
            if cur.fetchone() is None:
                return "records_pairs", pairs
        return "records_fts", fts5_match(terms)

    def text_per_row(self, terms) -> tuple:
        """(clause, parameter): the text checked for each record of a few."""
        return "EXISTS (SELECT 1 FROM records_fts f WHERE records_fts MATCH ? AND f.rowid = r.id)", fts5_match(terms)

    def text_set(self, terms) -> tuple:
        """(clause, parameter): the records matching the text, for aggregates over all of them."""
        return "r.id IN (SELECT rowid FROM records_fts WHERE records_fts MATCH ?)", fts5_match(terms)


class PostgresDialect(Dialect):
    name = "postgresql"
    real = "DOUBLE PRECISION"
    blob = "BYTEA"
    id_column = "BIGSERIAL PRIMARY KEY"

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def bucket(self, seconds: int) -> str:
        return f"(floor(created / {int(seconds)}) * {int(seconds)})"

    def text_set(self, terms) -> tuple:
        return "r.tsv @@ to_tsquery('simple', ?)", pg_tsquery(terms)

    text_per_row = text_set

    def text_filter(self, terms, cur, limit: int) -> tuple:
        return "r.tsv @@ to_tsquery('simple', ?)", pg_tsquery(terms), False


def column(name: str) -> str:
    return name if name in BUILTIN_FIELDS else f"f_{name}"


# SQLite's full-text tables, both contentless (the rowid is the record id).  Version 3 added the
# prefix indexes and records_pairs (query.word_pairs); detail=none: a pair's presence is all it keeps.
FTS_TABLES = [
    "CREATE VIRTUAL TABLE IF NOT EXISTS records_fts USING fts5(body, content='', "
    f"tokenize='unicode61 remove_diacritics 2', prefix='{' '.join(map(str, PREFIX_INDEX))}')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS records_pairs USING fts5(body, content='', detail='none', "
    "tokenize=\"unicode61 tokenchars '_'\")",
]


class StoreVersionError(ValueError):
    pass


class Store:
    """Schema, writes and queries over one DB-API connection factory."""

    def __init__(self, config: Config, connect, dialect: Dialect) -> None:
        self.config = config
        self._connect = connect
        self.dialect = dialect
        self.fields = dict(BUILTIN_FIELDS)
        self.fields.update({f.name: f.type for f in config.index})

    def connect(self, reader: bool = False):
        """A connection; a reader's sees each commit as it happens (PostgreSQL: autocommit)."""
        return self._connect(reader)

    # ---------------------------------------------------------------- schema

    def create_schema(self, conn) -> list:
        """Create or migrate the schema; the steps of a migration done, for the log (empty: none)."""
        cur = conn.cursor()
        if self.dialect.name == "sqlite":
            cur.execute("BEGIN")  # the module would commit each DDL statement on its own
        try:
            version = self._version(cur)
            if version is not None and version > SCHEMA_VERSION:
                raise StoreVersionError(f"the store has schema version {version}, newer than this connector's "
                                        f"{SCHEMA_VERSION}: run the newer connector, or restore a backup")
            for statement in self._tables():
                cur.execute(statement)
            self._add_fields(cur)
            done = self._migrate_from_1(cur) if version == 1 else []
            if version is not None and (version < 3 or self._pairs_behind(cur)):
                done += self._migrate_to_3(cur, version)
            if version is not None and version < 4:
                done.append("schema 3 -> 4: the key directory's table (key_directory) added")
            for statement in self._indexes(cur):
                cur.execute(statement)
            cur.execute(self.dialect.sql("DELETE FROM store_meta WHERE name = 'schema_version'"))
            cur.execute(self.dialect.sql("INSERT INTO store_meta (name, value) VALUES ('schema_version', ?)"),
                        (str(SCHEMA_VERSION),))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return done

    def _version(self, cur) -> int | None:
        """The store's schema version; None for a new store, 1 for one made before versions were kept."""
        if not self._has_table(cur, "records"):
            return None
        if not self._has_table(cur, "store_meta"):
            return 1
        cur.execute("SELECT value FROM store_meta WHERE name = 'schema_version'")
        row = cur.fetchone()
        return int(row[0]) if row else 1

    def _has_table(self, cur, name: str) -> bool:
        if self.dialect.name == "sqlite":
            cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        else:
            cur.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                        "AND table_name = %s", (name,))
        return cur.fetchone() is not None

    def _tables(self) -> list:
        d = self.dialect
        statements = [
            f"""CREATE TABLE IF NOT EXISTS records (
                id {d.id_column}, publication BIGINT NOT NULL UNIQUE, message_id TEXT NOT NULL UNIQUE,
                topic TEXT NOT NULL, sender TEXT NOT NULL, sender_kid TEXT NOT NULL,
                created {d.real} NOT NULL, received {d.real} NOT NULL, document TEXT NOT NULL
                {', tsv tsvector' if d.name == 'postgresql' else ''})""",
            f"""CREATE TABLE IF NOT EXISTS quarantine (
                id {d.id_column}, publication BIGINT NOT NULL UNIQUE, topic TEXT NOT NULL, reason TEXT NOT NULL,
                message TEXT NOT NULL, received {d.real} NOT NULL, sender_kid TEXT, message_id TEXT,
                payload {d.blob} NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS quarantine_by_reason ON quarantine (reason, id)",
            f"CREATE TABLE IF NOT EXISTS cursors (subscription TEXT PRIMARY KEY, publication BIGINT NOT NULL, "
            f"updated {d.real} NOT NULL)",
            "CREATE TABLE IF NOT EXISTS indexed_fields (name TEXT PRIMARY KEY, type TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            # version 4: the key directory's last accepted record per organisation (ours: the last we published)
            f"CREATE TABLE IF NOT EXISTS key_directory (org TEXT PRIMARY KEY, seq BIGINT NOT NULL, "
            f"event TEXT NOT NULL, accepted {d.real} NOT NULL)",
        ]
        if d.name == "sqlite":
            statements += FTS_TABLES
        else:
            statements.append("CREATE INDEX IF NOT EXISTS records_tsv ON records USING GIN (tsv)")
        return statements

    def _indexes(self, cur) -> list:
        """Version 2: (F, id) for every field, (K, created, id) for every keyword field."""
        statements = []
        for name, kind in self.fields.items():
            col = column(name)
            statements.append(f"CREATE INDEX IF NOT EXISTS records_by_{name} ON records ({col}, id)")
            if kind == "keyword":
                statements.append(f"CREATE INDEX IF NOT EXISTS records_{name}_created ON records "
                                  f"({col}, created, id)")
        return statements

    def _migrate_from_1(self, cur) -> list:
        """Version 1 ordered every indexed field by two expression indexes; drop them (the new are made next)."""
        cur.execute("SELECT name FROM indexed_fields")
        names = [row[0] for row in cur.fetchall()]
        for name in names:
            for direction in ("asc", "desc"):
                cur.execute(f"DROP INDEX IF EXISTS records_{direction}_{name}")
        return [f"schema 1 -> 2: the order indexes of {', '.join(names) or 'no field'} are now over "
                "the plain columns, with (field, created) indexes for keyword fields"]

    def _pairs_behind(self, cur) -> bool:
        """A connector of version 1 (it knew no versions) wrote records here without their word
        pairs: the full-text tables are made anew, as from version 2."""
        if self.dialect.name != "sqlite":
            return False
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM records")
        last = cur.fetchone()[0]
        cur.execute("SELECT rowid FROM records_pairs ORDER BY rowid DESC LIMIT 1")
        row = cur.fetchone()
        return (row[0] if row else 0) < last

    def _migrate_to_3(self, cur, version: int) -> list:
        """Version 3 (SQLite): the full-text index with prefix indexes, and the word pairs; both are
        made anew from the stored documents (FTS5 cannot add a prefix index to a table)."""
        if self.dialect.name != "sqlite":
            return []
        cur.execute("DROP TABLE records_fts")
        cur.execute("DROP TABLE IF EXISTS records_pairs")
        for statement in FTS_TABLES:
            cur.execute(statement)
        read = cur.connection.cursor()
        read.execute("SELECT id, document FROM records ORDER BY id")
        count = 0
        while rows := read.fetchmany(1000):
            texts = [(record_id, text_of(json.loads(document), self.config.text_fields))
                     for record_id, document in rows]
            cur.executemany("INSERT INTO records_fts (rowid, body) VALUES (?, ?)", texts)
            cur.executemany("INSERT INTO records_pairs (rowid, body) VALUES (?, ?)",
                            [(record_id, word_pairs(text)) for record_id, text in texts])
            count += len(rows)
        step = "schema 2 -> 3" if version < 3 else "schema 3, records without their word pairs"
        return [f"{step}: the full-text index of {count} records made anew from their documents, "
                f"with prefix indexes ({', '.join(map(str, PREFIX_INDEX))} characters) and word pairs for phrases"]

    def _add_fields(self, cur) -> None:
        cur.execute("SELECT name, type FROM indexed_fields")
        known = dict(cur.fetchall())
        for f in self.config.index:
            if f.name in known and known[f.name] != f.type:
                raise ValueError(f"index field '{f.name}' was a {known[f.name]} and is now a {f.type}: the "
                                 "store cannot change a field's type (give it a new name)")
            if f.name not in known:
                kind = "TEXT" if f.type == "keyword" else self.dialect.real
                cur.execute(f"ALTER TABLE records ADD COLUMN f_{f.name} {kind}")
                cur.execute(self.dialect.sql("INSERT INTO indexed_fields (name, type) VALUES (?, ?)"),
                            (f.name, f.type))
        # fields no longer configured keep their column; they are simply not indexed any more

    # ----------------------------------------------------------- maintenance

    def maintain(self, conn, force: bool = False) -> int | None:
        """Refresh the planner's statistics (and, SQLite, merge the full-text index) once the store has doubled.

        The range, equality and order conditions of a search are weighed with these statistics (on
        PostgreSQL too: its autovacuum would get there, a minute or more after a catch-up); the
        full-text index's segments, merged into one, make a per-record text check cost a seek
        instead of one per segment.  Returns the record count maintained at, or None when nothing
        was due."""
        sql = self.dialect.sql
        cur = conn.cursor()
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM records")
        records = cur.fetchone()[0]
        cur.execute("SELECT value FROM store_meta WHERE name = 'maintained_at'")
        row = cur.fetchone()
        last = int(row[0]) if row else 0
        if not force and (records < MAINTAIN_FROM or records < 2 * last):
            return None
        if self.dialect.name == "sqlite":
            cur.execute("ANALYZE")
            cur.execute("INSERT INTO records_fts (records_fts) VALUES ('optimize')")
            cur.execute("INSERT INTO records_pairs (records_pairs) VALUES ('optimize')")
        else:
            cur.execute("ANALYZE records")
        cur.execute("DELETE FROM store_meta WHERE name = 'maintained_at'")
        cur.execute(sql("INSERT INTO store_meta (name, value) VALUES ('maintained_at', ?)"), (str(records),))
        conn.commit()
        return records

    # ---------------------------------------------------------------- writes

    def write(self, conn, items: list, cursors: dict, now: float) -> WriteResult:
        """Commit ``items`` (Record / Quarantined) and the subscription cursors in one transaction."""
        cur = conn.cursor()
        result = WriteResult([], [], 0)
        try:
            if self.dialect.name == "postgresql":
                self._write_batch(cur, items, result)
            else:
                for item in items:
                    self._write_one(cur, item, result)
                # the full-text rows of the batch in two statements
                cur.executemany("INSERT INTO records_fts (rowid, body) VALUES (?, ?)",
                                [(record_id, r.text) for record_id, r in result.stored])
                cur.executemany("INSERT INTO records_pairs (rowid, body) VALUES (?, ?)",
                                [(record_id, word_pairs(r.text)) for record_id, r in result.stored])
            sql = self.dialect.sql(
                "INSERT INTO cursors (subscription, publication, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (subscription) DO UPDATE SET publication = excluded.publication, "
                "updated = excluded.updated")
            if cursors:
                cur.executemany(sql, [(subscription, publication, now) for subscription, publication in cursors.items()])
            conn.commit()
            result.committed = time.perf_counter()
        except BaseException:
            conn.rollback()
            raise
        return result

    def _write_one(self, cur, item, result: WriteResult) -> None:
        sql = self.dialect.sql
        cur.execute(sql("SELECT 1 FROM records WHERE publication = ? UNION ALL "
                        "SELECT 1 FROM quarantine WHERE publication = ?"), (item.publication, item.publication))
        if cur.fetchone() is not None:
            result.skipped += 1
            return
        if isinstance(item, Record):
            cur.execute(sql("SELECT id FROM records WHERE message_id = ?"), (item.message_id,))
            existing = cur.fetchone()
            if existing is None:
                result.stored.append((self._insert_record(cur, item), item))
                return
            item = Quarantined(item.publication, item.topic, DUPLICATE,
                               f"message {item.message_id} is stored already as record {existing[0]} (a replay)",
                               item.received, item.payload, item.sender_kid, item.message_id)
        self._insert_quarantine(cur, item)
        result.quarantined.append(item)

    def _write_batch(self, cur, items: list, result: WriteResult) -> None:
        """PostgreSQL: what _write_one does for each item, in four statements for the whole batch
        (each statement is a round trip and most of the connector's CPU per record otherwise)."""
        sql = self.dialect.sql
        publications = [item.publication for item in items]
        cur.execute(sql("SELECT publication FROM records WHERE publication = ANY(?) UNION ALL "
                        "SELECT publication FROM quarantine WHERE publication = ANY(?)"), (publications, publications))
        seen = {row[0] for row in cur.fetchall()}
        cur.execute(sql("SELECT message_id, id FROM records WHERE message_id = ANY(?)"),
                    ([item.message_id for item in items if isinstance(item, Record)],))
        stored_as = dict(cur.fetchall())  # message id -> record id (or the Record of this batch that takes it)
        plan = []  # in batch order: Record to insert, Quarantined, or (Record, the Record it repeats)
        for item in items:
            if item.publication in seen:
                result.skipped += 1
                continue
            seen.add(item.publication)
            if isinstance(item, Record):
                if item.message_id in stored_as:
                    plan.append((item, stored_as[item.message_id]))
                    continue
                stored_as[item.message_id] = item
            plan.append(item)
        records = [item for item in plan if isinstance(item, Record)]
        ids = self._insert_records(cur, records)
        result.stored += list(zip(ids, records))
        record_id = dict(zip(map(id, records), ids))
        quarantined = []
        for item in plan:
            if isinstance(item, tuple):
                item, first = item
                existing = first if isinstance(first, int) else record_id[id(first)]
                quarantined.append(Quarantined(
                    item.publication, item.topic, DUPLICATE,
                    f"message {item.message_id} is stored already as record {existing} (a replay)",
                    item.received, item.payload, item.sender_kid, item.message_id))
            elif isinstance(item, Quarantined):
                quarantined.append(item)
        if quarantined:
            cur.executemany(sql(
                "INSERT INTO quarantine (publication, topic, reason, message, received, sender_kid, message_id, "
                "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                [(q.publication, q.topic, q.reason, q.message, q.received, q.sender_kid, q.message_id, q.payload)
                 for q in quarantined])
        result.quarantined += quarantined

    def _insert_records(self, cur, records: list) -> list:
        """PostgreSQL: the records in one INSERT from arrays, ids given in batch order; their ids."""
        if not records:
            return []
        base = [("publication", "bigint"), ("message_id", "text"), ("topic", "text"), ("sender", "text"),
                ("sender_kid", "text"), ("created", "double precision"), ("received", "double precision"),
                ("document", "text")]
        fields = [(f"f_{f.name}", "text" if f.type == "keyword" else "double precision") for f in self.config.index]
        columns = base + fields + [("body", "text")]
        arrays = [[r.publication for r in records], [r.message_id for r in records], [r.topic for r in records],
                  [r.sender for r in records], [r.sender_kid for r in records], [r.created for r in records],
                  [r.received for r in records],
                  [json.dumps(r.document, ensure_ascii=False, separators=(",", ":")) for r in records]]
        arrays += [[r.fields.get(f.name) for r in records] for f in self.config.index]
        arrays.append([r.text for r in records])
        names = ", ".join(name for name, _ in base + fields)
        unnest = ", ".join(f"%s::{kind}[]" for _, kind in columns)
        cur.execute(f"INSERT INTO records ({names}, tsv) SELECT {names}, to_tsvector('simple', body) "
                    f"FROM unnest({unnest}) WITH ORDINALITY AS batch ({names}, body, n) ORDER BY n "
                    "RETURNING id, publication", arrays)
        ids = dict((publication, record_id) for record_id, publication in cur.fetchall())
        return [ids[r.publication] for r in records]

    def _insert_record(self, cur, r: Record) -> int:
        """SQLite: one record (its full-text rows are written with the batch's); its id."""
        names = [f"f_{f.name}" for f in self.config.index]
        values = [r.fields.get(f.name) for f in self.config.index]
        base = [r.publication, r.message_id, r.topic, r.sender, r.sender_kid, r.created, r.received,
                json.dumps(r.document, ensure_ascii=False, separators=(",", ":"))]
        columns = "publication, message_id, topic, sender, sender_kid, created, received, document"
        extra = "".join(f", {n}" for n in names)
        marks = ", ".join("?" for _ in range(len(base) + len(values)))
        cur.execute(f"INSERT INTO records ({columns}{extra}) VALUES ({marks})", base + values)
        return cur.lastrowid

    def _insert_quarantine(self, cur, q: Quarantined) -> None:
        cur.execute(self.dialect.sql(
            "INSERT INTO quarantine (publication, topic, reason, message, received, sender_kid, message_id, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            (q.publication, q.topic, q.reason, q.message, q.received, q.sender_kid, q.message_id, q.payload))

    def save_key_record(self, conn, org: str, seq: int, event: str, now: float) -> None:
        """Keep ``org``'s key record event (JSON) unless a later one is kept already."""
        cur = conn.cursor()
        try:
            cur.execute(self.dialect.sql(
                "INSERT INTO key_directory (org, seq, event, accepted) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (org) DO UPDATE SET seq = excluded.seq, event = excluded.event, "
                "accepted = excluded.accepted WHERE key_directory.seq < excluded.seq"), (org, seq, event, now))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def key_records(self, conn) -> dict:
        """org -> the key record event (JSON) kept for it."""
        cur = conn.cursor()
        cur.execute("SELECT org, event FROM key_directory")
        return dict(cur.fetchall())

    # ----------------------------------------------------------------- reads

    def cursors(self, conn) -> dict:
        cur = conn.cursor()
        cur.execute("SELECT subscription, publication FROM cursors")
        return dict(cur.fetchall())

    def search(self, conn, search: Search) -> dict:
        cur = conn.cursor()
        where, params = self._conditions(search.conditions)
        text = self.dialect.text_filter(search.terms, cur, search.limit) if search.terms else None
        nullable = search.order not in BUILTIN_FIELDS
        after_nulls = search.after is not None and search.after[0] == 1
        rows = [] if after_nulls else self._page(cur, search, where, params, text, nulls=False)
        if nullable and len(rows) <= search.limit and not _excludes_nulls(search):
            rows += self._page(cur, search, where, params, text, nulls=True, limit=search.limit + 1 - len(rows))
        records = [_record(row) for row, _ in rows[:search.limit]]
        next_cursor = None
        if len(rows) > search.limit:
            last, flag = rows[search.limit - 1]
            next_cursor = encode_cursor(search.order_spec, (flag, last[8] if not flag else 0, last[0]))
        return {"records": records, "next_cursor": next_cursor}

    def _page(self, cur, search: Search, where: list, params: list, text, nulls: bool, limit: int = 0) -> list:
        """One part of a page: the records with the order field (in its order) or without it (by id)."""
        col = f"r.{column(search.order)}"
        where, params = list(where), list(params)
        op = "<" if search.descending else ">"
        direction = "DESC" if search.descending else "ASC"
        if nulls:
            where.append(f"{col} IS NULL")
            if search.after is not None and search.after[0] == 1:
                where.append(f"r.id {op} ?")
                params.append(search.after[2])
            order = f"r.id {direction}"
        else:
            if search.order not in BUILTIN_FIELDS:
                where.append(f"{col} IS NOT NULL")
            if search.after is not None:
                where.append(f"({col}, r.id) {op} (?, ?)")
                params += [search.after[1], search.after[2]]
            order = f"{col} {direction}, r.id {direction}"
        if text is not None:
            clause, match, per_row = text
            if per_row and where:
                # checked per candidate row: only once the cheap conditions hold (SQLite may
                # otherwise run the full-text check on every row it scans)
                clause = f"(CASE WHEN {' AND '.join(where)} THEN {clause} ELSE 0 END)"
                params = params + params
            where = where + [clause]
            params = params + [match]
        sql = (f"SELECT r.id, r.publication, r.topic, r.message_id, r.sender, r.created, r.received, r.document, "
               f"{col} FROM records r" + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY {order} LIMIT {int(limit or search.limit + 1)}")
        cur.execute(self.dialect.sql(sql), params)
        return [(row, 1 if nulls else 0) for row in cur.fetchall()]

    def _conditions(self, conditions, table: str = "r.") -> tuple:
        where, params = [], []
        ops = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        for c in conditions:
            col = f"{table}{column(c.field)}"
            if c.op == "in":
                where.append(f"{col} IN ({', '.join('?' for _ in c.value)})")
                params += list(c.value)
            else:
                where.append(f"{col} {ops[c.op]} ?")
                params.append(c.value)
        return where, params

    def get(self, conn, record_id: int) -> dict | None:
        cur = conn.cursor()
        cur.execute(self.dialect.sql(
            "SELECT id, publication, topic, message_id, sender, created, received, document FROM records "
            "WHERE id = ?"), (record_id,))
        row = cur.fetchone()
        return _record(row) if row else None

    def analytics(self, conn, a: Analytics) -> dict:
        where, params = self._conditions(a.conditions, table="")
        where = ["created >= ?", "created < ?"] + where
        key = column(a.by)
        bucket = self.dialect.bucket(a.bucket)
        sql = (f"SELECT {bucket} AS start, {key} AS value, COUNT(*) FROM records WHERE {' AND '.join(where)} "
               f"GROUP BY start, value ORDER BY start, value")
        cur = conn.cursor()
        cur.execute(self.dialect.sql(sql), [a.start, a.end] + params)
        buckets = [{"start": float(start), "value": value, "count": int(count)}
                   for start, value, count in cur.fetchall()]
        return {"by": a.by, "bucket": a.bucket_name, "from": a.start, "to": a.end, "buckets": buckets,
                "total": sum(b["count"] for b in buckets)}

    def after(self, conn, conditions: tuple, terms: tuple, after: int, limit: int) -> list:
        """The records after id ``after`` that pass the filters, in id order (the live feed's replay)."""
        cur = conn.cursor()
        where, params = self._conditions(conditions)
        where.append("r.id > ?")
        params.append(after)
        if terms:
            clause, match, _ = self.dialect.text_filter(terms, cur, limit)
            where.append(clause)
            params.append(match)
        cur.execute(self.dialect.sql(
            "SELECT r.id, r.publication, r.topic, r.message_id, r.sender, r.created, r.received, r.document "
            f"FROM records r WHERE {' AND '.join(where)} ORDER BY r.id LIMIT {int(limit)}"), params)
        return [_record(row) for row in cur.fetchall()]

    def text_matches(self, conn, terms: tuple, ids: list) -> set:
        """Which of the records ``ids`` match the text (the live feed's check of a committed batch)."""
        clause, match = self.dialect.text_per_row(terms)
        marks = ", ".join("?" for _ in ids)
        cur = conn.cursor()
        cur.execute(self.dialect.sql(f"SELECT r.id FROM records r WHERE r.id IN ({marks}) AND {clause}"),
                    list(ids) + [match])
        return {row[0] for row in cur.fetchall()}

    def report(self, conn, rq: ReportQuery) -> dict:
        """A configured report: its metrics per group (time bucket of created, then the by fields)."""
        r = rq.report
        where, params = self._conditions(rq.conditions)
        where = ["r.created >= ?", "r.created < ?"] + where
        params = [rq.start, rq.end] + params
        if rq.terms:
            clause, match = self.dialect.text_set(rq.terms)
            where.append(clause)
            params.append(match)
        keys = ([self.dialect.bucket(BUCKETS[r.bucket])] if r.bucket else []) + [f"r.{column(f)}" for f in r.by]
        value = f"r.{column(r.field)}"
        # groups without a by value come last in their bucket, on both backends
        group = f" GROUP BY {', '.join(keys)} ORDER BY {', '.join(k + ' NULLS LAST' for k in keys)}" if keys else ""
        cur = conn.cursor()
        cur.execute(self.dialect.sql(
            f"SELECT {''.join(k + ', ' for k in keys)}COUNT({value}), SUM({value}), AVG({value}), MIN({value}), "
            f"MAX({value}) FROM records r WHERE {' AND '.join(where)}{group}"), params)
        groups = {_key(r, row[:len(keys)]): self._group(r, row[:len(keys)], row[len(keys):])
                  for row in cur.fetchall() if row[len(keys)]}  # groups whose records all lack the field: none
        percentiles = [m for m in r.metrics if m.startswith("p")]
        if percentiles and groups:
            cur.execute(self.dialect.sql(
                f"SELECT {''.join(k + ', ' for k in keys)}{value} FROM records r WHERE {' AND '.join(where)} "
                f"AND {value} IS NOT NULL ORDER BY {''.join(k + ', ' for k in keys)}{value}"), params)
            for key, rows in itertools.groupby(cur.fetchall(), key=lambda row: _key(r, row[:len(keys)])):
                _percentiles(groups[key], [row[-1] for row in rows], percentiles)
        return {"name": r.name, "field": r.field, "by": list(r.by), "bucket": r.bucket, "from": rq.start,
                "to": rq.end, "groups": list(groups.values())}

    def _group(self, r, key: tuple, figures: tuple) -> dict:
        group = {"start": float(key[0])} if r.bucket else {}
        group.update(zip(r.by, key[1:] if r.bucket else key))
        count, total, average, low, high = figures
        named = {"count": int(count), "sum": total, "avg": average, "min": low, "max": high}
        group.update({m: named[m] if m == "count" else float(named[m]) for m in r.metrics if m in named})
        return group

    def quarantine(self, conn, reason: str | None, limit: int, before: int | None) -> dict:
        where, params = [], []
        if reason:
            where.append("reason = ?")
            params.append(reason)
        if before is not None:
            where.append("id < ?")
            params.append(before)
        sql = ("SELECT id, publication, topic, reason, message, received, sender_kid, message_id, payload "
               "FROM quarantine" + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY id DESC LIMIT {int(limit) + 1}")
        cur = conn.cursor()
        cur.execute(self.dialect.sql(sql), params)
        rows = cur.fetchall()
        entries = [{"id": r[0], "publication": r[1], "topic": r[2], "reason": r[3], "message": r[4],
                    "received": r[5], "sender_kid": r[6], "message_id": r[7], "size": len(r[8])}
                   for r in rows[:limit]]
        return {"entries": entries, "next_before": entries[-1]["id"] if len(rows) > limit else None}

    def counts(self, conn) -> dict:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM records")
        records = cur.fetchone()[0]
        cur.execute("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason ORDER BY reason")
        return {"records": int(records), "quarantine": {reason: int(n) for reason, n in cur.fetchall()}}


def _key(report, key: tuple) -> tuple:
    """A group's key as both queries give it (the bucket's start as a float on every backend)."""
    return ((float(key[0]),) + tuple(key[1:])) if report.bucket else tuple(key)


def _percentiles(group: dict, values: list, metrics: list) -> None:
    """Nearest rank: pN is the smallest value with at least N % of the values at or below it."""
    for metric in metrics:
        rank = math.ceil(int(metric[1:]) / 100 * len(values))
        group[metric] = float(values[max(rank, 1) - 1])


def _excludes_nulls(search: Search) -> bool:
    """A condition on the order field holds for no record without it."""
    return any(c.field == search.order for c in search.conditions)


def _record(row) -> dict:
    return {"id": row[0], "publication": row[1], "topic": row[2], "message_id": row[3], "sender": row[4],
            "created": row[5], "received": row[6], "document": json.loads(row[7])}


# ------------------------------------------------------------- backends

def sqlite_store(config: Config, path: str) -> Store:
    if not os.path.exists(path):
        # plaintext lives here: 0600 from the start (SQLite gives -wal and -shm the same mode)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))

    def connect(reader: bool):
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA cache_size=-32768")  # 32 MiB: the indexes of 100,000s of records stay in memory
        return conn

    return Store(config, connect, Dialect())


def postgres_store(config: Config, dsn: str) -> Store:
    try:
        import psycopg
    except ImportError:
        raise RuntimeError("store.backend = \"postgresql\" needs psycopg: pip install 'relayrouter[postgresql]'") \
            from None

    def connect(reader: bool):
        return psycopg.connect(dsn, autocommit=reader)

    return Store(config, connect, PostgresDialect())


def open_store(config: Config, state_dir: str) -> Store:
    if config.store_backend == "postgresql":
        return postgres_store(config, config.store_dsn)
    return sqlite_store(config, os.path.join(state_dir, config.store_path))


class PerThread:
    """One connection per thread, opened on first use."""

    def __init__(self, store: Store, reader: bool) -> None:
        self.store = store
        self.reader = reader
        self._local = threading.local()
        self._all: list = []
        self._lock = threading.Lock()

    def get(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.store.connect(self.reader)
            with self._lock:
                self._all.append(conn)
        return conn

    def close_all(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # closing at shutdown: nothing left to do about it
                pass
