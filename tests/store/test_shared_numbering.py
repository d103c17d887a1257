"""A store shared by the nodes of a cluster (``shared``): each mailbox's
messages numbered at commit, one after another whichever node put them, and
read back with each mailbox's last number -- against every backend, and on
PostgreSQL by two stores (two nodes) writing at once from their own threads."""

import threading

from relayrouter.core.records import MailboxMessage

from .test_durable_store import message


def put(backend, store, mailbox, realm="r1"):
    return backend.result(store, lambda done: store.mailbox_put(message(mailbox, 0, realm=realm), done))


def read(backend, store, realm="r1", mailbox=None):
    found = backend.result(store, lambda done: store.mailbox_read(realm, mailbox, done))
    return found.messages, found.last, found.counters


def test_each_mailbox_is_numbered_on_from_the_stores_mark_and_read_back(backend):
    store = backend.open()
    store.mailbox_reserve(50)
    backend.sync(store)
    store.shared = True
    assert [put(backend, store, "mb.a") for _ in range(3)] == [50, 51, 52]
    assert put(backend, store, "mb.b") == 50  # numbered per mailbox
    assert put(backend, store, "mb.a", realm="r2") == 50
    backend.result(store, lambda done: store.mailbox_delete("r1", "mb.a", [51, 52], done))
    messages, last, counters = read(backend, store)
    assert [(m.mailbox, m.id) for m in messages] == [("mb.a", 50), ("mb.b", 50)]
    assert last == {"mb.a": 52, "mb.b": 50}  # what was acked is never numbered again
    messages, last, counters = read(backend, store, mailbox="mb.a")
    assert [m.id for m in messages] == [50] and last == {"mb.a": 52} and counters == {}
    assert put(backend, store, "mb.a") == 53
    first = backend.result(store, lambda done: store.mailbox_read("r1", "mb.new", done)).first
    assert first == 50 and put(backend, store, "mb.new") == first  # where a new mailbox starts


def test_a_node_back_on_its_own_numbers_above_what_the_cluster_handed_out(sql_backend):
    store = sql_backend.open()
    store.shared = True
    ids = [put(sql_backend, store, "mb.a") for _ in range(3)]
    sql_backend.result(store, lambda done: store.mailbox_delete("r1", "mb.a", ids, done))
    sql_backend.close(store)
    assert sql_backend.open().mailbox_load().next_id > max(ids)


def test_two_nodes_putting_at_once_get_every_number_once_and_none_skipped(request, tmp_path):
    from .conftest import Backend

    backend = Backend("postgresql", tmp_path, request)
    nodes = [backend.open(), backend.open()]
    for store in nodes:
        store.shared = True
    got = [[], []]

    def node(index):
        store = nodes[index]
        done = threading.Event()
        left = [200]

        def stored(outcome):
            got[index].append(outcome)
            left[0] -= 1
            if not left[0]:
                done.set()

        for i in range(200):
            store.mailbox_put(MailboxMessage("r1", "mb.hot", 0, 1000.0, [index, i], {}, 2), stored)
        assert done.wait(60)

    threads = [threading.Thread(target=node, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in nodes:
        backend.close(store)
    assert all(isinstance(i, int) for i in got[0] + got[1])
    assert got[0] == sorted(got[0]) and got[1] == sorted(got[1])  # each node's in its order
    numbers = sorted(got[0] + got[1])
    assert numbers == list(range(numbers[0], numbers[0] + 400))
    store = backend.open()
    messages, last, _ = read(backend, store)
    by_id = {m.id: m.args for m in messages}
    assert last == {"mb.hot": numbers[-1]} and len(by_id) == 400
    # the ID order is each node's put order
    for index in (0, 1):
        assert [by_id[i][1] for i in sorted(by_id) if by_id[i][0] == index] == list(range(200))
    backend.close(store)


def test_shared_counters_are_each_nodes_increments_added_up(backend):
    store = backend.open()
    store.shared = True
    store.mailbox_counters("r1", "mb.a", {"redeliveries": 1, "drops": 0, "expired": 0})
    store.mailbox_counters("r1", "mb.a", {"redeliveries": 2, "drops": 1, "expired": 0})
    backend.sync(store)
    store.mailbox_counters("r1", "mb.a", {"redeliveries": 0, "drops": 0, "expired": 5})
    _, _, counters = read(backend, store)
    assert counters == {"mb.a": {"redeliveries": 3, "drops": 1, "expired": 5}}
