"""Mailboxes in the core: the in-memory store (holding completions where the
order matters), in-memory peers, a fake clock."""

from autobahn.wamp import message as m

from relayrouter.core.auth import Accept
from relayrouter.core.mailbox import MailboxRule, Mailboxes, MessageIds
from relayrouter.core.procedures import AdminPolicy
from relayrouter.store.memory import MemoryStore
from relayrouter.core.records import StoreError
from relayrouter.testing import ALL_ROLES, FakeClock, connect, make_router

PUBLISH, CALL, CANCEL = 16, 48, 49


def setup(hold=True, **rule):
    clock = FakeClock(1_700_000_000.0)
    router = make_router("realm1", clock=clock)
    realm = router.realms["realm1"]
    store = MemoryStore(hold=hold)
    rules = (MailboxRule("mailbox.{authid}", **rule), MailboxRule("team.{team}.inbox", http="open"))
    mailboxes = Mailboxes(realm, rules, store, MessageIds(store, 1), AdminPolicy(frozenset({"admin"})))
    realm.broker.mailboxes = mailboxes
    return router, realm, store, clock, mailboxes


def join_as(router, authid, role="user", claims=None):
    realm = router.realms["realm1"]
    realm.authenticators = {"anonymous": _Fixed(authid, role, claims)}
    peer = connect(router)
    peer.receive([1, "realm1", {"roles": ALL_ROLES, "authmethods": ["anonymous"]}])
    assert isinstance(peer.take()[-1], m.Welcome)
    return peer


class _Fixed:
    def __init__(self, authid, role, claims):
        # a named principal (anonymous sessions share one sender's share of a mailbox)
        self.accept = Accept(authid=authid, authrole=role, authmethod="ticket", permissions=claims)

    def hello(self, request):
        return self.accept


_request = [100]


def call(peer, procedure, args=(), kwargs=None, **options):
    _request[0] += 1
    peer.receive([CALL, _request[0], options, procedure, list(args), kwargs or {}])
    return _request[0]


def put(peer, topic, *args, acknowledge=True):
    _request[0] += 1
    peer.receive([PUBLISH, _request[0], {"acknowledge": acknowledge}, topic, list(args), {}])
    return _request[0]


def progress_ids(messages):
    return [r.args[0]["id"] for r in messages if isinstance(r, m.Result) and r.progress]


def test_published_only_once_durable_then_taken_in_order_and_acked():
    router, realm, store, clock, mailboxes = setup()
    sender, owner = join_as(router, "alice"), join_as(router, "agentb")
    for i in range(3):
        put(sender, "mailbox.agentb", f"m{i}")
    assert sender.take() == []  # nothing acknowledged before the store committed
    store.flush()
    published = sender.take()
    assert [type(x) for x in published] == [m.Published] * 3
    ids = [p.publication for p in published]
    assert ids == sorted(ids)
    take = call(owner, "relayrouter.mailbox.take", ["mailbox.agentb"], {"max_inflight": 2},
                receive_progress=True)
    delivered = owner.take()
    assert progress_ids(delivered) == ids[:2]  # at most max_inflight unacked
    first = delivered[0].args[0]
    assert first["attempt"] == 1 and first["args"] == ["m0"] and first["timestamp"] == clock.now
    call(owner, "relayrouter.mailbox.ack", ["mailbox.agentb", ids[0]])
    after_ack = owner.take()
    assert progress_ids(after_ack) == [ids[2]]  # the freed slot is used at once
    assert not any(isinstance(x, m.Result) and not x.progress for x in after_ack)  # ack waits for the store
    store.flush()
    answer = [x for x in owner.take() if isinstance(x, m.Result) and not x.progress]
    assert answer[0].args == [1]
    call(owner, "relayrouter.mailbox.ack", ["mailbox.agentb"], {"upto": ids[2]})
    store.flush()
    assert [x.args for x in owner.take() if isinstance(x, m.Result)] == [[2]]
    assert store.messages == {}
    assert take  # the take call itself stays open


def test_unacked_messages_come_back_when_the_taker_goes_with_attempt_plus_one():
    router, realm, store, clock, mailboxes = setup(hold=False)
    sender, owner = join_as(router, "alice"), join_as(router, "agentb")
    for i in range(3):
        put(sender, "mailbox.agentb", i)
    request = call(owner, "relayrouter.mailbox.take", ["mailbox.agentb"], receive_progress=True)
    first = progress_ids(owner.take())
    owner.receive([CANCEL, request, {}])
    assert isinstance(owner.take()[-1], m.Error)
    call(owner, "relayrouter.mailbox.take", ["mailbox.agentb"], receive_progress=True)
    again = [r.args[0] for r in owner.take() if isinstance(r, m.Result) and r.progress]
    assert [a["id"] for a in again] == first and all(a["attempt"] == 2 for a in again)
    assert mailboxes.mailbox("mailbox.agentb").redeliveries == 3
    assert store.messages[("realm1", "mailbox.agentb", first[0])].attempts == 2  # recorded


