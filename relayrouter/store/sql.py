"""The store on a SQL database: SQLite (embedded default) or PostgreSQL.

Both share every query; a :class:`Dialect` supplies the connection, the
placeholder style and the DDL of each schema version.  All work runs on the
database's :class:`~relayrouter.store.writer.Writer` thread, in group
commits.  Payloads (args, kwargs, details) are kept as one CBOR blob per
row: CBOR keeps bytes as bytes and integers of any size, as WAMP needs.

Schema versions
---------------
``relayrouter_schema.version`` says which migrations a database has had.
At start every missing one is applied in order, each in its transaction; a
database newer than this code is refused (never downgraded).

1. ``history``: kept publications, in storage order (``seq`` never reused).
2. ``mailbox_messages`` and ``counters`` (the mailbox message-ID mark).
3. ``mailbox_counters``: each mailbox's redeliveries, drops and expired.
4. ``mailbox_numbers``: the last message ID of each mailbox, where nodes of a
   cluster share the database (:attr:`SqlStore.shared`).

Shared by the nodes of a cluster (PostgreSQL), the database numbers each
mailbox's messages itself, in the put's transaction: the row of
``mailbox_numbers`` stays locked until that commit, so a mailbox's message
IDs follow one another (no gap, none reused) in the order their puts
committed, whichever node made them (core/mailbox_sync.py relies on it).
"""

from typing import Callable

import cbor2

from ..core.matching import EXACT
from ..core.records import (COUNTERS, HistoryPage, HistoryQuery, MailboxMessage, MailboxRead, MailboxState,
                            StoredEvent, StoreError, UnknownPublication, wanted)
from .writer import Writer

SCHEMA_VERSION = 4
_READ_CHUNK = 512


