"""Mailboxes and event history reachable from any node: two router processes
on one nats-server and one PostgreSQL database of the test's own, Autobahn
senders, owners and readers, a node killed with -9."""

import os
import time
import uuid

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer, threads

from ..integration.test_mailboxes import SECRETS, Taker, as_user
from ..support import eventually
from .harness import PATIENCE, NatsServer, Node, sleep, stop_all
from .test_cluster_resume import metric

PG_SERVER = os.environ.get("RELAYROUTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432")

REALM = """
[[realms]]
name = "realm1"
[realms.auth.ticket]
[[realms.auth.ticket.principals]]
authid = "sender"
role = "user"
secret_env = "RR_TEST_SENDER"
[[realms.auth.ticket.principals]]
authid = "agentb"
role = "user"
secret_env = "RR_TEST_AGENTB"
[[realms.mailboxes]]
uri = "mailbox.{authid}"
http = "off"
[[realms.history]]
uri = "news."
match = "prefix"
limit = 1000
"""


@pytest.fixture
def pg_dsn():
    import psycopg

    name = f"relayrouter_cl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_SERVER}/{name}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def cluster(tmp_path, pg_dsn):
    """Nodes a and b on one NATS server, both keeping their store in one PostgreSQL database."""
    nats = NatsServer(tmp_path)
    nats.start()
    nodes = {}
    try:
        for name in "ab":
            nodes[name] = Node(tmp_path, name, nats.url, realms=REALM, env=SECRETS,
                               extra=f'\n[storage]\ndsn = "{pg_dsn}"\n')
            nodes[name].start()
        yield nats, nodes, pg_dsn
    finally:
        stop_all(nats, nodes)


