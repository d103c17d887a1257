"""The device registry and the data store, over SQLite or PostgreSQL.

Everything here is blocking DB-API code meant to run on the store's own
thread (``service.Store``); the reactor never calls it directly.  Both
dialects use the same SQL with ``?`` placeholders (rewritten to ``%s`` for
psycopg).

Tables: ``devices`` (one row per tenant and device id: label, attribute
definitions as JSON, a credential generation, times) and ``device_data`` (one
row per accepted message: tenant, device, timestamp ms, attributes as JSON).
"""

import json
import re
import secrets
import time

from relayrouter.api import sqlite_schema

from .normalize import VALUE_TYPES, format_timestamp

DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
TENANT = re.compile(r"[a-z0-9_]{1,64}")  # a realm name usable in topics and MQTT
MAX_LABEL = 128
ATTR_LABEL = re.compile(r'[^"\\\x00-\x1f]{1,%d}' % MAX_LABEL)
PAGE_MAX = 256  # dojot's retriever default and maximum page size

SCHEMA_VERSION = 1  # SQLite: PRAGMA user_version (relayrouter.api.sqlite_schema); 0.1.0 recorded none
SCHEMA = {
    "sqlite": [
        """CREATE TABLE IF NOT EXISTS devices (
            tenant TEXT NOT NULL, id TEXT NOT NULL, label TEXT NOT NULL, attrs TEXT NOT NULL,
            generation INTEGER NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
            PRIMARY KEY (tenant, id))""",
        """CREATE TABLE IF NOT EXISTS device_data (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, device TEXT NOT NULL,
            ts INTEGER NOT NULL, attrs TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS device_data_by_time ON device_data (tenant, device, ts)",
    ],
    "postgresql": [
        """CREATE TABLE IF NOT EXISTS devices (
            tenant TEXT NOT NULL, id TEXT NOT NULL, label TEXT NOT NULL, attrs TEXT NOT NULL,
            generation INTEGER NOT NULL, created DOUBLE PRECISION NOT NULL,
            updated DOUBLE PRECISION NOT NULL, PRIMARY KEY (tenant, id))""",
        """CREATE TABLE IF NOT EXISTS device_data (
            seq BIGSERIAL PRIMARY KEY, tenant TEXT NOT NULL, device TEXT NOT NULL,
            ts BIGINT NOT NULL, attrs TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS device_data_by_time ON device_data (tenant, device, ts)",
    ],
}


# The attributes' JSON as stored (what json.dumps(..., separators=(",", ":")) gives, without a new encoder per call).
_compact = json.JSONEncoder(separators=(",", ":")).encode
# SQLite: a batch of [tenant, device, ts, attrs as JSON text] rows in one statement, in the batch's order.
INSERT_BATCH = ("INSERT INTO device_data (tenant, device, ts, attrs) "
                "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), "
                "json_extract(value, '$[3]') FROM json_each(?) ORDER BY key")


class RegistryError(ValueError):
    """A request the registry refuses; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def bad(message: str) -> RegistryError:
    return RegistryError(400, "invalid_request", message)


# ---------------------------------------------------------------- connection

SYNCHRONOUS = ("full", "normal")


def connect(dsn: str, synchronous: str = "full"):
    """(DB-API connection, dialect) for a file path / ``sqlite:`` URL or a ``postgresql://`` DSN.

    SQLite runs in WAL mode; ``synchronous`` full fsyncs every commit (survives
    power loss), normal does not (a commit survives the process being killed,
    not the machine losing power)."""
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be full or normal, not {synchronous!r}")
    if dsn.startswith(("postgresql://", "postgres://")):
        import psycopg
        return psycopg.connect(dsn, autocommit=False), "postgresql"
    import sqlite3
    path = dsn[len("sqlite:"):] if dsn.startswith("sqlite:") else dsn
    db = sqlite3.connect(path, isolation_level="DEFERRED", check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    return db, "sqlite"


class Tables:
    """The registry's and the data store's statements over one connection."""

    def __init__(self, db, dialect: str) -> None:
        self.db = db
        self.dialect = dialect
        for statement in SCHEMA[dialect]:
            self._run(statement)
        self.db.commit()
        if dialect == "sqlite":
            sqlite_schema.upgrade(self.db, "the IoT agent's store", SCHEMA_VERSION)

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.dialect == "postgresql" else statement

    def _run(self, statement: str, params=()):
        cursor = self.db.cursor()
        cursor.execute(self._sql(statement), params)
        return cursor

    def begin(self) -> None:
        """An explicit transaction (SQLite), so that savepoints inside it never commit alone."""
        if self.dialect == "sqlite" and not self.db.in_transaction:
            self.db.execute("BEGIN")

    def commit(self) -> None:
        self.db.commit()

    def rollback(self) -> None:
        self.db.rollback()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------- devices

    def create_device(self, tenant: str, spec: dict, now: float | None = None) -> dict:
        check_tenant(tenant)
        spec = check_spec(spec, creating=True)
        device_id = spec.get("id") or secrets.token_hex(3)
        if self._row(tenant, device_id) is not None:
            raise RegistryError(409, "device_exists", f"device {device_id!r} already exists in tenant {tenant!r}")
        now = time.time() if now is None else now
        self._run("INSERT INTO devices (tenant, id, label, attrs, generation, created, updated) "
                  "VALUES (?, ?, ?, ?, 1, ?, ?)",
                  (tenant, device_id, spec["label"], json.dumps(spec.get("attrs", [])), now, now))
        return self.get_device(tenant, device_id)

    def update_device(self, tenant: str, device_id: str, spec: dict, now: float | None = None) -> dict:
        current = self.get_device(tenant, device_id)
        spec = check_spec(spec, creating=False)
        if "id" in spec and spec["id"] != device_id:
            raise bad(f"the device id cannot change ({device_id!r} -> {spec['id']!r})")
        label = spec.get("label", current["label"])
        attrs = spec.get("attrs", current["attrs"])
        now = time.time() if now is None else now
        self._run("UPDATE devices SET label = ?, attrs = ?, updated = ? WHERE tenant = ? AND id = ?",
                  (label, json.dumps(attrs), now, tenant, device_id))
        return self.get_device(tenant, device_id)

    def rotate_credential(self, tenant: str, device_id: str) -> dict:
        self.get_device(tenant, device_id)
        self._run("UPDATE devices SET generation = generation + 1, updated = ? WHERE tenant = ? AND id = ?",
                  (time.time(), tenant, device_id))
        return self.get_device(tenant, device_id)

    def delete_device(self, tenant: str, device_id: str) -> dict:
        device = self.get_device(tenant, device_id)
        self._run("DELETE FROM devices WHERE tenant = ? AND id = ?", (tenant, device_id))
        return device

    def get_device(self, tenant: str, device_id: str) -> dict:
        row = self._row(tenant, device_id)
        if row is None:
            raise RegistryError(404, "no_such_device", f"no device {device_id!r} in tenant {tenant!r}")
        return _device(row)

    def find_device(self, tenant: str, device_id: str) -> dict | None:
        row = self._row(tenant, device_id)
        return None if row is None else _device(row)

    def list_devices(self, tenant: str | None = None) -> list[dict]:
        if tenant is None:
            rows = self._run("SELECT tenant, id, label, attrs, generation, created, updated FROM devices "
                             "ORDER BY tenant, id").fetchall()
        else:
            rows = self._run("SELECT tenant, id, label, attrs, generation, created, updated FROM devices "
                             "WHERE tenant = ? ORDER BY id", (tenant,)).fetchall()
        return [_device(row) for row in rows]

    def _row(self, tenant: str, device_id: str):
        return self._run("SELECT tenant, id, label, attrs, generation, created, updated FROM devices "
                         "WHERE tenant = ? AND id = ?", (tenant, device_id)).fetchone()

    # ---------------------------------------------------------------- data

    def insert_data(self, messages: list[dict]) -> None:
        self.insert_rows(data_rows(messages))

    def insert_rows(self, rows: list[tuple]) -> None:
        """Rows of :func:`data_rows`.  On SQLite the batch is one statement
        over one JSON document (``json_each``): the store thread holds the
        GIL only to encode the rows in one C call, and SQLite inserts them
        with the GIL released.  With a statement per row (``executemany``) it
        gave the GIL back and waited for it again at every row, behind the
        reactor thread, which then waited for the commit (see the IoT agent's
        reference, benchmark)."""
        if self.dialect == "sqlite":
            self._run(INSERT_BATCH, (_compact(rows),))
            return
        cursor = self.db.cursor()
        cursor.executemany(self._sql("INSERT INTO device_data (tenant, device, ts, attrs) VALUES (?, ?, ?, ?)"),
                           rows)

    def query_data(self, tenant: str, device: str, date_from: int | None = None, date_to: int | None = None,
                   order: str = "desc", limit: int = PAGE_MAX, offset: int = 0,
                   attr: str | None = None) -> tuple[list[tuple[int, dict]], int]:
        """([(ts, attrs)], total matching) newest first unless ``order`` is 'asc'."""
        where = ["tenant = ?", "device = ?"]
        params: list = [tenant, device]
        if date_from is not None:
            where.append("ts >= ?")
            params.append(date_from)
        if date_to is not None:
            where.append("ts < ?")  # dojot's (InfluxDB's) range ends before dateTo
            params.append(date_to)
        if attr is not None:
            where.append(_has_attr(self.dialect))
            params.append(attr)
        clause = " AND ".join(where)
        direction = "ASC" if order == "asc" else "DESC"
        total = self._run(f"SELECT COUNT(*) FROM device_data WHERE {clause}", params).fetchone()[0]
        rows = self._run(f"SELECT ts, attrs FROM device_data WHERE {clause} ORDER BY ts {direction}, seq {direction} "
                         "LIMIT ? OFFSET ?", params + [limit, offset]).fetchall()
        return [(ts, json.loads(attrs)) for ts, attrs in rows], total

    def count_data(self, tenant: str | None = None) -> int:
        if tenant is None:
            return self._run("SELECT COUNT(*) FROM device_data").fetchone()[0]
        return self._run("SELECT COUNT(*) FROM device_data WHERE tenant = ?", (tenant,)).fetchone()[0]

    def drop_tenant_data(self, tenant: str) -> None:
        self._run("DELETE FROM device_data WHERE tenant = ?", (tenant,))


def data_rows(messages: list[dict]) -> list[tuple]:
    """(tenant, device, ts, attrs as JSON) of each stored message: built by
    the caller's thread (the reactor's, where the messages are), so the
    store thread does no work per message while holding the GIL."""
    return [(msg["metadata"]["tenant"], msg["metadata"]["deviceid"], msg["metadata"]["timestamp"],
             _compact(msg["attrs"])) for msg in messages]


def _has_attr(dialect: str) -> str:
    if dialect == "postgresql":
        return "(attrs::jsonb -> ?) IS NOT NULL"
    return "json_type(attrs, '$.\"' || ? || '\"') IS NOT NULL"


def _device(row) -> dict:
    tenant, device_id, label, attrs, generation, created, updated = row
    return {"tenant": tenant, "id": device_id, "label": label, "attrs": json.loads(attrs),
            "generation": generation, "created": format_timestamp(int(created * 1000)),
            "updated": format_timestamp(int(updated * 1000))}


# ---------------------------------------------------------------- validation

def check_tenant(tenant) -> str:
    if not isinstance(tenant, str) or not TENANT.fullmatch(tenant):
        raise bad(f"tenant {tenant!r} must be 1-64 of a-z, 0-9 and '_'")
    return tenant


def check_spec(spec, creating: bool) -> dict:
    if not isinstance(spec, dict):
        raise bad(f"a device is a JSON object, not {type(spec).__name__}")
    unknown = sorted(set(spec) - {"id", "label", "attrs"})
    if unknown:
        raise bad(f"unknown device key {unknown[0]!r} (a device has id, label, attrs)")
    out = {}
    if "id" in spec:
        if not isinstance(spec["id"], str) or not DEVICE_ID.fullmatch(spec["id"]):
            raise bad(f"device id {spec['id']!r} must be 1-64 of A-Z, a-z, 0-9, '_' and '-'")
        out["id"] = spec["id"]
    if "label" in spec or creating:
        label = spec.get("label")
        if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL:
            raise bad(f"'label' must be non-empty text of at most {MAX_LABEL} characters")
        out["label"] = label
    if "attrs" in spec:
        out["attrs"] = check_attrs(spec["attrs"])
    return out


def check_attrs(attrs) -> list[dict]:
    if not isinstance(attrs, list):
        raise bad("'attrs' must be a list of {\"label\": ..., \"type\": ...}")
    seen = set()
    out = []
    for index, attr in enumerate(attrs):
        where = f"attrs[{index}]"
        if not isinstance(attr, dict) or set(attr) != {"label", "type"}:
            raise bad(f"{where} must be {{\"label\": ..., \"type\": ...}} and nothing else")
        label, kind = attr["label"], attr["type"]
        if not isinstance(label, str) or not ATTR_LABEL.fullmatch(label):
            raise bad(f"{where}.label must be 1-{MAX_LABEL} characters without '\"', '\\' or control characters")
        if kind not in VALUE_TYPES:
            raise bad(f"{where}.type {kind!r} is not one of {', '.join(VALUE_TYPES)}")
        if label in seen:
            raise bad(f"{where}.label {label!r} is defined twice")
        seen.add(label)
        out.append({"label": label, "type": kind})
    return out


def definitions(device: dict) -> dict:
    """{label: type} of a device's attributes (empty: untyped)."""
    return {attr["label"]: attr["type"] for attr in device["attrs"]}
