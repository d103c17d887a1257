"""One suite for every backend of the durable store (see conftest.py)."""

import sqlite3
import threading

import pytest

from relayrouter.core.records import (HistoryQuery, MailboxMessage, StoredEvent, StoreError,
                                       UnknownPublication)
from relayrouter.store.sql import SCHEMA_VERSION, SqlStore
from relayrouter.store.sqlite import SqliteDialect


def event(topic, publication, timestamp=1000.0, realm="r1", rule="exact:t", args=None,
          kwargs=None, details=None, audience=None):
    return StoredEvent(realm, rule, topic, publication, timestamp,
                       args if args is not None else [publication], kwargs or {},
                       details or {}, audience)


def read(backend, store, **fields):
    fields.setdefault("realm", "r1")
    outcome = backend.result(store, lambda done: store.history_read(HistoryQuery(**fields), done))
    return outcome


def pubs(page):
    return [e.publication for e in page.events]


# ------------------------------------------------------------------ history


def test_events_come_back_oldest_first_with_their_payload(backend):
    store = backend.open()
    payload = {"blob": b"\x00\xffbinary", "big": 2**70, "text": "é", "list": [1, 2.5, None, True]}
    store.history_append(event("t", 11, args=[b"raw", 2**65], kwargs=payload,
                               details={"publisher": 7, "ppt_scheme": "x"}), keep=100)
    store.history_append(event("t", 12), keep=100)
    store.history_append(event("other", 13), keep=100)
    page = read(backend, store, topic="t")
    assert pubs(page) == [11, 12] and page.more is False
    first = page.events[0]
    assert first.args == [b"raw", 2**65] and first.kwargs == payload
    assert isinstance(first.args[0], bytes) and isinstance(first.kwargs["text"], str)
    assert first.details == {"publisher": 7, "ppt_scheme": "x"}
    assert first.seq < page.events[1].seq


def test_paging_after_the_last_publication_has_no_gaps_or_duplicates(backend):
    store = backend.open()
    published = list(range(1000, 1257))
    for p in published:
        store.history_append(event("t" if p % 3 else "u", p), keep=10_000)
    wanted = [p for p in published if p % 3]
    seen, after = [], None
    while True:
        page = read(backend, store, topic="t", after=after, limit=10)
        seen += pubs(page)
        if not page.more:
            break
        after = page.events[-1].publication
    assert seen == wanted


def test_a_topic_keeps_at_most_its_limit_the_oldest_go_first(backend):
    store = backend.open()
    for p in range(1, 8):
        store.history_append(event("t", p), keep=3)
        store.history_append(event("u", 100 + p), keep=5)
    assert pubs(read(backend, store, topic="t")) == [5, 6, 7]
    assert pubs(read(backend, store, topic="u")) == [103, 104, 105, 106, 107]


def test_expiry_forgets_a_rules_old_events_only(backend):
    store = backend.open()
    store.history_append(event("t", 1, timestamp=100.0), keep=10)
    store.history_append(event("t", 2, timestamp=200.0), keep=10)
    store.history_append(event("v", 3, timestamp=100.0, rule="prefix:v"), keep=10)
    removed = backend.result(store, lambda done: store.history_expire("r1", "exact:t", 150.0, done))
    assert removed == 1
    assert pubs(read(backend, store, topic="t")) == [2]
    assert pubs(read(backend, store, topic="v")) == [3]


def test_patterns_realms_and_one_topic_within_a_pattern(backend):
    store = backend.open()
    for p, topic in enumerate(["a.b", "a.b.c", "a.x.c", "b.b.c", "a.bc"], start=1):
        store.history_append(event(topic, p), keep=10)
    store.history_append(event("a.b", 99, realm="r2"), keep=10)
    assert pubs(read(backend, store, topic="a.b", match="prefix")) == [1, 2, 5]
    assert pubs(read(backend, store, topic="a..c", match="wildcard")) == [2, 3]
    assert pubs(read(backend, store, topic="a.", match="prefix", only_topic="a.x.c")) == [3]
    assert pubs(read(backend, store, topic="a.b", realm="r2")) == [99]