def rows(dsn: str, table: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@defer.inlineCallbacks
def until_rows(dsn: str, table: str, count: int):
    """Until ``table`` holds ``count`` rows (history is written after the publisher's acknowledgement)."""
    deadline = time.monotonic() + PATIENCE
    while (yield threads.deferToThread(rows, dsn, table)) != count:
        assert time.monotonic() < deadline, f"{table} never held {count} rows"
        yield sleep(0.05)


@defer.inlineCallbacks
def put(sender, count, tag):
    ids = []
    for i in range(count):
        published = yield sender.publish("mailbox.agentb", tag, i, options=PublishOptions(acknowledge=True))
        ids.append(published.id)
    return ids


def delivered(taker):
    return [(m["id"], m["attempt"]) for m in taker.received]


@pytest_twisted.inlineCallbacks
def test_an_owner_finds_its_mailbox_on_any_node_nothing_lost_or_doubled_across_kill_9(cluster):
    nats, nodes, dsn = cluster
    a, b = nodes["a"], nodes["b"]
    sender_a, sender_b = (yield as_user(a, "sender")), (yield as_user(b, "sender", "msgpack"))
    owner_b = yield as_user(b, "agentb", "cbor")

    # Puts on both nodes at once reach a take on one of them, each once, in ID (commit) order.
    taker = Taker(owner_b, ack=True)
    ids = yield defer.gatherResults([put(sender_a, 30, "a"), put(sender_b, 30, "b")])
    ids = ids[0] + ids[1]
    yield taker.until(60, PATIENCE)
    got = [i for i, _ in delivered(taker)]
    assert sorted(got) == sorted(ids) and len(set(got)) == 60
    assert got == sorted(got)
    yield eventually(lambda: len(taker.acked_ids) == 60, PATIENCE)
    assert (yield threads.deferToThread(rows, dsn, "mailbox_messages")) == 0

    # The owner moves to node a (its take there ends the one on b); a sender on b reaches it.
    owner_a = yield as_user(a, "agentb")
    on_a = Taker(owner_a)
    yield taker.call  # ended: taken over from the other node
    moved = yield put(sender_b, 10, "to-a")
    yield on_a.until(10, PATIENCE)
    assert delivered(on_a) == [(i, 1) for i in moved]
    acked = yield owner_a.call("relayrouter.mailbox.ack", "mailbox.agentb", upto=moved[3])
    assert acked == 4

    # Node a dies with six messages delivered and unacknowledged; the owner goes back to b.
    a.kill9()
    yield threads.deferToThread(a.proc.wait, 20)
    more = yield put(sender_b, 3, "after")
    again = Taker(owner_b)
    yield again.until(9, PATIENCE)
    assert delivered(again) == [(i, 2) for i in moved[4:]] + [(i, 1) for i in more]
    assert [m["args"] for m in again.received[:2]] == [["to-a", 4], ["to-a", 5]]

    # Node a comes back: it holds what the database holds, no acked message among it.
    yield threads.deferToThread(a.start)
    owner_a = yield as_user(a, "agentb")
    back = Taker(owner_a)
    yield back.until(9, PATIENCE)
    assert [i for i, _ in delivered(back)] == moved[4:] + more
    yield owner_a.call("relayrouter.mailbox.ack", "mailbox.agentb", upto=more[-1])
    assert (yield threads.deferToThread(rows, dsn, "mailbox_messages")) == 0
    for session in (sender_a, sender_b, owner_b, owner_a):
        session.leave()


@pytest_twisted.inlineCallbacks
def test_a_history_query_on_any_node_answers_with_every_nodes_publishers_events_once(cluster):
    nats, nodes, dsn = cluster
    a, b = nodes["a"], nodes["b"]
    on_a, on_b = (yield as_user(a, "sender")), (yield as_user(b, "agentb"))
    published = []
    for i in range(12):
        session = on_a if i % 2 else on_b
        done = yield session.publish(f"news.{'ab'[i % 2]}", i, options=PublishOptions(acknowledge=True))
        published.append(done.id)
    yield until_rows(dsn, "history", 12)
    answers = []
    for reader in (on_a, on_b):
        page = yield reader.call("relayrouter.history.read", "news.", match="prefix", limit=100)
        events = [(e["publication"], e["args"][0]) for e in page["events"]]
        assert sorted(events, key=lambda e: e[1]) == list(zip(published, range(12)))  # each once
        for node in (0, 1):  # each node's publishers' events in their order (across nodes: as stored)
            assert [i for _, i in events if i % 2 == node] == list(range(node, 12, 2))
        after = yield reader.call("relayrouter.history.read", "news.", match="prefix",
                                  after=events[5][0], limit=100)
        assert [(e["publication"], e["args"][0]) for e in after["events"]] == events[6:]
        answers.append(events)
    assert answers[0] == answers[1]
    on_a.leave()
    on_b.leave()


@pytest_twisted.inlineCallbacks
def test_what_was_put_and_acked_during_a_nats_outage_is_caught_up_on_reconnecting(cluster):
    nats, nodes, dsn = cluster
    a, b = nodes["a"], nodes["b"]
    sender = yield as_user(a, "sender")
    owner = yield as_user(b, "agentb")
    taker = Taker(owner)
    first = yield put(sender, 2, "before")
    yield taker.until(2, PATIENCE)
    marks = {name: len(node.all_output) for name, node in nodes.items()}
    yield threads.deferToThread(nats.stop)
    for name, node in nodes.items():
        yield threads.deferToThread(node.wait_output, f"cluster: node {name} lost NATS", 30, marks[name])
    # Both nodes go on with the database: puts on a are acknowledged, acks on b committed.
    during = yield put(sender, 3, "during")
    assert (yield owner.call("relayrouter.mailbox.ack", "mailbox.agentb", upto=first[1])) == 2
    yield threads.deferToThread(nats.start)
    for name, node in nodes.items():
        yield threads.deferToThread(node.wait_output, f"cluster: node {name} reconnected to NATS", 60, marks[name])
    # b read its mailboxes back: the running take gets what a put meanwhile, in order, once.
    yield taker.until(5, PATIENCE)
    assert delivered(taker) == [(i, 1) for i in first + during]
    # a read them back too: it no longer holds what b acknowledged while the notice could not go.
    admin_view = yield as_user(a, "agentb")
    yield eventually(lambda: len(taker.received) == 5, PATIENCE)
    deadline = time.monotonic() + PATIENCE
    while True:
        stats = yield admin_view.call("relayrouter.mailbox.stats", "mailbox.agentb")
        if stats["depth"] == 3:
            break
        assert time.monotonic() < deadline, f"node a still holds {stats}"
        yield sleep(0.1)
    assert (yield threads.deferToThread(rows, dsn, "mailbox_messages")) == 3
    # Counted: the notices that could not go (three puts on a, one ack on b), and what was heard.
    assert metric(a, "relayrouter_cluster_mailbox_notices_total", direction="unsent") == 3
    assert metric(b, "relayrouter_cluster_mailbox_notices_total", direction="unsent") == 1
    assert metric(b, "relayrouter_cluster_mailbox_notices_total", direction="in") >= 2
    assert metric(a, "relayrouter_cluster_mailbox_notices_total", direction="out") >= 2
    assert metric(b, "relayrouter_cluster_mailbox_reads_total") >= 2  # the take, the reconnection
    for session in (sender, owner, admin_view):
        session.leave()