def test_visibility_timeout_redelivers_ahead_of_newer_messages():
    router, realm, store, clock, mailboxes = setup(hold=False, visibility_timeout=30)
    sender, owner = join_as(router, "alice"), join_as(router, "agentb")
    put(sender, "mailbox.agentb", "a")
    put(sender, "mailbox.agentb", "b")
    call(owner, "relayrouter.mailbox.take", ["mailbox.agentb"], {"max_inflight": 1}, receive_progress=True)
    [a] = progress_ids(owner.take())
    clock.advance(29)
    assert owner.take() == []
    clock.advance(2)
    redelivered = [r.args[0] for r in owner.take() if isinstance(r, m.Result)]
    assert [(x["id"], x["attempt"]) for x in redelivered] == [(a, 2)]


def test_a_second_take_replaces_the_first():
    router, realm, store, clock, mailboxes = setup(hold=False)
    sender, owner, owner2 = join_as(router, "alice"), join_as(router, "agentb"), join_as(router, "agentb")
    put(sender, "mailbox.agentb", "x")
    call(owner, "relayrouter.mailbox.take", ["mailbox.agentb"], receive_progress=True)
    [x] = progress_ids(owner.take())
    call(owner2, "relayrouter.mailbox.take", ["mailbox.agentb"], receive_progress=True)
    ended = owner.take()[-1]
    assert isinstance(ended, m.Error) and ended.error == "relayrouter.error.mailbox_taken_over"
    again = [r.args[0] for r in owner2.take() if isinstance(r, m.Result)]
    assert [(a["id"], a["attempt"]) for a in again] == [(x, 2)]


def test_only_the_owner_or_an_admin_takes_inspects_or_acks():
    router, realm, store, clock, mailboxes = setup(hold=False)
    sender, stranger = join_as(router, "alice"), join_as(router, "mallory")
    put(sender, "mailbox.agentb", "secret")
    for procedure, kwargs in (("relayrouter.mailbox.take", {}), ("relayrouter.mailbox.stats", {}),
                              ("relayrouter.mailbox.ack", {"id": 1}), ("relayrouter.mailbox.endpoint", {})):
        call(stranger, procedure, ["mailbox.agentb"], kwargs, receive_progress=True)
        error = stranger.take()[-1]
        assert isinstance(error, m.Error) and error.error == "wamp.error.not_authorized", procedure
    call(stranger, "relayrouter.mailbox.stats")
    assert stranger.take()[-1].args == [{"mailboxes": []}]
    admin = join_as(router, "ops", role="admin")
    call(admin, "relayrouter.mailbox.stats")
    [stats] = admin.take()[-1].args[0]["mailboxes"]
    assert stats["mailbox"] == "mailbox.agentb" and stats["depth"] == 1 and stats["bytes"] == 6
    # a claim names the owner of team mailboxes
    member = join_as(router, "bob", claims={"team": "blue"})
    put(sender, "team.blue.inbox", "hi")
    call(member, "relayrouter.mailbox.stats", ["team.blue.inbox"])
    assert member.take()[-1].args[0]["depth"] == 1


def test_refuse_at_the_bound_or_drop_the_oldest_counted():
    router, realm, store, clock, mailboxes = setup(hold=False, max_messages=2, max_message_bytes=10)
    sender = join_as(router, "alice")
    put(sender, "mailbox.agentb", "1")
    put(sender, "mailbox.agentb", "2")
    put(sender, "mailbox.agentb", "3")
    refused = sender.take()[-1]
    assert refused.error == "relayrouter.error.mailbox_full" and "max_messages 2" in refused.args[0]
    put(sender, "mailbox.agentc", "x" * 11)
    assert sender.take()[-1].error == "relayrouter.error.mailbox_message_too_large"
    router, realm, store, clock, mailboxes = setup(hold=False, max_messages=2, overflow="drop-oldest")
    sender, owner = join_as(router, "alice"), join_as(router, "agentb")
    for i in range(4):
        put(sender, "mailbox.agentb", i)
    box = mailboxes.mailbox("mailbox.agentb")
    assert [msg.args for msg in box.messages.values()] == [[2], [3]] and box.drops == 2
    assert len(store.messages) == 2
    call(owner, "relayrouter.mailbox.stats", ["mailbox.agentb"])
    stats = owner.take()[-1].args[0]
    assert stats["drops"] == 2 and stats["depth"] == 2


def test_puts_not_yet_committed_count_against_the_bound():
    router, realm, store, clock, mailboxes = setup(hold=True, max_messages=1)
    sender = join_as(router, "alice")
    put(sender, "mailbox.agentb", 1)
    put(sender, "mailbox.agentb", 2)
    assert sender.take()[-1].error == "relayrouter.error.mailbox_full"
    store.flush()
    assert isinstance(sender.take()[-1], m.Published)


