"""Mailboxes of several nodes over one shared store (core/mailbox_sync.py):
each node a router of its own, the store in memory (numbering each mailbox's
messages as a shared database does), the notices between the nodes carried by
the test, in the order (or lost) as it chooses."""

from autobahn.wamp import message as m

from relayrouter.core.mailbox import MailboxRule, Mailboxes
from relayrouter.core.mailbox_sync import TAKEN_OVER, SharedMailboxes
from relayrouter.core.procedures import AdminPolicy
from relayrouter.store.memory import MemoryStore
from relayrouter.testing import FakeClock, make_router

from .test_mailbox import call, join_as, progress_ids, put


class Bus:
    """Notices sent by the nodes, held until the test delivers (or loses) them."""

    def __init__(self) -> None:
        self.nodes: dict = {}
        self.sent: list = []

    def node(self, name):
        bus = self

        class Peers:
            def put(self, realm, message):
                bus.sent.append((name, "put", message))

            def gone(self, realm, uri, ids):
                bus.sent.append((name, "gone", (uri, list(ids))))

            def took(self, realm, uri):
                bus.sent.append((name, "take", uri))

        return Peers()

    def deliver(self, order=None) -> None:
        sent, self.sent = self.sent, []
        for index in (order if order is not None else range(len(sent))):
            origin, kind, what = sent[index]
            for name, shared in self.nodes.items():
                if name == origin:
                    continue
                if kind == "put":
                    message = what
                    copy = type(message)(message.realm, message.mailbox, message.id, message.timestamp,
                                         message.args, message.kwargs, message.size, message.attempts,
                                         message.sender)
                    shared.heard_put(copy, True)
                elif kind == "gone":
                    shared.heard_gone(*what)
                else:
                    shared.heard_take(what)

    def lose(self) -> None:
        self.sent = []


def cluster(names="ab", **rule):
    store = MemoryStore(hold=True)
    store.shared = True
    bus = Bus()
    nodes = {}
    for name in names:
        router = make_router("realm1", clock=FakeClock(1_700_000_000.0))
        realm = router.realms["realm1"]
        mailboxes = Mailboxes(realm, (MailboxRule("mailbox.{authid}", **rule),), store, None,
                              AdminPolicy(frozenset({"admin"})))
        realm.broker.mailboxes = mailboxes
        bus.nodes[name] = SharedMailboxes(mailboxes, bus.node(name))
        nodes[name] = (router, mailboxes)
    for shared in bus.nodes.values():  # as each node does on connecting to NATS
        shared.resync()
    store.flush()
    return store, bus, nodes


def published_ids(peer):
    return [x.publication for x in peer.take() if isinstance(x, m.Published)]


def take(owner, max_inflight=32):
    return call(owner, "relayrouter.mailbox.take", ["mailbox.agentb"], {"max_inflight": max_inflight},
                receive_progress=True)


def test_an_owner_on_another_node_gets_every_message_once_in_commit_order():
    store, bus, nodes = cluster()
    sender_a, sender_b = join_as(nodes["a"][0], "alice"), join_as(nodes["b"][0], "bob")
    put(sender_a, "mailbox.agentb", "a0")
    put(sender_b, "mailbox.agentb", "b0")
    put(sender_a, "mailbox.agentb", "a1")
    store.flush()
    ids = published_ids(sender_a) + published_ids(sender_b)
    assert sorted(ids) == [1, 2, 3]  # numbered in the mailbox at commit, whichever node put them
    bus.lose()  # every notice lost: the take reads the mailbox back
    owner = join_as(nodes["b"][0], "agentb")
    take(owner)
    assert progress_ids(owner.take()) == []  # nothing before it was read back
    store.flush()
    delivered = owner.take()
    assert progress_ids(delivered) == [1, 2, 3]
    assert [r.args[0]["args"] for r in delivered] == [["a0"], ["b0"], ["a1"]]


def test_notices_that_overtake_each_other_are_delivered_in_id_order():
    store, bus, nodes = cluster("abc")
    owner = join_as(nodes["c"][0], "agentb")
    take(owner)
    store.flush()
    sender_a, sender_b = join_as(nodes["a"][0], "alice"), join_as(nodes["b"][0], "bob")
    put(sender_a, "mailbox.agentb", "first")
    put(sender_b, "mailbox.agentb", "second")
    store.flush()
    bus.sent = [s for s in bus.sent if s[1] == "put"]
    bus.deliver(order=[1])  # b's notice (ID 2) first: held back, the mailbox read
    assert progress_ids(owner.take()) == []
    bus.deliver(order=[])
    store.flush()
    assert progress_ids(owner.take()) == [1, 2]


