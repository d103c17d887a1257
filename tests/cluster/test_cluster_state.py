"""Shared state across three nodes on our own nats-server with JetStream: one-time
tickets that join once on any node, retained events, tenant realms, a deny
list that a node cut off catches up on, and a resync after NATS restarts."""

import time
import urllib.error
import urllib.request

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions
from twisted.internet import defer, threads

from ..security_support import HS_SECRET, http, token
from ..support import LeftBeforeJoining, connect_ws, within
from relayrouter.cluster.state import retained_key

from .harness import LOOPS, PATIENCE, SYNCED, NatsServer, Node, ready, sleep, stop_all

REALMS = """
[revocation]
admin_roles = ["admin"]
close_grace = 1

[[realms]]
name = "lab"
[realms.auth.jwt]
algorithms = ["HS256"]
audience = "relayrouter"
issuer = "lab"
as_ticket = true
authrole_claim = "role"
authrole = "device"
keys = [{ secret_env = "JWT_SECRET" }]
[realms.auth.one_time_tickets]
lifetime = 30
[[realms.roles]]
name = "admin"
rules = [{ uri = "relayrouter.", match = "prefix", allow = ["call"] }]
[[realms.roles]]
name = "device"
rules = [{ uri = "com.", match = "prefix", allow = ["subscribe", "publish"] }]

[[realm_templates]]
name = "tenant"
max_retained_events = 3

[tenants]
management_realms = ["lab"]
"""


def admin_token() -> str:
    """Minted when used: a token made at import would expire before a slow run reaches its test."""
    return token(sub="ops", role="admin")


def start_node(tmp, name, nats, loop):
    node = Node(tmp, name, nats.url, REALMS, env={"JWT_SECRET": HS_SECRET}, loop=loop)
    node.start()  # synced with JetStream
    return node


@pytest.fixture(scope="module", params=LOOPS)
def cluster(tmp_path_factory, request):
    """Three nodes with nats-py on a loop thread, or on the asyncio reactor's loop."""
    tmp = tmp_path_factory.mktemp("cluster-state")
    nats = NatsServer(tmp)
    nats.start()
    nodes = {}
    try:
        for name in ("a", "b", "c"):
            nodes[name] = start_node(tmp, name, nats, request.param)
        yield nats, nodes
    finally:
        stop_all(nats, nodes)


def join(node, bearer_or_ticket, realm="lab", **extra):
    return connect_ws(node, realm=realm, authmethods=["ticket"], ticket=bearer_or_ticket, **extra)


@defer.inlineCallbacks
def mint(node, **claims):
    code, _, body = yield http("POST", f"{node.http_url}/ticket", bearer=token(**claims))
    assert code == 200, body
    return body


@defer.inlineCallbacks
def refused(d):
    try:
        session = yield d
    except LeftBeforeJoining as e:
        return e
    session.leave()
    raise AssertionError("joined, but should have been refused")



def metric_lines(node) -> list[str]:
    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=5) as r:
        return r.read().decode().splitlines()



@defer.inlineCallbacks
def until(attempt, seconds: float = PATIENCE, what: str = "the condition"):
    """``attempt()`` (may return a Deferred) until it returns something true; its value."""
    deadline = time.monotonic() + seconds
    while True:
        value = yield defer.maybeDeferred(attempt)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {seconds:.0f} s")
        yield sleep(0.05)


@defer.inlineCallbacks
def retained_on(session, topic):
    """The retained event a get_retained subscription receives at once (or None)."""
    got = []
    sub = yield session.subscribe(lambda *a, details=None, **kw: got.append((a, details)), topic,
                                  options=SubscribeOptions(get_retained=True, details=True))
    yield sleep(0.3)
    yield sub.unsubscribe()
    return got[-1] if got else None


# ------------------------------------------------------------------- tickets