def test_pattern_reads_page_past_many_non_matching_rows(backend):
    store = backend.open()
    for p in range(1, 1400):
        store.history_append(event("noise.x" if p % 100 else "sig.x", p), keep=10_000)
    page = read(backend, store, topic="sig.", match="prefix", limit=5)
    assert pubs(page) == [100, 200, 300, 400, 500] and page.more
    page = read(backend, store, topic="sig.", match="prefix", after=500, limit=50)
    assert pubs(page) == [600, 700, 800, 900, 1000, 1100, 1200, 1300] and not page.more


def test_publication_and_time_bounds_and_reverse(backend):
    store = backend.open()
    for p in range(1, 7):
        store.history_append(event("t", p, timestamp=float(p * 10)), keep=10)
    assert pubs(read(backend, store, topic="t", from_=3)) == [3, 4, 5, 6]
    assert pubs(read(backend, store, topic="t", after=3, before=6)) == [4, 5]
    assert pubs(read(backend, store, topic="t", until=2)) == [1, 2]
    assert pubs(read(backend, store, topic="t", time_min=30.0)) == [3, 4, 5, 6]
    assert pubs(read(backend, store, topic="t", time_min=30.0, time_min_inclusive=False)) == [4, 5, 6]
    assert pubs(read(backend, store, topic="t", time_max=20.0)) == [1, 2]
    assert pubs(read(backend, store, topic="t", time_max=20.0, time_max_inclusive=False)) == [1]
    page = read(backend, store, topic="t", reverse=True, limit=2)
    assert pubs(page) == [6, 5] and page.more
    assert pubs(read(backend, store, topic="t", reverse=True, before=5, limit=10)) == [4, 3, 2, 1]


def test_a_publication_the_history_does_not_hold_is_an_error_naming_it(backend):
    store = backend.open()
    store.history_append(event("t", 1), keep=10)
    outcome = read(backend, store, topic="t", after=424242)
    assert isinstance(outcome, UnknownPublication) and "424242" in str(outcome)


def test_the_audience_of_a_publication_filters_readers(backend):
    store = backend.open()
    store.history_append(event("t", 1, audience={"eligible_authrole": ["admin"]}), keep=10)
    store.history_append(event("t", 2, audience={"exclude_authid": ["eve"]}), keep=10)
    store.history_append(event("t", 3), keep=10)
    assert pubs(read(backend, store, topic="t", reader=("eve", "admin"))) == [1, 3]
    assert pubs(read(backend, store, topic="t", reader=("bob", "user"))) == [2, 3]
    assert pubs(read(backend, store, topic="t")) == [1, 2, 3]


# ----------------------------------------------------------------- mailboxes


def message(mailbox, message_id, size=3, realm="r1", args=None):
    return MailboxMessage(realm, mailbox, message_id, 1000.0 + message_id,
                          args if args is not None else [b"abc"], {"content_type": "x/y"}, size)


def test_mailbox_messages_survive_reopening_in_order_with_attempts(backend):
    store = backend.open()
    store.mailbox_reserve(10)
    for i in (1, 2, 3):
        assert backend.result(store, lambda done, i=i: store.mailbox_put(message("mb.a", i), done)) is None
    store.mailbox_put(message("mb.b", 4, args=[{"k": [1, b"\x01"]}]), None)
    store.mailbox_attempts("r1", "mb.a", [(2, 3)])
    assert backend.result(store, lambda done: store.mailbox_delete("r1", "mb.a", [1], done)) is None
    backend.sync(store)
    backend.close(store)
    state = backend.open().mailbox_load()
    assert [(m.mailbox, m.id, m.attempts) for m in state.messages] == [
        ("mb.a", 2, 3), ("mb.a", 3, 0), ("mb.b", 4, 0)]
    assert state.messages[0].args == [b"abc"] and state.messages[0].kwargs == {"content_type": "x/y"}
    assert state.messages[2].args == [{"k": [1, b"\x01"]}]
    assert state.next_id == 10  # reserved IDs are never handed out twice


def test_a_mailbox_messages_sender_survives_reopening(backend):
    """Per-sender shares of a mailbox are counted again after a restart."""
    store = backend.open()
    store.mailbox_reserve(10)
    store.mailbox_put(MailboxMessage("r1", "mb.a", 1, 1001.0, [b"x"], {}, 1, sender="wamp:mallory"), None)
    store.mailbox_put(message("mb.a", 2), None)
    backend.sync(store)
    backend.close(store)
    state = backend.open().mailbox_load()
    assert [(m.id, m.sender) for m in state.messages] == [(1, "wamp:mallory"), (2, None)]


