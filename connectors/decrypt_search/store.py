"""The local store of decrypted records: SQLite with FTS5, or PostgreSQL.

Theory of operation.  One ``records`` table holds every record with a column
per indexed field (``f_<name>``); a full-text index holds the record's text
(SQLite: a contentless FTS5 table whose rowid is the record id; PostgreSQL:
a ``tsvector`` column with a GIN index, ``simple`` configuration).  Input we
could not use goes to ``quarantine`` with its reason and the payload as
received.  ``cursors`` holds, per subscription, the last publication stored;
it is written in the same transaction as the records, so after a crash the
connector resumes exactly where its data ends.

Sorting and paging.  Every indexed field F has the sort key
``(F IS NULL, COALESCE(F, 0), id)`` with an index in each direction, so
records without F come last whichever way one sorts (the built-in fields,
never NULL, sort by ``(F, id)`` with one index); a page starts
strictly after the previous page's last key (keyset paging: no offsets, no
record skipped or repeated when new records arrive between pages).

The methods here are blocking; ``service.py`` runs writes on one writer
thread and reads on reader threads, each with its own connection.
"""

import json
import os
import sqlite3
import threading
from dataclasses import dataclass

from .config import BUILTIN_FIELDS, Config
from .ingest import DUPLICATE, Quarantined, Record
from .query import Analytics, Search, encode_cursor, fts5_match, pg_tsquery

QUARANTINE_PAGE = 100
# shares of the records matching the text that decide the search plan (see Dialect.text_filter)
RARE_SHARE = 0.02
RARE_MIN = 1000
COMMON_SHARE = 0.25


@dataclass
class WriteResult:
    stored: list  # (record id, Record) for each record committed
    quarantined: list  # Quarantined committed
    skipped: int  # publications already stored (catch-up overlapping live events)


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

    def text_filter(self, terms, cur) -> tuple:
        """(clause, parameter, checked per row) for the full-text part of a search.

        The plan depends on how many records match, counted (up to a bound) in the FTS index:
        few (at most RARE_SHARE): their rowids drive the query; some (up to COMMON_SHARE): the
        order index drives and each row is looked up in the set of matches, built once; many:
        the order index drives and each candidate that passes the other conditions is checked
        against the FTS index, which stops after a few rows.  No plan collects 80,000 matches
        to return 20 of them, and none checks a rare phrase row by row.
        """
        match = fts5_match(terms)
        cur.execute("SELECT COALESCE(MAX(id), 0) FROM records")
        total = cur.fetchone()[0]
        rare, common = max(RARE_MIN, int(total * RARE_SHARE)), int(total * COMMON_SHARE)
        cur.execute("SELECT rowid FROM records_fts WHERE records_fts MATCH ? LIMIT ?", (match, rare + 1))
        ids = [row[0] for row in cur.fetchall()]
        if len(ids) <= rare:
            return "r.id IN (SELECT value FROM json_each(?))", json.dumps(ids), False
        cur.execute("SELECT COUNT(*) FROM (SELECT rowid FROM records_fts WHERE records_fts MATCH ? LIMIT ?)",
                    (match, common + 1))
        if cur.fetchone()[0] <= common:
            # "+" keeps SQLite from driving the query by the set: it is only looked up
            return "+r.id IN (SELECT rowid FROM records_fts WHERE records_fts MATCH ?)", match, False
        return "EXISTS (SELECT 1 FROM records_fts f WHERE records_fts MATCH ? AND f.rowid = r.id)", match, True


class PostgresDialect(Dialect):
    name = "postgresql"
    real = "DOUBLE PRECISION"
    blob = "BYTEA"
    id_column = "BIGSERIAL PRIMARY KEY"

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def bucket(self, seconds: int) -> str:
        return f"(floor(created / {int(seconds)}) * {int(seconds)})"

    def text_filter(self, terms, cur) -> tuple:
        return "r.tsv @@ to_tsquery('simple', ?)", pg_tsquery(terms), False


def column(name: str) -> str:
    return name if name in BUILTIN_FIELDS else f"f_{name}"