@pytest_twisted.inlineCallbacks
def test_a_ticket_minted_on_a_joins_on_b_once_and_is_refused_on_c(cluster):
    nats, nodes = cluster
    body = yield mint(nodes["a"], sub="device-7", role="device", bid="b-1")
    assert body["scope"] == "cluster"
    ticket = body["ticket"]
    session = yield join(nodes["b"], ticket)
    assert (session.details.authid, session.details.authrole) == ("device-7", "device")
    again = yield refused(join(nodes["c"], ticket))
    assert again.reason == "wamp.error.authentication_failed"
    assert again.message == "one-time ticket unknown, used or expired"
    # Nor on the node that minted it.
    mine = yield refused(join(nodes["a"], ticket))
    assert mine.message == "one-time ticket unknown, used or expired"
    session.leave()
    metrics = yield threads.deferToThread(metric_lines, nodes["b"])
    assert 'relayrouter_cluster_tickets_total{outcome="taken"} 1.0' in metrics
    assert "relayrouter_cluster_state_synced 1.0" in metrics
    # Neither NATS's store nor any node's log holds the ticket: only its hash.
    store = b"".join(p.read_bytes() for p in nats.store.rglob("*") if p.is_file())
    assert ticket.encode() not in store and ticket[4:].encode() not in store
    for node in nodes.values():
        assert ticket not in node.output() and ticket[4:] not in node.output()


@pytest_twisted.inlineCallbacks
def test_two_joins_racing_with_one_ticket_on_two_nodes_one_wins(cluster):
    nats, nodes = cluster
    for _ in range(3):
        ticket = (yield mint(nodes["c"], sub="device-8", role="device"))["ticket"]
        results = yield defer.DeferredList([join(nodes["a"], ticket), join(nodes["b"], ticket)],
                                           consumeErrors=True)
        joined = [value for ok, value in results if ok]
        lost = [value.value for ok, value in results if not ok]
        assert len(joined) == 1, results
        assert isinstance(lost[0], LeftBeforeJoining) and "used" in lost[0].message
        joined[0].leave()


@pytest_twisted.inlineCallbacks
def test_an_expired_ticket_is_refused_on_another_node(cluster):
    nats, nodes = cluster
    # The token expires in 1 s: the ticket with it (a ticket never outlives its token).
    ticket = (yield mint(nodes["a"], sub="device-9", role="device", lifetime=1))["ticket"]
    yield sleep(1.5)
    late = yield refused(join(nodes["b"], ticket))
    assert late.message == "one-time ticket unknown, used or expired"


# ----------------------------------------------------------- retained events

@pytest_twisted.inlineCallbacks
def test_a_retained_event_published_on_a_is_what_b_hands_a_new_subscriber(cluster):
    nats, nodes = cluster
    publisher = yield join(nodes["a"], token(sub="pub-a", role="device"))
    yield publisher.publish("com.retained.temp", 21.5, options=PublishOptions(retain=True, acknowledge=True))
    reader = yield join(nodes["b"], token(sub="reader-b", role="device"))

    def seen(value):
        def attempt():
            d = retained_on(reader, "com.retained.temp")
            return d.addCallback(lambda got: got if got and got[0] == (value,) else None)
        return until(attempt, what=f"retained {value} on b")

    args, details = yield seen(21.5)
    assert details.retained is True
    # The latest wins, wherever it was published.
    other = yield join(nodes["c"], token(sub="pub-c", role="device"))
    yield other.publish("com.retained.temp", 22.0, options=PublishOptions(retain=True, acknowledge=True))
    yield seen(22.0)
    # Pattern subscriptions on a third node get it too.
    reader_a = yield join(nodes["a"], token(sub="reader-a", role="device"))
    got = []
    yield reader_a.subscribe(lambda *a, details=None: got.append(a), "com.retained.",
                             options=SubscribeOptions(match="prefix", get_retained=True, details=True))
    yield until(lambda: got, what="retained on a by prefix")
    assert got == [(22.0,)]
    for session in (publisher, reader, other, reader_a):
        session.leave()