def test_mailbox_rows_written_before_senders_were_kept_still_load(sql_backend):
    import cbor2

    store = sql_backend.open()
    store.mailbox_reserve(10)
    sql_backend.sync(store)
    store.writer.call(lambda connection: connection.cursor().execute(store.q(
        "INSERT INTO mailbox_messages (realm, mailbox, id, timestamp, attempts, size, payload) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"), ("r1", "mb.a", 1, 1000.0, 0, 3, cbor2.dumps([[b"old"], {}]))))
    sql_backend.close(store)
    [old] = sql_backend.open().mailbox_load().messages
    assert old.args == [b"old"] and old.sender is None


def test_mailbox_counters_survive_reopening_the_last_recorded_wins(backend):
    store = backend.open()
    store.mailbox_counters("r1", "mb.a", {"redeliveries": 1, "drops": 0, "expired": 0})
    store.mailbox_counters("r1", "mb.b", {"redeliveries": 0, "drops": 7, "expired": 2})
    store.mailbox_counters("r1", "mb.a", {"redeliveries": 5, "drops": 1, "expired": 0})
    backend.sync(store)
    backend.close(store)
    store = backend.open()
    store.mailbox_counters("r2", "mb.a", {"redeliveries": 0, "drops": 0, "expired": 9})
    backend.sync(store)
    assert store.mailbox_load().counters == {
        ("r1", "mb.a"): {"redeliveries": 5, "drops": 1, "expired": 0},
        ("r1", "mb.b"): {"redeliveries": 0, "drops": 7, "expired": 2},
        ("r2", "mb.a"): {"redeliveries": 0, "drops": 0, "expired": 9}}


def test_message_ids_above_the_reservation_still_count(backend):
    store = backend.open()
    store.mailbox_put(message("mb.a", 57), None)
    backend.sync(store)
    assert store.mailbox_load().next_id == 58


# ----------------------------------------------------- SQL backends only


def test_group_commit_covers_many_items_with_few_commits(sql_backend):
    store = sql_backend.open()
    for i in range(1, 2001):
        store.mailbox_put(message("mb", i), None)
    sql_backend.sync(store)
    writer = store.writer
    assert writer.items >= 2000 and writer.failures == 0
    assert writer.commits < 2000
    assert len(store.mailbox_load().messages) == 2000


def test_one_bad_item_fails_alone_the_rest_of_its_group_commits(sql_backend):
    store = sql_backend.open()
    outcomes = {}
    store.mailbox_put(message("mb", 1), None)
    sql_backend.sync(store)
    # Queue several at once so they share a group; the duplicate ID fails.
    done = lambda key: (lambda outcome: outcomes.__setitem__(key, outcome))  # noqa: E731
    for key in (2, 1, 3):
        store.mailbox_put(message("mb", key), done(key))
    sql_backend.sync(store)
    assert outcomes[2] is None and outcomes[3] is None
    assert isinstance(outcomes[1], StoreError) and "mailbox_put failed" in str(outcomes[1])
    assert [m.id for m in store.mailbox_load().messages] == [1, 2, 3]


def committed_ids(backend) -> list:
    """Message IDs as a separate connection sees them: only what was committed."""
    if backend.kind == "sqlite":
        connection = sqlite3.connect(backend.tmp_path / "state" / "relayrouter.sqlite3")
        try:
            return [row[0] for row in connection.execute("SELECT id FROM mailbox_messages ORDER BY id")]
        finally:
            connection.close()
    import psycopg

    with psycopg.connect(backend.dsn) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM mailbox_messages ORDER BY id")]