def sort_key(name: str, kind: str) -> tuple:
    """(nulls-last flag expression or None, value expression) that a search orders by.

    Built-in fields are never NULL: one plain index serves both directions."""
    col = column(name)
    if name in BUILTIN_FIELDS:
        return None, col
    empty = "''" if kind == "keyword" else "0"
    return f"(CASE WHEN {col} IS NULL THEN 1 ELSE 0 END)", f"COALESCE({col}, {empty})"


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

    def create_schema(self, conn) -> None:
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
        ]
        if d.name == "sqlite":
            statements.append("CREATE VIRTUAL TABLE IF NOT EXISTS records_fts USING fts5(body, content='', "
                              "tokenize='unicode61 remove_diacritics 2')")
        else:
            statements.append("CREATE INDEX IF NOT EXISTS records_tsv ON records USING GIN (tsv)")
        cur = conn.cursor()
        for statement in statements:
            cur.execute(statement)
        self._add_fields(cur)
        for name, kind in self.fields.items():
            null_last, value = sort_key(name, kind)
            if null_last is None:
                cur.execute(f"CREATE INDEX IF NOT EXISTS records_by_{name} ON records ({value}, id)")
                continue
            cur.execute(f"CREATE INDEX IF NOT EXISTS records_asc_{name} ON records ({null_last}, {value}, id)")
            cur.execute(f"CREATE INDEX IF NOT EXISTS records_desc_{name} ON records "
                        f"({null_last}, {value} DESC, id DESC)")
        conn.commit()

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

    # ---------------------------------------------------------------- writes

    def write(self, conn, items: list, cursors: dict, now: float) -> WriteResult:
        """Commit ``items`` (Record / Quarantined) and the subscription cursors in one transaction."""
        cur = conn.cursor()
        result = WriteResult([], [], 0)
        try:
            for item in items:
                self._write_one(cur, item, result)
            sql = self.dialect.sql(
                "INSERT INTO cursors (subscription, publication, updated) VALUES (?, ?, ?) "
                "ON CONFLICT (subscription) DO UPDATE SET publication = excluded.publication, "
                "updated = excluded.updated")
            for subscription, publication in cursors.items():
                cur.execute(sql, (subscription, publication, now))
            conn.commit()
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
                               item.received, b"", item.sender_kid, item.message_id)
        self._insert_quarantine(cur, item)
        result.quarantined.append(item)

    def _insert_record(self, cur, r: Record) -> int:
        names = [f"f_{f.name}" for f in self.config.index]
        values = [r.fields.get(f.name) for f in self.config.index]
        base = [r.publication, r.message_id, r.topic, r.sender, r.sender_kid, r.created, r.received,
                json.dumps(r.document, ensure_ascii=False, separators=(",", ":"))]
        columns = "publication, message_id, topic, sender, sender_kid, created, received, document"
        extra = "".join(f", {n}" for n in names)
        marks = ", ".join("?" for _ in range(len(base) + len(values)))
        if self.dialect.name == "postgresql":
            cur.execute(self.dialect.sql(f"INSERT INTO records ({columns}{extra}, tsv) VALUES ({marks}, "
                                         "to_tsvector('simple', ?)) RETURNING id"), base + values + [r.text])
            return cur.fetchone()[0]
        cur.execute(f"INSERT INTO records ({columns}{extra}) VALUES ({marks})", base + values)
        record_id = cur.lastrowid
        cur.execute("INSERT INTO records_fts (rowid, body) VALUES (?, ?)", (record_id, r.text))
        return record_id

    def _insert_quarantine(self, cur, q: Quarantined) -> None:
        cur.execute(self.dialect.sql(
            "INSERT INTO quarantine (publication, topic, reason, message, received, sender_kid, message_id, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            (q.publication, q.topic, q.reason, q.message, q.received, q.sender_kid, q.message_id, q.payload))

    # ----------------------------------------------------------------- reads

    def cursors(self, conn) -> dict:
        cur = conn.cursor()
        cur.execute("SELECT subscription, publication FROM cursors")
        return dict(cur.fetchall())

    def search(self, conn, search: Search) -> dict:
        where, params = self._conditions(search.conditions)
        cur = conn.cursor()
        kind = self.fields[search.order]
        null_last, value = sort_key(search.order, kind)
        if search.after is not None:
            where_after, after_params = self._after(null_last, value, search)
            where.append(where_after)
            params += after_params
        if search.terms:
            clause, match, per_row = self.dialect.text_filter(search.terms, cur)
            if per_row and where:
                # checked per candidate row: only once the cheap conditions hold (SQLite may
                # otherwise run the full-text check on every row it scans)
                clause = f"(CASE WHEN {' AND '.join(where)} THEN {clause} ELSE 0 END)"
                params = params + params
            where.append(clause)
            params.append(match)
        direction = "DESC" if search.descending else "ASC"
        nulls = f"{null_last} ASC, " if null_last else ""
        sql = (f"SELECT r.id, r.publication, r.topic, r.message_id, r.sender, r.created, r.received, r.document, "
               f"{null_last or 0}, {value} FROM records r"
               + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY {nulls}{value} {direction}, r.id {direction} LIMIT {search.limit + 1}")
        cur.execute(self.dialect.sql(sql), params)
        rows = cur.fetchall()
        records = [_record(row) for row in rows[:search.limit]]
        next_cursor = None
        if len(rows) > search.limit:
            last = rows[search.limit - 1]
            next_cursor = encode_cursor(search.order_spec, (int(last[8]), last[9], last[0]))
        return {"records": records, "next_cursor": next_cursor}

    def _after(self, null_last: str, value: str, search: Search) -> tuple:
        flag, last, last_id = search.after
        op = "<" if search.descending else ">"
        if null_last is None:
            return f"({value}, r.id) {op} (?, ?)", [last, last_id]
        # nulls last in both directions: the flag always ascends
        return (f"({null_last} > ? OR ({null_last} = ? AND ({value}, r.id) {op} (?, ?)))",
                [flag, flag, last, last_id])

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