class Dialect:
    name = "sql"
    placeholder = "?"

    def connect(self):
        raise NotImplementedError

    def migrations(self) -> dict[int, list[str]]:
        raise NotImplementedError

    def prepare(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def describe(self) -> str:
        return self.name

    def lock_schema(self, cursor) -> None:
        """Held while the schema is checked and upgraded (nodes sharing the database start together)."""

    def unlock_schema(self, cursor) -> None:
        pass


def _encode(*parts) -> bytes:
    return cbor2.dumps(list(parts))


def _decode(blob) -> list:
    return cbor2.loads(bytes(blob))


class SqlStore:
    """:class:`~relayrouter.core.records.Store` over a :class:`Dialect`."""

    def __init__(self, dialect: Dialect, deliver: Callable, max_batch: int = 4096) -> None:
        self.dialect = dialect
        self.writer = Writer(dialect.name, dialect.connect, self._run, deliver, max_batch)
        self._sql: dict[str, str] = {}
        # Nodes of a cluster share this database: it numbers each mailbox's messages at commit.
        self.shared = False

    def describe(self) -> str:
        return self.dialect.describe()

    # ----------------------------------------------------------- life cycle

    def start(self) -> None:
        self.writer.start(self._upgrade)

    def close(self) -> None:
        self.writer.close()

    def after_fork(self) -> None:
        self.writer.after_fork()

    def schema_version(self) -> int:
        return self.writer.call(_version)

    def _upgrade(self, connection) -> None:
        cursor = connection.cursor()
        self.dialect.lock_schema(cursor)
        try:
            self._migrate(connection, cursor)
        finally:
            connection.rollback()  # what failed (nothing, when all went well: each step committed)
            self.dialect.unlock_schema(cursor)
            connection.commit()

    def _migrate(self, connection, cursor) -> None:
        cursor.execute("CREATE TABLE IF NOT EXISTS relayrouter_schema (version INTEGER NOT NULL)")
        connection.commit()
        current = _version(connection)
        if current > SCHEMA_VERSION:
            raise StoreError(f"the database has schema version {current}, newer than this "
                             f"relayrouter knows ({SCHEMA_VERSION}): run a newer relayrouter")
        migrations = self.dialect.migrations()
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in migrations[version]:
                cursor.execute(statement)
            if version == 1:
                cursor.execute("INSERT INTO relayrouter_schema (version) VALUES (1)")
            else:
                cursor.execute(self.q("UPDATE relayrouter_schema SET version = ?"), (version,))
            connection.commit()

    def q(self, sql: str) -> str:
        prepared = self._sql.get(sql)
        if prepared is None:
            prepared = self._sql[sql] = self.dialect.prepare(sql)
        return prepared

    # --------------------------------------------------------------- history

    def history_append(self, event: StoredEvent, keep: int) -> None:
        self.writer.submit("history_append", (event, keep))

    def history_expire(self, realm: str, rule: str, before: float, done=None) -> None:
        self.writer.submit("history_expire", (realm, rule, before), done)

    def history_read(self, query: HistoryQuery, done) -> None:
        self.writer.submit("history_read", query, done)

    # ------------------------------------------------------------- mailboxes

    def mailbox_load(self) -> MailboxState:
        return self.writer.call(self._load_mailboxes)

    def mailbox_reserve(self, upto: int) -> None:
        self.writer.submit("mailbox_reserve", upto)

    def mailbox_read(self, realm: str, mailbox: str | None, done) -> None:
        self.writer.submit("mailbox_read", (realm, mailbox), done)

    def mailbox_put(self, message: MailboxMessage, done) -> None:
        self.writer.submit("mailbox_put", message, done)

    def mailbox_delete(self, realm: str, mailbox: str, ids: list, done=None) -> None:
        self.writer.submit("mailbox_delete", (realm, mailbox, ids), done)

    def mailbox_attempts(self, realm: str, mailbox: str, attempts: list) -> None:
        self.writer.submit("mailbox_attempts", (realm, mailbox, attempts))

    def mailbox_counters(self, realm: str, mailbox: str, counters: dict) -> None:
        self.writer.submit("mailbox_counters", (realm, mailbox, tuple(counters[c] for c in COUNTERS)))

    # ---------------------------------------------------------------- realms

    def realm_purge(self, realm: str, done=None) -> None:
        self.writer.submit("realm_purge", realm, done)

    # ------------------------------------------------------ the writer side

    def _run(self, connection, kind: str, arguments: list) -> list:
        return getattr(self, "_" + kind)(connection.cursor(), arguments)

    def _history_append(self, cursor, arguments: list) -> list:
        rows = [(e.realm, e.rule, e.topic, e.publication, e.timestamp,
                 _encode(e.args, e.kwargs, e.details, e.audience)) for e, _ in arguments]
        cursor.executemany(self.q(
            "INSERT INTO history (realm, rule, topic, publication, timestamp, payload) "
            "VALUES (?, ?, ?, ?, ?, ?)"), rows)
        keeps = {(e.realm, e.topic): keep for e, keep in arguments}
        for (realm, topic), keep in keeps.items():
            cursor.execute(self.q(
                "DELETE FROM history WHERE realm = ? AND topic = ? AND seq <= "
                "(SELECT seq FROM history WHERE realm = ? AND topic = ? "
                "ORDER BY seq DESC LIMIT 1 OFFSET ?)"), (realm, topic, realm, topic, keep))
        return [None] * len(arguments)

    def _history_expire(self, cursor, arguments: list) -> list:
        counts = []
        for realm, rule, before in arguments:
            cursor.execute(self.q("DELETE FROM history WHERE realm = ? AND rule = ? AND timestamp < ?"),
                           (realm, rule, before))
            counts.append(cursor.rowcount)
        return counts

    def _history_read(self, cursor, arguments: list) -> list:
        results = []
        for query in arguments:
            try:
                results.append(self._read_one(cursor, query))
            except UnknownPublication as e:
                results.append(e)
        return results

    def _seq_of(self, cursor, realm: str, publication: int) -> int:
        cursor.execute(self.q("SELECT seq FROM history WHERE realm = ? AND publication = ? "
                              "ORDER BY seq DESC LIMIT 1"), (realm, publication))
        row = cursor.fetchone()
        if row is None:
            raise UnknownPublication(publication)
        return row[0]

    def _read_one(self, cursor, query: HistoryQuery) -> HistoryPage:
        where, params = self._conditions(cursor, query)
        order = "DESC" if query.reverse else "ASC"
        step = "<" if query.reverse else ">"
        target = query.limit + 1
        found: list[StoredEvent] = []
        last = None
        while len(found) < target:
            clauses, values = list(where), list(params)
            if last is not None:
                clauses.append(f"seq {step} ?")
                values.append(last)
            cursor.execute(self.q(
                "SELECT seq, rule, topic, publication, timestamp, payload FROM history WHERE "
                + " AND ".join(clauses) + f" ORDER BY seq {order} LIMIT {_READ_CHUNK}"), values)
            rows = cursor.fetchall()
            for row in rows:
                event = _event(query.realm, row)
                if wanted(query, event):
                    found.append(event)
                    if len(found) == target:
                        break
            if len(rows) < _READ_CHUNK:
                break
            last = rows[-1][0]
        more = len(found) > query.limit
        return HistoryPage(found[:query.limit], more)

    def _conditions(self, cursor, query: HistoryQuery) -> tuple[list, list]:
        where, params = ["realm = ?"], [query.realm]
        topic = query.topic if query.match == EXACT else query.only_topic
        if topic is not None:
            where.append("topic = ?")
            params.append(topic)
        for publication, op in ((query.after, ">"), (query.from_, ">="),
                                (query.before, "<"), (query.until, "<=")):
            if publication is not None:
                where.append(f"seq {op} ?")
                params.append(self._seq_of(cursor, query.realm, publication))
        if query.time_min is not None:
            where.append("timestamp >= ?" if query.time_min_inclusive else "timestamp > ?")
            params.append(query.time_min)
        if query.time_max is not None:
            where.append("timestamp <= ?" if query.time_max_inclusive else "timestamp < ?")
            params.append(query.time_max)
        return where, params

    def _load_mailboxes(self, connection) -> MailboxState:
        cursor = connection.cursor()
        cursor.execute("SELECT realm, mailbox, id, timestamp, attempts, size, payload "
                       "FROM mailbox_messages ORDER BY realm, mailbox, id")
        messages = [_message(row) for row in cursor.fetchall()]
        cursor.execute("SELECT value FROM counters WHERE name = 'mailbox_next_id'")
        row = cursor.fetchone()
        cursor.execute("SELECT max(last) FROM mailbox_numbers")
        numbered = cursor.fetchone()[0]  # the last ID of a mailbox numbered while clustered
        next_id = max([row[0] if row else 1, (numbered or 0) + 1] + [m.id + 1 for m in messages])
        cursor.execute(f"SELECT realm, mailbox, {', '.join(COUNTERS)} FROM mailbox_counters")
        counters = {(realm, mailbox): dict(zip(COUNTERS, values))
                    for realm, mailbox, *values in cursor.fetchall()}
        return MailboxState(messages, next_id, counters)

    def _mailbox_reserve(self, cursor, arguments: list) -> list:
        cursor.execute(self.q("UPDATE counters SET value = ? WHERE name = 'mailbox_next_id' AND value < ?"),
                       (max(arguments), max(arguments)))
        return [None] * len(arguments)

    def _mailbox_read(self, cursor, arguments: list) -> list:
        results = []
        for realm, mailbox in arguments:
            where, params = ("realm = ? AND mailbox = ?", (realm, mailbox)) if mailbox is not None \
                else ("realm = ?", (realm,))
            # The last numbers first: on PostgreSQL each statement sees what was committed when it
            # began, so every message numbered up to them is committed before the messages are read
            # (read the other way, one committed between the two would seem gone).
            cursor.execute(self.q(f"SELECT mailbox, last FROM mailbox_numbers WHERE {where}"), params)
            last = dict(cursor.fetchall())
            cursor.execute(self.q(f"SELECT mailbox, {', '.join(COUNTERS)} FROM mailbox_counters WHERE {where}"),
                           params)
            counters = {mailbox: dict(zip(COUNTERS, values)) for mailbox, *values in cursor.fetchall()}
            cursor.execute(self.q("SELECT realm, mailbox, id, timestamp, attempts, size, payload "
                                  f"FROM mailbox_messages WHERE {where} ORDER BY mailbox, id"), params)
            messages = [_message(row) for row in cursor.fetchall()]
            cursor.execute("SELECT value FROM counters WHERE name = 'mailbox_next_id'")
            row = cursor.fetchone()
            results.append(MailboxRead(messages, last, counters, row[0] if row else None))
        return results

    def _mailbox_put(self, cursor, arguments: list) -> list:
        if self.shared:
            return self._numbered_put(cursor, arguments)
        cursor.executemany(self.q(
            "INSERT INTO mailbox_messages (realm, mailbox, id, timestamp, attempts, size, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"),
            [(m.realm, m.mailbox, m.id, m.timestamp, m.attempts, m.size, _encode(m.args, m.kwargs, m.sender))
             for m in arguments])
        return [None] * len(arguments)

    def _numbered_put(self, cursor, arguments: list) -> list:
        """Each message numbered in its mailbox here (see the module doc); the IDs, in order.
        Mailboxes are locked in one order (realm, URI), so two nodes' groups never deadlock."""
        numbers: dict[int, int] = {}
        for index in sorted(range(len(arguments)), key=lambda i: (arguments[i].realm, arguments[i].mailbox)):
            m = arguments[index]
            cursor.execute(self.q(
                "INSERT INTO mailbox_numbers (realm, mailbox, last) VALUES (?, ?, "
                "(SELECT value FROM counters WHERE name = 'mailbox_next_id')) ON CONFLICT (realm, mailbox) "
                "DO UPDATE SET last = mailbox_numbers.last + 1 RETURNING last"), (m.realm, m.mailbox))
            numbers[index] = cursor.fetchone()[0]
        cursor.executemany(self.q(
            "INSERT INTO mailbox_messages (realm, mailbox, id, timestamp, attempts, size, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"),
            [(m.realm, m.mailbox, numbers[i], m.timestamp, m.attempts, m.size, _encode(m.args, m.kwargs, m.sender))
             for i, m in enumerate(arguments)])
        return [numbers[i] for i in range(len(arguments))]

    def _mailbox_delete(self, cursor, arguments: list) -> list:
        rows = [(realm, mailbox, message_id) for realm, mailbox, ids in arguments for message_id in ids]
        cursor.executemany(self.q(
            "DELETE FROM mailbox_messages WHERE realm = ? AND mailbox = ? AND id = ?"), rows)
        return [None] * len(arguments)

    def _mailbox_attempts(self, cursor, arguments: list) -> list:
        rows = [(attempts, realm, mailbox, message_id)
                for realm, mailbox, pairs in arguments for message_id, attempts in pairs]
        cursor.executemany(self.q(
            "UPDATE mailbox_messages SET attempts = ? WHERE realm = ? AND mailbox = ? AND id = ?"), rows)
        return [None] * len(arguments)


    def _mailbox_counters(self, cursor, arguments: list) -> list:
        if self.shared:  # each node's increments, added up
            latest: dict = {}
            for realm, mailbox, values in arguments:
                before = latest.get((realm, mailbox), (0,) * len(COUNTERS))
                latest[(realm, mailbox)] = tuple(a + b for a, b in zip(before, values))
            update = ", ".join(f"{c} = mailbox_counters.{c} + excluded.{c}" for c in COUNTERS)
        else:
            latest = {(realm, mailbox): values for realm, mailbox, values in arguments}  # the last wins
            update = ", ".join(f"{c} = excluded.{c}" for c in COUNTERS)
        columns = ", ".join(COUNTERS)
        cursor.executemany(self.q(
            f"INSERT INTO mailbox_counters (realm, mailbox, {columns}) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (realm, mailbox) DO UPDATE SET " + update),
            [(realm, mailbox, *values) for (realm, mailbox), values in latest.items()])
        return [None] * len(arguments)


    def _realm_purge(self, cursor, arguments: list) -> list:
        for realm in arguments:
            for table in ("history", "mailbox_messages", "mailbox_counters"):
                cursor.execute(self.q(f"DELETE FROM {table} WHERE realm = ?"), (realm,))
        return [None] * len(arguments)


def _version(connection) -> int:
    cursor = connection.cursor()
    cursor.execute("SELECT version FROM relayrouter_schema")
    row = cursor.fetchone()
    return row[0] if row else 0


def _message(row) -> MailboxMessage:
    realm, mailbox, message_id, timestamp, attempts, size, payload = row
    args, kwargs, *sender = _decode(payload)  # rows written before senders were kept have two parts
    return MailboxMessage(realm, mailbox, message_id, timestamp, args, kwargs, size, attempts,
                          sender[0] if sender else None)


def _event(realm: str, row) -> StoredEvent:
    seq, rule, topic, publication, timestamp, payload = row
    args, kwargs, details, audience = _decode(payload)
    return StoredEvent(realm, rule, topic, publication, timestamp, args, kwargs, details,
                       audience, seq)


def history_ddl(seq_column: str, blob: str, real: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS history (seq {seq_column}, realm TEXT NOT NULL, "
        f"rule TEXT NOT NULL, topic TEXT NOT NULL, publication BIGINT NOT NULL, "
        f"timestamp {real} NOT NULL, payload {blob} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS history_by_topic ON history (realm, topic, seq)",
        "CREATE INDEX IF NOT EXISTS history_by_publication ON history (realm, publication)",
        "CREATE INDEX IF NOT EXISTS history_by_rule_time ON history (realm, rule, timestamp)",
        "CREATE INDEX IF NOT EXISTS history_by_realm ON history (realm, seq)",
    ]


def mailbox_counters_ddl() -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS mailbox_counters (realm TEXT NOT NULL, mailbox TEXT NOT NULL, "
        "redeliveries BIGINT NOT NULL, drops BIGINT NOT NULL, expired BIGINT NOT NULL, "
        "PRIMARY KEY (realm, mailbox))",
    ]


def mailbox_numbers_ddl() -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS mailbox_numbers (realm TEXT NOT NULL, mailbox TEXT NOT NULL, "
        "last BIGINT NOT NULL, PRIMARY KEY (realm, mailbox))",
    ]


def mailbox_ddl(blob: str, real: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS mailbox_messages (realm TEXT NOT NULL, mailbox TEXT NOT NULL, "
        f"id BIGINT NOT NULL, timestamp {real} NOT NULL, attempts INTEGER NOT NULL, "
        f"size BIGINT NOT NULL, payload {blob} NOT NULL, PRIMARY KEY (realm, mailbox, id))",
        "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
        "INSERT INTO counters (name, value) VALUES ('mailbox_next_id', 1)",
    ]