def test_completions_run_only_after_their_group_committed(sql_backend):
    """What PUBLISHED / HTTP 202 / an ack's RESULT promise: when ``done`` runs,
    another connection already sees the outcome -- in a group commit, and in
    the path where a bad item made the group retry each item alone."""
    store = sql_backend.open()
    for i in (1, 2):
        store.mailbox_put(message("mb", i), None)
    sql_backend.sync(store)
    seen = {}

    def check(key, outcome):
        seen[key] = (outcome, committed_ids(sql_backend))

    for with_bad_item in (False, True):
        gate = threading.Event()
        # Hold the writer so everything below is taken as ONE group.
        store.writer.submit("__call__", lambda connection: gate.wait(10), lambda outcome: None)
        base = 10 if with_bad_item else 3
        store.mailbox_put(message("mb", base), lambda o, k=("put", base): check(k, o))
        if with_bad_item:
            store.mailbox_put(message("mb", 2), lambda o: check(("duplicate", 2), o))
        store.mailbox_delete("r1", "mb", [base - 9 if with_bad_item else 1],
                             lambda o, k=("delete", base): check(k, o))
        store.mailbox_put(message("mb", base + 1), lambda o, k=("put", base + 1): check(k, o))
        gate.set()
        sql_backend.sync(store)
    assert seen[("put", 3)] == (None, [2, 3, 4]) and seen[("put", 4)] == (None, [2, 3, 4])
    assert seen[("delete", 3)] == (None, [2, 3, 4])
    outcome, _ = seen[("duplicate", 2)]
    assert isinstance(outcome, StoreError)
    # Retried alone: every item committed before any completion ran.
    for key in (("put", 10), ("put", 11), ("delete", 10)):
        assert seen[key] == (None, [2, 3, 4, 10, 11]), key
    assert store.writer.commits >= 4


def test_a_new_database_gets_the_latest_schema(sql_backend):
    store = sql_backend.open()
    assert store.schema_version() == SCHEMA_VERSION


def test_a_version_1_database_is_upgraded_keeping_its_history(tmp_path):
    path = tmp_path / "old.sqlite3"
    dialect = SqliteDialect(path)
    db = dialect.connect()
    db.execute("CREATE TABLE relayrouter_schema (version INTEGER NOT NULL)")
    for statement in dialect.migrations()[1]:
        db.execute(statement)
    db.execute("INSERT INTO relayrouter_schema (version) VALUES (1)")
    store = SqlStore(dialect, deliver=lambda fn, *a: fn(*a))
    db.commit()
    # One row written the way version 1 did.
    import cbor2

    db.execute("INSERT INTO history (realm, rule, topic, publication, timestamp, payload) "
               "VALUES ('r1', 'exact:t', 't', 5, 1.0, ?)", (cbor2.dumps([[1], {}, {}, None]),))
    db.commit()
    db.close()
    store.start()
    try:
        assert store.schema_version() == SCHEMA_VERSION
        box = []
        store.history_read(HistoryQuery("r1", "t"), box.append)
        store.writer.call(lambda c: None)
        assert [e.publication for e in box[0].events] == [5]
        state = store.mailbox_load()
        assert state.next_id == 1 and state.counters == {}
    finally:
        store.close()


def test_a_database_newer_than_the_code_is_refused(tmp_path):
    path = tmp_path / "new.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE relayrouter_schema (version INTEGER NOT NULL)")
    db.execute("INSERT INTO relayrouter_schema (version) VALUES (99)")
    db.commit()
    db.close()
    store = SqlStore(SqliteDialect(path), deliver=lambda fn, *a: fn(*a))
    with pytest.raises(StoreError, match="schema version 99, newer than"):
        store.start()


def test_sqlite_runs_in_wal_mode_in_the_state_directory(tmp_path):
    dialect = SqliteDialect(tmp_path / "a" / "b" / "relayrouter.sqlite3")
    store = SqlStore(dialect, deliver=lambda fn, *a: fn(*a))
    store.start()
    try:
        mode = store.writer.call(lambda c: c.execute("PRAGMA journal_mode").fetchone()[0])
        assert mode == "wal"
        assert (tmp_path / "a" / "b").stat().st_mode & 0o077 == 0
    finally:
        store.close()


def test_postgresql_dsn_is_never_shown_with_its_password():
    from relayrouter.store.postgres import PostgresDialect

    text = PostgresDialect("postgresql://app:s3cret@db.example:5433/relay").describe()
    assert "s3cret" not in text and text == "PostgreSQL at postgresql://app@db.example:5433/relay"