def test_a_sender_that_left_is_not_answered_and_the_message_is_kept():
    router, realm, store, clock, mailboxes = setup(hold=True)
    sender = join_as(router, "alice")
    put(sender, "mailbox.agentb", "x")
    sender.receive([6, {}, "wamp.close.normal"])  # GOODBYE
    sender.take()
    store.flush()
    assert sender.take() == [] and len(store.messages) == 1


def test_expired_messages_go_and_are_counted():
    router, realm, store, clock, mailboxes = setup(hold=False, max_age=100)
    sender = join_as(router, "alice")
    put(sender, "mailbox.agentb", "old")
    clock.advance(60)
    put(sender, "mailbox.agentb", "new")
    clock.advance(50)
    mailboxes.expire()
    box = mailboxes.mailbox("mailbox.agentb")
    assert [msg.args for msg in box.messages.values()] == [["new"]] and box.expired == 1


def test_endpoint_gives_the_token_and_path():
    router, realm, store, clock, mailboxes = setup(hold=False, token_secret=b"s" * 32)
    owner = join_as(router, "agentb")
    call(owner, "relayrouter.mailbox.endpoint", ["mailbox.agentb"])
    answer = owner.take()[-1].args[0]
    token = mailboxes.rules[0].token("realm1", "mailbox.agentb")
    assert len(token) == 64 and answer["token"] == token
    assert answer["path"] == f"/mailbox/mailbox.agentb/{token}" and answer["url"] is None


def test_take_needs_receive_progress_and_good_arguments():
    router, realm, store, clock, mailboxes = setup(hold=False)
    owner = join_as(router, "agentb")
    call(owner, "relayrouter.mailbox.take", ["mailbox.agentb"])
    assert "receive_progress" in owner.take()[-1].args[0]
    call(owner, "relayrouter.mailbox.take", ["mailbox.agentb"], {"max_inflight": 0}, receive_progress=True)
    assert owner.take()[-1].error == "wamp.error.invalid_argument"
    call(owner, "relayrouter.mailbox.take", ["nomailbox"], receive_progress=True)
    assert owner.take()[-1].error == "wamp.error.invalid_argument"
    call(owner, "relayrouter.mailbox.ack", ["mailbox.agentb"], {"id": 1, "upto": 2})
    assert owner.take()[-1].error == "wamp.error.invalid_argument"
    call(owner, "relayrouter.mailbox.ack", ["mailbox.agentb"], {"id": 777})
    assert owner.take()[-1].args == [0]


def test_counters_are_recorded_at_each_change_and_restored_after_a_restart():
    router, realm, store, clock, mailboxes = setup(hold=False, max_messages=2, overflow="drop-oldest",
                                                   max_age=100)
    sender, owner = join_as(router, "alice"), join_as(router, "agentb")
    for i in range(3):
        put(sender, "mailbox.agentb", i)
    assert store.counters[("realm1", "mailbox.agentb")] == {"redeliveries": 0, "drops": 1, "expired": 0}
    request = call(owner, "relayrouter.mailbox.take", ["mailbox.agentb"], receive_progress=True)
    owner.receive([CANCEL, request, {}])
    request = call(owner, "relayrouter.mailbox.take", ["mailbox.agentb"], receive_progress=True)
    assert store.counters[("realm1", "mailbox.agentb")]["redeliveries"] == 2
    owner.receive([CANCEL, request, {}])
    clock.advance(200)
    mailboxes.expire()
    kept = {"redeliveries": 2, "drops": 1, "expired": 2}
    assert store.counters[("realm1", "mailbox.agentb")] == kept
    # A new router over the same store: the counters go on from there.
    state = store.mailbox_load()
    router = make_router("realm1", clock=clock)
    again = Mailboxes(router.realms["realm1"], mailboxes.rules, store, MessageIds(store, state.next_id),
                      AdminPolicy(frozenset({"admin"})))
    router.realms["realm1"].broker.mailboxes = again
    for (realm_name, uri), counters in state.counters.items():
        assert again.restore_counters(uri, counters)
    assert not again.restore_counters("nobody.names.this", kept)
    owner = join_as(router, "agentb")
    call(owner, "relayrouter.mailbox.stats", ["mailbox.agentb"])
    stats = owner.take()[-1].args[0]
    assert {name: stats[name] for name in kept} == kept and stats["depth"] == 0