def test_a_gap_filled_by_a_notice_before_the_read_back_is_in_order_and_once():
    store, bus, nodes = cluster("abc")
    senders = [join_as(nodes[n][0], n + "-sender") for n in "ab"]
    put(senders[0], "mailbox.agentb", "before")
    store.flush()
    owner = join_as(nodes["c"][0], "agentb")
    take(owner)
    store.flush()
    assert progress_ids(owner.take()) == [1]  # read back: node c knows the mailbox up to ID 1
    bus.lose()
    put(senders[0], "mailbox.agentb", 0)
    put(senders[1], "mailbox.agentb", 1)
    store.flush()
    assert len(bus.sent) == 2
    bus.deliver(order=[1, 0])
    assert progress_ids(owner.take()) == [2, 3]  # the first notice filled the gap the second left
    store.flush()  # the read back the gap asked for finds nothing new
    assert progress_ids(owner.take()) == []


def test_acked_on_one_node_is_never_delivered_again_by_another():
    store, bus, nodes = cluster()
    sender = join_as(nodes["a"][0], "alice")
    for i in range(3):
        put(sender, "mailbox.agentb", i)
    store.flush()
    bus.deliver()
    owner_b = join_as(nodes["b"][0], "agentb")
    take(owner_b)
    store.flush()
    assert progress_ids(owner_b.take()) == [1, 2, 3]
    call(owner_b, "relayrouter.mailbox.ack", ["mailbox.agentb"], {"upto": 2})
    store.flush()
    bus.lose()  # the "gone" notice lost too: the next take reads the mailbox back
    owner_a = join_as(nodes["a"][0], "agentb")
    take(owner_a)
    store.flush()
    delivered = [r.args[0] for r in owner_a.take() if isinstance(r, m.Result) and r.progress]
    assert [(d["id"], d["attempt"]) for d in delivered] == [(3, 2)]


def test_a_take_on_another_node_ends_this_one_and_its_messages_come_again():
    store, bus, nodes = cluster()
    sender = join_as(nodes["a"][0], "alice")
    put(sender, "mailbox.agentb", "x")
    store.flush()
    owner_a = join_as(nodes["a"][0], "agentb")
    first = take(owner_a)
    store.flush()
    assert progress_ids(owner_a.take()) == [1]
    bus.sent = []
    owner_b = join_as(nodes["b"][0], "agentb")
    take(owner_b)
    bus.deliver()
    ended = [x for x in owner_a.take() if isinstance(x, m.Error)]
    assert [(e.request, e.error) for e in ended] == [(first, TAKEN_OVER)]
    store.flush()
    assert [(r.args[0]["id"], r.args[0]["attempt"]) for r in owner_b.take()
            if isinstance(r, m.Result) and r.progress] == [(1, 2)]


def test_a_senders_share_counts_what_it_put_on_other_nodes():
    store, bus, nodes = cluster(max_messages_per_sender=2)
    sender_a = join_as(nodes["a"][0], "alice")
    put(sender_a, "mailbox.agentb", 0)
    put(sender_a, "mailbox.agentb", 1)
    store.flush()
    bus.deliver()
    owner = join_as(nodes["b"][0], "agentb")
    take(owner)
    store.flush()
    owner.take()
    sender_b = join_as(nodes["b"][0], "alice")  # the same sender, now on the other node
    put(sender_b, "mailbox.agentb", 2)
    refused = [x for x in sender_b.take() if isinstance(x, m.Error)]
    assert [e.error for e in refused] == ["relayrouter.error.mailbox_sender_quota"]


def test_the_counters_add_up_every_nodes_and_each_node_reads_the_total_back():
    store, bus, nodes = cluster(max_messages=1, overflow="drop-oldest", max_messages_per_sender=1)
    for name, count in (("a", 3), ("b", 2)):  # each put drops the one before it (drop-oldest)
        sender = join_as(nodes[name][0], f"sender-{name}")
        for i in range(count):
            put(sender, "mailbox.agentb", i)
            store.flush()
            bus.deliver()
    own = {name: nodes[name][1].mailbox("mailbox.agentb").drops for name in "ab"}
    assert own["a"] == 2 and own["b"] >= 1
    assert store.counters[("realm1", "mailbox.agentb")]["drops"] == own["a"] + own["b"]  # added up
    owner = join_as(nodes["a"][0], "agentb")
    take(owner)  # reads the mailbox back, its counters with it
    store.flush()
    stats = nodes["a"][1].mailbox("mailbox.agentb").stats()
    assert stats["drops"] == own["a"] + own["b"] and stats["depth"] == 1