@pytest_twisted.inlineCallbacks
def test_max_retained_events_holds_across_nodes_and_in_the_bucket(cluster):
    nats, nodes = cluster
    admin = yield join(nodes["a"], admin_token())
    yield admin.call("relayrouter.realm.create", name="few_retained")
    publisher = yield _anonymous(nodes["a"], "few_retained")
    for i in range(1, 6):
        yield publisher.publish(f"t.{i}", i, options=PublishOptions(retain=True, acknowledge=True))
    keys = {i: retained_key("few_retained", f"t.{i}") for i in range(1, 6)}

    seen = []

    def bucket_holds():
        held = set(kv_keys(nats, "relayrouter_retained"))
        seen.append({i for i, key in keys.items() if key in held})
        return seen[-1]

    try:
        yield until(lambda: threads.deferToThread(bucket_holds).addCallback(lambda held: held == {3, 4, 5}),
                    what="the bucket keeping the latest three")
    except AssertionError as e:
        raise AssertionError(f"{e}; it held the events {sorted(seen[-1]) if seen else '?'}") from None
    reader = yield _anonymous(nodes["b"], "few_retained")
    got = []
    yield reader.subscribe(lambda *a: got.append(a), "t.", options=SubscribeOptions(match="prefix",
                                                                                      get_retained=True))
    yield until(lambda: len(got) == 3, what="three retained events on b")
    assert sorted(got) == [(3,), (4,), (5,)]
    for session in (publisher, reader):
        session.leave()
    yield admin.call("relayrouter.realm.delete", name="few_retained")
    admin.leave()


@pytest_twisted.inlineCallbacks
def test_retained_events_published_faster_than_nats_answers_leave_the_latest_in_the_bucket(cluster):
    """Each publication's write reaches the bucket after the next publications were routed here:
    the echoes of our own writes must not be applied again (they would bring evicted events back
    and push others out, leaving the bucket and the nodes with the wrong ones)."""
    nats, nodes = cluster
    admin = yield join(nodes["a"], admin_token())
    yield admin.call("relayrouter.realm.create", name="fast_retained")
    publisher = yield _anonymous(nodes["a"], "fast_retained")
    count = 60
    yield defer.gatherResults([publisher.publish(f"t.{i}", i, options=PublishOptions(retain=True, acknowledge=True))
                               for i in range(1, count + 1)])
    keys = {i: retained_key("fast_retained", f"t.{i}") for i in range(1, count + 1)}
    latest = {count - 2, count - 1, count}

    def bucket_holds():
        held = set(kv_keys(nats, "relayrouter_retained"))
        return {i for i, key in keys.items() if key in held}

    yield until(lambda: threads.deferToThread(bucket_holds).addCallback(lambda held: held == latest),
                what="the bucket keeping the latest three")
    yield sleep(0.5)  # the last echoes are in: nothing changes any more
    assert (yield threads.deferToThread(bucket_holds)) == latest
    for node in ("a", "b"):
        reader = yield _anonymous(nodes[node], "fast_retained")
        got = []
        yield reader.subscribe(lambda *a: got.append(a), "t.", options=SubscribeOptions(match="prefix",
                                                                                          get_retained=True))
        yield until(lambda: len(got) == 3, what=f"three retained events on {node}")
        yield sleep(0.3)
        assert sorted(got) == [(i,) for i in sorted(latest)], node
        reader.leave()
    publisher.leave()
    yield admin.call("relayrouter.realm.delete", name="fast_retained")
    admin.leave()


@pytest_twisted.inlineCallbacks
def test_a_change_jetstream_refuses_while_connected_is_written_again_soon(cluster):
    """The retained bucket vanishes under a connected node (an operator deleted it): the write
    fails, is kept, and the node resyncs on its own (recreating the bucket) instead of waiting
    for a reconnection that never comes.  (The other nodes' watches of the deleted bucket end:
    they see its new contents at their next resync.)"""
    nats, nodes = cluster
    # In sync to begin with: the module's earlier tests may leave node a catching up (a resync
    # after their burst of writes), when a tenant cannot be made here (wamp.error.unavailable).
    yield until(lambda: threads.deferToThread(ready, nodes["a"]).addCallback(lambda answer: answer[0] == 200),
                what="node a in sync with JetStream")
    admin = yield join(nodes["a"], admin_token())
    yield admin.call("relayrouter.realm.create", name="bucket_gone")
    publisher = yield _anonymous(nodes["a"], "bucket_gone")
    yield threads.deferToThread(delete_stream, nats, "KV_relayrouter_retained")
    yield publisher.publish("t.kept", 1, options=PublishOptions(retain=True, acknowledge=True))
    key = retained_key("bucket_gone", "t.kept")
    yield until(lambda: threads.deferToThread(stream_keys, nats, "relayrouter_retained")
                .addCallback(lambda held: key in held), seconds=40, what="the retained event in the bucket again")
    publisher.leave()
    yield admin.call("relayrouter.realm.delete", name="bucket_gone")
    admin.leave()