def test_one_sender_cannot_fill_another_agents_mailbox():
    """Each sender has a share of a mailbox (what it put and the owner has not
    taken yet): beyond it, relayrouter.error.mailbox_sender_quota, while the
    owner's other senders still get in; a share comes back as the owner acks."""
    router, realm, store, clock, mailboxes = setup(hold=False, max_messages=10, max_messages_per_sender=3)
    attacker, friend, owner = join_as(router, "mallory"), join_as(router, "alice"), join_as(router, "agentb")
    for i in range(4):
        put(attacker, "mailbox.agentb", i)
    answers = attacker.take()
    assert [type(x) for x in answers[:3]] == [m.Published] * 3
    refused = answers[3]
    assert refused.error == "relayrouter.error.mailbox_sender_quota"
    assert "sender 'mallory' holds 3 messages" in refused.args[0] and "max_messages_per_sender 3" in refused.args[0]
    put(friend, "mailbox.agentb", "hello")
    assert isinstance(friend.take()[-1], m.Published)
    call(owner, "relayrouter.mailbox.take", ["mailbox.agentb"], receive_progress=True)
    first = progress_ids(owner.take())[0]
    call(owner, "relayrouter.mailbox.ack", ["mailbox.agentb", first])
    put(attacker, "mailbox.agentb", "again")
    assert isinstance(attacker.take()[-1], m.Published)


def test_a_senders_bytes_are_bounded_too_and_anonymous_sessions_share_one_share():
    router, realm, store, clock, mailboxes = setup(hold=False, max_bytes_per_sender=10)
    sender = join_as(router, "mallory")
    put(sender, "mailbox.agentb", "x" * 6)
    put(sender, "mailbox.agentb", "y" * 6)
    assert [type(x) for x in sender.take()] == [m.Published, m.Error]
    router, realm, store, clock, mailboxes = setup(hold=False, max_messages_per_sender=2)
    realm.authenticators = {}
    peers = []
    for _ in range(3):  # a new anonymous session is no new share
        peer = connect(router)
        realm.authenticators = {"anonymous": _Anonymous()}
        peer.receive([1, "realm1", {"roles": ALL_ROLES, "authmethods": ["anonymous"]}])
        peer.take()
        put(peer, "mailbox.agentb", "m")
        peers.append(peer.take()[-1])
    assert [type(x) for x in peers] == [m.Published, m.Published, m.Error]
    assert peers[2].error == "relayrouter.error.mailbox_sender_quota"


class _Anonymous:
    _count = 0

    def hello(self, request):
        _Anonymous._count += 1
        return Accept(authid=f"anon-{_Anonymous._count}", authrole="anonymous", authmethod="anonymous")


def test_puts_not_yet_committed_and_failed_stores_count_right_in_a_share():
    router, realm, store, clock, mailboxes = setup(hold=True, max_messages_per_sender=1)
    sender = join_as(router, "mallory")
    put(sender, "mailbox.agentb", 1)
    put(sender, "mailbox.agentb", 2)
    assert sender.take()[-1].error == "relayrouter.error.mailbox_sender_quota"
    store.flush()
    assert isinstance(sender.take()[-1], m.Published)
    assert mailboxes.mailbox("mailbox.agentb").senders == {"wamp:mallory": [1, 8]}
    put(sender, "mailbox.agentc", 3)
    store.held = [(done, StoreError("disk full")) for done, outcome in store.held]
    store.flush()
    assert sender.take()[-1].error == "relayrouter.error.store_failed"
    assert mailboxes.mailbox("mailbox.agentc").senders == {}  # a failed put holds no share


def test_shares_are_restored_after_a_restart():
    router, realm, store, clock, mailboxes = setup(hold=False, max_messages_per_sender=2)
    sender = join_as(router, "mallory")
    put(sender, "mailbox.agentb", 1)
    put(sender, "mailbox.agentb", 2)
    state = store.mailbox_load()
    assert {msg.sender for msg in state.messages} == {"wamp:mallory"}
    router = make_router("realm1", clock=clock)
    again = Mailboxes(router.realms["realm1"], mailboxes.rules, store, MessageIds(store, state.next_id))
    router.realms["realm1"].broker.mailboxes = again
    for message in state.messages:
        assert again.load(message)
    sender = join_as(router, "mallory")
    put(sender, "mailbox.agentb", 3)
    assert sender.take()[-1].error == "relayrouter.error.mailbox_sender_quota"


def test_drop_oldest_drops_the_senders_own_oldest_when_its_share_is_used_up():
    router, realm, store, clock, mailboxes = setup(hold=False, max_messages=10, max_messages_per_sender=2,
                                                   overflow="drop-oldest")
    friend, attacker = join_as(router, "alice"), join_as(router, "mallory")
    put(friend, "mailbox.agentb", "keep me")
    for i in range(5):
        put(attacker, "mailbox.agentb", i)
    assert all(isinstance(x, m.Published) for x in attacker.take())
    box = mailboxes.mailbox("mailbox.agentb")
    assert [msg.args for msg in box.messages.values()] == [["keep me"], [3], [4]] and box.drops == 3