def delete_stream(nats, stream: str) -> None:
    import asyncio

    import nats as nats_client

    async def delete():
        nc = await nats_client.connect(nats.url)
        try:
            await nc.jetstream().delete_stream(stream)
        finally:
            await nc.close()

    asyncio.run(delete())


def stream_keys(nats, bucket: str) -> set:
    """The bucket's keys, or none while the bucket does not exist."""
    from nats.js import errors as js_errors

    try:
        return set(kv_keys(nats, bucket))
    except js_errors.NotFoundError:
        return set()


def kv_keys(nats, bucket: str) -> list[str]:
    """The keys a bucket holds now (deleted ones not), asked with a client of our own."""
    import asyncio

    import nats as nats_client
    from nats.js import errors as js_errors

    async def ask():
        nc = await nats_client.connect(nats.url)
        try:
            kv = await nc.jetstream().key_value(bucket)
            try:
                # nats-py's keys() watches the bucket until its initial values end, and can wait
                # for ever where many keys were deleted: ask again rather than hang the run.
                return await asyncio.wait_for(kv.keys(), 5)
            except js_errors.NoKeysError:
                return []
        finally:
            await nc.close()

    for _ in range(6):
        try:
            return asyncio.run(ask())
        except (asyncio.TimeoutError, TimeoutError):
            continue
    raise AssertionError(f"bucket {bucket}: its keys could not be listed in 6 tries of 5 s")


# ------------------------------------------------------------------ tenants

@pytest_twisted.inlineCallbacks
def test_a_tenant_made_on_a_is_a_realm_of_every_node_with_pubsub_across_them(cluster):
    nats, nodes = cluster
    admin = yield join(nodes["a"], admin_token())
    result = yield admin.call("relayrouter.realm.create", name="acme")
    assert result["tenant"] == "acme"
    on_c = yield _anonymous(nodes["c"], "acme")
    on_a = yield connect_ws(nodes["a"], realm="acme")
    got = []
    yield on_c.subscribe(lambda *a: got.append(a), "acme.temp")
    yield sleep(0.5)  # node c's interest reaches NATS
    yield on_a.publish("acme.temp", 1, options=PublishOptions(acknowledge=True))
    yield until(lambda: got, what="the tenant's event on c")
    assert got == [(1,)]
    # Calls cross too: a procedure registered on c answers a caller on a.
    yield on_c.register(lambda x, y: x + y, "acme.add")
    total = yield until(lambda: on_a.call("acme.add", 2, 3).addErrback(lambda f: f.trap(ApplicationError) and None),
                        what="the tenant's procedure on c callable from a")
    assert total == 5
    listed = yield until(lambda: _tenants(nodes["b"]), what="the tenant listed on b")
    assert "acme" in listed
    # Deleted on b: gone everywhere, its sessions closed.
    admin_b = yield join(nodes["b"], admin_token())
    yield admin_b.call("relayrouter.realm.delete", name="acme", reason="contract ended")
    details = yield within(on_c.left, 10)
    assert details.reason == "wamp.close.close_realm"
    yield within(on_a.left, 10)
    gone = yield refused(_anonymous_once(nodes["c"], "acme"))
    assert gone.reason == "wamp.error.no_such_realm"
    for session in (admin, admin_b):
        session.leave()


def _anonymous_once(node, realm):
    return connect_ws(node, realm=realm)


@defer.inlineCallbacks
def _anonymous(node, realm):
    def attempt():
        d = connect_ws(node, realm=realm)
        d.addErrback(lambda f: f.trap(LeftBeforeJoining) and None)
        return d
    session = yield until(attempt, what=f"realm {realm} on {node.name}")
    return session


@defer.inlineCallbacks
def _tenants(node):
    admin = yield join(node, admin_token())
    listed = yield admin.call("relayrouter.realm.list")
    admin.leave()
    return listed["tenants"]


# ---------------------------------------------------------------- deny list

@pytest_twisted.inlineCallbacks
def test_a_node_down_during_deny_list_changes_applies_them_when_it_comes_back(cluster):
    nats, nodes = cluster
    admin = yield join(nodes["a"], admin_token())
    yield admin.call("relayrouter.denylist.add", claim="authid", value="lifted-later", ttl=600)
    yield until(lambda: _refused_on(nodes["c"], "lifted-later"), what="the first denial on c")
    nodes["c"].stop()
    yield admin.call("relayrouter.denylist.add", claim="authid", value="denied-while-away", ttl=600,
                     reason="stolen")
    yield admin.call("relayrouter.denylist.remove", claim="authid", value="lifted-later")
    yield admin.call("relayrouter.realm.create", name="made_while_c_was_down")
    yield threads.deferToThread(nodes["c"].start)
    # The tenant made meanwhile is a realm of c now.
    on_c = yield connect_ws(nodes["c"], realm="made_while_c_was_down")
    on_c.leave()
    yield admin.call("relayrouter.realm.delete", name="made_while_c_was_down")
    # What it missed applies: the new denial refuses, the lifted one admits.
    late = yield refused(join(nodes["c"], token(sub="denied-while-away", role="device")))
    assert "revoked" in late.message
    lifted = yield join(nodes["c"], token(sub="lifted-later", role="device"))
    lifted.leave()
    yield admin.call("relayrouter.denylist.remove", claim="authid", value="denied-while-away")
    admin.leave()


@defer.inlineCallbacks
def _refused_on(node, authid):
    try:
        session = yield join(node, token(sub=authid, role="device"))
    except LeftBeforeJoining:
        return True
    session.leave()
    return False


# -------------------------------------------------------------- NATS restart

@pytest_twisted.inlineCallbacks
def test_after_nats_restarts_every_node_resyncs_and_catches_up(cluster):
    nats, nodes = cluster
    victim = yield join(nodes["b"], token(sub="denied-in-outage", role="device"))
    admin = yield join(nodes["a"], admin_token())
    marks = {name: len(node.all_output) for name, node in nodes.items()}
    nats.stop()
    for node in nodes.values():  # every node has noticed
        yield until(lambda node=node: ready(node)[0] == 503, what=f"{node.name} not ready")
    status, body = ready(nodes["a"])
    assert any("not connected to NATS" in p for p in body["problems"])
    # Local traffic goes on; a denial made meanwhile stays here for now...
    result = yield admin.call("relayrouter.denylist.add", claim="authid", value="denied-in-outage", ttl=600)
    assert result["sessions_closed"] == 0
    # ... tenants cannot change while the node is cut off ...
    with pytest.raises(ApplicationError) as cut_off:
        yield admin.call("relayrouter.realm.create", name="during_outage")
    assert cut_off.value.error == "wamp.error.unavailable" and "not in sync" in cut_off.value.args[0]
    # ... and a ticket minted now joins on its own node only.
    body = yield mint(nodes["a"], sub="device-local", role="device")
    assert body["scope"] == "node"
    elsewhere = yield refused(join(nodes["c"], body["ticket"]))
    assert elsewhere.reason == "wamp.error.authentication_failed" and "cannot reach the cluster" in elsewhere.message
    here = yield join(nodes["a"], body["ticket"])
    here.leave()
    yield threads.deferToThread(nats.start)
    for name, node in nodes.items():
        yield threads.deferToThread(node.wait_output, f"cluster: node {name} {SYNCED}", 60, marks[name])
    # The denial made during the outage reached node b: its session ended.
    details = yield within(victim.left, 10)
    assert details.reason == "wamp.close.revoked"
    for node in nodes.values():
        assert ready(node)[0] == 200, ready(node)
    # Tickets and tenants work across nodes again.
    ticket = (yield mint(nodes["b"], sub="device-after", role="device"))["ticket"]
    session = yield join(nodes["c"], ticket)
    session.leave()
    yield admin.call("relayrouter.realm.create", name="after_outage")
    on_c = yield _anonymous(nodes["c"], "after_outage")
    on_c.leave()
    yield admin.call("relayrouter.realm.delete", name="after_outage")
    yield admin.call("relayrouter.denylist.remove", claim="authid", value="denied-in-outage")
    admin.leave()
