"""Calls across router nodes: three real twistd nodes and our own
nats-server (JetStream), Autobahn and raw clients on different nodes; nats-py
on a loop thread and on the asyncio reactor's loop."""

import time
from collections import Counter

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails, CallOptions, RegisterOptions
from twisted.internet import defer, reactor, task, threads

from ..support import connect_raw, connect_ws, within
from .harness import LOAD_SLACK, LOOPS, PATIENCE, NatsServer, Node, stop_all

BEATS = "heartbeat_interval = 0.25\nheartbeat_ttl = 1.0\n"
PPT = {"ppt_scheme": "x_custom", "ppt_serializer": "native"}
PPT_ROLES = {"caller": {"features": {"payload_passthru_mode": True}},
             "callee": {"features": {"payload_passthru_mode": True}}}


def start_cluster(tmp, names=("a", "b", "c"), loop="thread", beats=BEATS):
    nats = NatsServer(tmp)
    nats.start()
    nodes = {}
    try:
        for name in names:
            nodes[name] = Node(tmp, name, nats.url, extra=beats, loop=loop)
            nodes[name].start()
    except BaseException:
        stop_cluster(nats, nodes)
        raise
    return nats, nodes


def stop_cluster(nats, nodes) -> None:
    stop_all(nats, nodes)


@pytest.fixture(scope="module", params=LOOPS)
def cluster(tmp_path_factory, request):
    nats, nodes = start_cluster(tmp_path_factory.mktemp(f"calls-{request.param}"), loop=request.param)
    yield nats, nodes
    stop_cluster(nats, nodes)


@pytest.fixture(params=LOOPS)
def loop(request):
    return request.param


def pause(seconds: float = 0.05):
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def callees_seen(session, procedure: str, count: int, match: str = "exact", seconds: float = PATIENCE):
    """Wait until ``session``'s node sees ``count`` callees of ``procedure`` (0: no registration)."""
    deadline = time.monotonic() + seconds
    while True:
        reg_id = yield session.call("wamp.registration.lookup", procedure, {"match": match})
        try:
            seen = 0 if reg_id is None else (yield session.call("wamp.registration.count_callees", reg_id))
        except ApplicationError as e:  # gone between the two calls
            if e.error != "wamp.error.no_such_registration":
                raise
            seen = 0
        if seen == count:
            return reg_id
        if time.monotonic() > deadline:
            raise AssertionError(f"{procedure}: {seen} callees seen, not {count}")
        yield pause()


def calls_metric(node, kind: str) -> float:
    """relayrouter_cluster_calls_total{kind}, from the node's /metrics (loopback needs no token)."""
    import re
    import urllib.request

    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = re.search(rf'^relayrouter_cluster_calls_total\{{kind="{kind}"\}} (\S+)$', text, re.M)
    return float(found.group(1))


def named(name):
    return lambda *args, **kwargs: name


class Stuck:
    """A procedure that never answers, and records being interrupted."""

    def __init__(self) -> None:
        self.invoked = defer.Deferred()
        self.interrupted = defer.Deferred()

    def __call__(self, *args):
        self.invoked.callback(args)
        return defer.Deferred(canceller=lambda d: self.interrupted.callback(None))


def expect_interrupt(logged_errors) -> None:
    logged_errors.expect(r'Client\.onUserError\(\): "CancelledError')


def leave(*sessions) -> None:
    for session in sessions:
        session.leave()


@pytest_twisted.inlineCallbacks
def test_roundrobin_alternates_across_callees_on_other_nodes(cluster):
    nats, nodes = cluster
    callees = []
    for name in ("a", "b", "c"):
        callee = yield connect_ws(nodes[name])
        registration = yield callee.register(named(name), "com.rr", options=RegisterOptions(invoke="roundrobin"))
        callees.append((callee, registration.id))
    assert len({reg_id for _, reg_id in callees}) == 1  # one registration, cluster-wide
    caller = yield connect_ws(nodes["b"])
    yield callees_seen(caller, "com.rr", 3)
    answers = []
    for _ in range(6):
        answers.append((yield caller.call("com.rr")))
    # In registration order, from wherever the caller is.
    assert answers == ["a", "b", "c", "a", "b", "c"]
    # Four of the six crossed from b: counted on both ends.
    assert (yield threads.deferToThread(calls_metric, nodes["b"], "out")) >= 4
    assert (yield threads.deferToThread(calls_metric, nodes["a"], "in")) >= 2
    leave(caller, *(c for c, _ in callees))


@pytest_twisted.inlineCallbacks
def test_first_and_last_pick_across_nodes(cluster):
    nats, nodes = cluster
    first_b = yield connect_ws(nodes["b"])
    yield first_b.register(named("b"), "com.first", options=RegisterOptions(invoke="first"))
    first_c = yield connect_ws(nodes["c"])
    yield first_c.register(named("c"), "com.first", options=RegisterOptions(invoke="first"))
    last_b = yield connect_ws(nodes["b"])
    yield last_b.register(named("b"), "com.last", options=RegisterOptions(invoke="last"))
    last_c = yield connect_ws(nodes["c"])
    yield last_c.register(named("c"), "com.last", options=RegisterOptions(invoke="last"))
    caller = yield connect_ws(nodes["a"])
    yield callees_seen(caller, "com.first", 2)
    yield callees_seen(caller, "com.last", 2)
    for _ in range(3):
        assert (yield caller.call("com.first")) == "b"
        assert (yield caller.call("com.last")) == "c"
    # The first one goes: the next in line, on another node, takes over.
    first_b.leave()
    yield callees_seen(caller, "com.first", 1)
    assert (yield caller.call("com.first")) == "c"
    leave(caller, first_c, last_b, last_c)


@pytest_twisted.inlineCallbacks
def test_random_reaches_callees_on_every_node(cluster):
    nats, nodes = cluster
    callees = []
    for name in ("a", "b", "c"):
        callee = yield connect_ws(nodes[name])
        yield callee.register(named(name), "com.random", options=RegisterOptions(invoke="random"))
        callees.append(callee)
    caller = yield connect_ws(nodes["c"])
    yield callees_seen(caller, "com.random", 3)
    seen = Counter()
    for _ in range(60):
        seen[(yield caller.call("com.random"))] += 1
    assert set(seen) == {"a", "b", "c"}, seen
    leave(caller, *callees)


@pytest_twisted.inlineCallbacks
def test_single_is_exclusive_across_nodes_and_policies_do_not_mix(cluster):
    nats, nodes = cluster
    owner = yield connect_ws(nodes["b"])
    yield owner.register(named("b"), "com.one")
    rival = yield connect_ws(nodes["c"])
    with pytest.raises(ApplicationError) as refused:
        yield rival.register(named("c"), "com.one")
    assert refused.value.error == "wamp.error.procedure_already_exists"
    # Both at once, on two nodes, with nothing seen yet: the directory lets exactly one in.
    left = yield connect_ws(nodes["a"])
    right = yield connect_ws(nodes["c"])
    outcomes = yield defer.DeferredList([left.register(named("a"), "com.race"),
                                         right.register(named("c"), "com.race")], consumeErrors=True)
    assert sorted(ok for ok, _ in outcomes) == [False, True]
    failure = next(result for ok, result in outcomes if not ok)
    assert failure.value.error == "wamp.error.procedure_already_exists"
    # Shared with different policies on two nodes: refused as WAMP says.
    yield owner.register(named("b"), "com.mixed", options=RegisterOptions(invoke="roundrobin"))
    with pytest.raises(ApplicationError) as mixed:
        yield rival.register(named("c"), "com.mixed", options=RegisterOptions(invoke="first"))
    assert mixed.value.error == "wamp.error.procedure_already_exists"
    assert "roundrobin" in mixed.value.args[0]
    caller = yield connect_ws(nodes["a"])
    assert (yield caller.call("com.one")) == "b"
    leave(owner, rival, left, right, caller)


@pytest_twisted.inlineCallbacks
def test_pattern_registrations_across_nodes_keep_wamp_precedence(cluster):
    nats, nodes = cluster

    def where(name):
        return lambda *args, details: [name, details.procedure]

    exact = yield connect_ws(nodes["a"])
    yield exact.register(where("a"), "com.pat.x", options=RegisterOptions(details_arg="details"))
    prefix = yield connect_ws(nodes["b"])
    yield prefix.register(where("b"), "com.pat.", options=RegisterOptions(match="prefix", details_arg="details"))
    wildcard = yield connect_ws(nodes["c"])
    yield wildcard.register(where("c"), "com..x", options=RegisterOptions(match="wildcard", details_arg="details"))
    caller = yield connect_ws(nodes["c"])
    yield callees_seen(caller, "com.pat.x", 1)
    yield callees_seen(caller, "com.pat.", 1, "prefix")
    assert (yield caller.call("com.pat.x")) == ["a", "com.pat.x"]  # exact over prefix
    assert (yield caller.call("com.pat.y")) == ["b", "com.pat.y"]  # prefix over wildcard
    assert (yield caller.call("com.other.x")) == ["c", "com.other.x"]  # local wildcard
    remote_caller = yield connect_ws(nodes["a"])
    yield callees_seen(remote_caller, "com..x", 1, "wildcard")
    assert (yield remote_caller.call("com.other.x")) == ["c", "com.other.x"]
    leave(exact, prefix, wildcard, caller, remote_caller)


@pytest_twisted.inlineCallbacks
def test_progressive_results_and_callee_errors_cross_nodes(cluster):
    nats, nodes = cluster

    def counting(n, details: CallDetails):
        for i in range(n):
            details.progress(i)
        return "done"

    def failing(*args):
        raise ApplicationError("com.lab.error.broken", "broken", 42, detail={"why": "test"})

    callee = yield connect_ws(nodes["c"], "msgpack")
    yield callee.register(counting, "com.count", options=RegisterOptions(details_arg="details"))
    yield callee.register(failing, "com.fail")
    caller = yield connect_ws(nodes["a"], "cbor")
    yield callees_seen(caller, "com.count", 1)
    yield callees_seen(caller, "com.fail", 1)
    progress = []
    result = yield caller.call("com.count", 4, options=CallOptions(on_progress=progress.append))
    assert (result, progress) == ("done", [0, 1, 2, 3])
    with pytest.raises(ApplicationError) as broken:
        yield caller.call("com.fail")
    assert broken.value.error == "com.lab.error.broken"
    assert broken.value.args == ("broken", 42) and broken.value.kwargs == {"detail": {"why": "test"}}
    leave(callee, caller)


@pytest_twisted.inlineCallbacks
def test_cancel_modes_and_timeout_across_nodes(cluster, logged_errors):
    expect_interrupt(logged_errors)
    nats, nodes = cluster
    callee = yield connect_ws(nodes["b"])
    stuck = {mode: Stuck() for mode in ("kill", "skip", "killnowait", "timeout")}
    for mode, procedure in stuck.items():
        yield callee.register(procedure, f"com.stuck.{mode}")
    raw = yield connect_raw(nodes["a"])
    yield raw.hello(details={"roles": {"caller": {"features": {"call_canceling": True,
                                                               "progressive_call_results": True}}}})
    observer = yield connect_ws(nodes["a"])
    for mode in stuck:
        yield callees_seen(observer, f"com.stuck.{mode}", 1)

    # kill: INTERRUPT reaches the callee on b; the caller gets the callee's own ERROR
    raw.send([48, 1, {}, "com.stuck.kill", []])
    yield within(stuck["kill"].invoked, PATIENCE)
    raw.send([49, 1, {"mode": "kill"}])
    yield within(stuck["kill"].interrupted, PATIENCE)
    error = yield raw.next()
    assert error[:3] == [8, 48, 1] and error[4] == "wamp.error.runtime_error"

    # skip: the caller hears at once, the callee is not interrupted
    raw.send([48, 2, {}, "com.stuck.skip", []])
    yield within(stuck["skip"].invoked, PATIENCE)
    raw.send([49, 2, {"mode": "skip"}])
    error = yield raw.next()
    assert error[:3] == [8, 48, 2] and error[4] == "wamp.error.canceled"

    # killnowait: the caller hears at once, the callee is interrupted
    raw.send([48, 3, {}, "com.stuck.killnowait", []])
    yield within(stuck["killnowait"].invoked, PATIENCE)
    raw.send([49, 3, {"mode": "killnowait"}])
    error = yield raw.next()
    assert error[:3] == [8, 48, 3] and error[4] == "wamp.error.canceled"
    yield within(stuck["killnowait"].interrupted, PATIENCE)

    # timeout (ms): run by the caller's node, the callee across interrupted
    raw.send([48, 4, {"timeout": 200}, "com.stuck.timeout", []])
    error = yield raw.next()
    assert error[:3] == [8, 48, 4] and error[4] == "wamp.error.canceled"
    assert "timed out" in error[5][0]
    yield within(stuck["timeout"].interrupted, PATIENCE)
    assert not stuck["skip"].interrupted.called
    leave(callee, observer)
    raw.protocol.sendClose()


@pytest_twisted.inlineCallbacks
def test_a_caller_leaving_interrupts_the_callee_on_another_node(cluster, logged_errors):
    expect_interrupt(logged_errors)
    nats, nodes = cluster
    stuck = Stuck()
    callee = yield connect_ws(nodes["c"])
    yield callee.register(stuck, "com.stuck.left")
    caller = yield connect_ws(nodes["a"])
    yield callees_seen(caller, "com.stuck.left", 1)
    caller.call("com.stuck.left").addErrback(lambda f: None)
    yield within(stuck.invoked, PATIENCE)
    caller.leave()
    yield within(stuck.interrupted, PATIENCE)
    yield pause(0.5)  # Autobahn logs the interrupted invocation's CancelledError a moment later
    callee.leave()


@pytest_twisted.inlineCallbacks
def test_disclosure_and_payload_passthru_cross_nodes(cluster):
    nats, nodes = cluster
    who = yield connect_ws(nodes["c"])
    yield who.register(lambda details: [details.caller, details.caller_authrole], "com.who",
                       options=RegisterOptions(details_arg="details"))
    sealed = yield connect_raw(nodes["b"])
    yield sealed.hello(details={"roles": PPT_ROLES})
    sealed.send([64, 1, {}, "com.sealed"])
    registered = yield sealed.next()
    assert registered[0] == 65
    caller = yield connect_raw(nodes["a"])
    welcome = yield caller.hello(details={"roles": PPT_ROLES})
    observer = yield connect_ws(nodes["a"])
    yield callees_seen(observer, "com.who", 1)
    yield callees_seen(observer, "com.sealed", 1)
    caller.send([48, 1, {"disclose_me": True}, "com.who", []])
    result = yield caller.next()
    assert result[0] == 50 and result[3] == [[welcome[1], "anonymous"]]
    caller.send([48, 2, dict(PPT), "com.sealed", ["\u0000AAE="]])
    invocation = yield sealed.next()
    assert invocation[0] == 68 and invocation[2] == registered[2]
    assert invocation[3] == PPT and invocation[4] == ["\u0000AAE="]
    sealed.send([70, invocation[1], {**PPT, "ppt_keyid": "reply"}, ["\u0000AgM="]])
    result = yield caller.next()
    assert result == [50, 2, {**PPT, "ppt_keyid": "reply"}, ["\u0000AgM="]]
    leave(who, observer)
    sealed.protocol.sendClose()
    caller.protocol.sendClose()


@pytest_twisted.inlineCallbacks
def test_registration_meta_api_answers_for_the_cluster(cluster):
    nats, nodes = cluster
    on_b = yield connect_ws(nodes["b"])
    registration = yield on_b.register(named("b"), "com.meta", options=RegisterOptions(invoke="roundrobin"))
    on_c = yield connect_ws(nodes["c"])
    same = yield on_c.register(named("c"), "com.meta", options=RegisterOptions(invoke="roundrobin"))
    assert same.id == registration.id
    asker = yield connect_ws(nodes["a"])
    assert (yield callees_seen(asker, "com.meta", 2)) == registration.id
    assert (yield asker.call("wamp.registration.match", "com.meta")) == registration.id
    details = yield asker.call("wamp.registration.get", registration.id)
    assert (details["uri"], details["match"], details["invoke"]) == ("com.meta", "exact", "roundrobin")
    assert registration.id in (yield asker.call("wamp.registration.list"))["exact"]
    callees = yield asker.call("wamp.registration.list_callees", registration.id)
    assert sorted(callees) == sorted([on_b._session_id, on_c._session_id])
    yield registration.unregister()
    yield callees_seen(asker, "com.meta", 1)
    assert (yield asker.call("wamp.registration.list_callees", registration.id)) == [on_c._session_id]
    on_c.leave()
    yield callees_seen(asker, "com.meta", 0)
    with pytest.raises(ApplicationError) as gone:
        yield asker.call("com.meta")
    assert gone.value.error == "wamp.error.no_such_procedure"
    leave(on_b, asker)


@pytest_twisted.inlineCallbacks
def test_a_killed_callee_node_cancels_its_calls_and_leaves_the_directory(tmp_path, loop, logged_errors):
    nats, nodes = yield threads.deferToThread(start_cluster, tmp_path, ("a", "b", "c"), loop)
    try:
        callee = yield connect_ws(nodes["c"])
        stuck = Stuck()
        yield callee.register(stuck, "com.doomed")
        yield callee.register(named("c"), "com.solo")
        caller = yield connect_ws(nodes["a"])
        other = yield connect_ws(nodes["b"])
        yield callees_seen(caller, "com.doomed", 1)
        yield callees_seen(other, "com.solo", 1)
        pending = caller.call("com.doomed")
        yield within(stuck.invoked, PATIENCE)
        nodes["c"].kill9()
        killed = time.monotonic()
        with pytest.raises(ApplicationError) as canceled:
            yield within(pending, PATIENCE)
        waited = time.monotonic() - killed
        assert canceled.value.error == "wamp.error.canceled" and "node c is gone" in canceled.value.args[0]
        assert waited < 1.0 + 0.25 + LOAD_SLACK  # ttl + one beat, on a machine loaded or not
        yield callees_seen(caller, "com.doomed", 0, seconds=PATIENCE)
        yield callees_seen(other, "com.solo", 0, seconds=PATIENCE)
        # Gone from the directory, not only from the survivors' views: b may take it now.
        yield other.register(named("b"), "com.solo")
        yield callees_seen(caller, "com.solo", 1)
        assert (yield caller.call("com.solo")) == "b"
        leave(caller, other)
    finally:
        yield threads.deferToThread(stop_cluster, nats, nodes)


@pytest_twisted.inlineCallbacks
def test_a_node_restarted_under_its_name_does_not_inherit_its_old_registrations(tmp_path, loop):
    # A TTL far longer than the restart: a never takes b as gone, so only the
    # restarted b itself can take its previous life's entry out, and only its
    # new process saying so can end the call waiting on the old one.
    beats = "heartbeat_interval = 0.5\nheartbeat_ttl = 30\n"
    nats, nodes = yield threads.deferToThread(start_cluster, tmp_path, ("a", "b"), loop, beats)
    try:
        callee = yield connect_ws(nodes["b"])
        yield callee.register(named("old b"), "com.inherit")
        stuck = Stuck()
        yield callee.register(stuck, "com.inherit.stuck")
        asker = yield connect_ws(nodes["a"])
        yield callees_seen(asker, "com.inherit", 1)
        yield callees_seen(asker, "com.inherit.stuck", 1)
        pending = asker.call("com.inherit.stuck")
        yield within(stuck.invoked, PATIENCE)
        nodes["b"].kill9()
        nodes["b"] = Node(tmp_path, "b", nats.url, extra=beats, loop=loop)
        yield threads.deferToThread(nodes["b"].start)
        with pytest.raises(ApplicationError) as canceled:
            yield within(pending, PATIENCE)
        assert canceled.value.error == "wamp.error.canceled" and "node b restarted" in canceled.value.args[0]
        yield callees_seen(asker, "com.inherit", 0, seconds=PATIENCE)
        assert not any("node b is gone" in line or "taken as gone" in line for line in nodes["a"].all_output)
        taker = yield connect_ws(nodes["b"])
        yield taker.register(named("new b"), "com.inherit")
        yield callees_seen(asker, "com.inherit", 1)
        assert (yield asker.call("com.inherit")) == "new b"
        leave(asker, taker)
    finally:
        yield threads.deferToThread(stop_cluster, nats, nodes)


@pytest_twisted.inlineCallbacks
def test_a_clean_stop_takes_the_nodes_registrations_out_at_once(tmp_path, loop):
    slow = "heartbeat_interval = 5\nheartbeat_ttl = 30\n"  # so only the clean stop can explain it
    nats, nodes = yield threads.deferToThread(start_cluster, tmp_path, ("a", "c"), loop, slow)
    try:
        callee = yield connect_ws(nodes["c"])
        yield callee.register(named("c"), "com.stopping")
        asker = yield connect_ws(nodes["a"])
        yield callees_seen(asker, "com.stopping", 1)
        yield threads.deferToThread(nodes["c"].stop)
        yield callees_seen(asker, "com.stopping", 0, seconds=PATIENCE)
        asker.leave()
    finally:
        yield threads.deferToThread(stop_cluster, nats, nodes)


@pytest_twisted.inlineCallbacks
def test_nats_restarted_calls_work_again_and_the_directory_resyncs(tmp_path, loop):
    nats, nodes = yield threads.deferToThread(start_cluster, tmp_path, ("a", "b"), loop)
    try:
        callee = yield connect_ws(nodes["b"])
        yield callee.register(named("b"), "com.kept")
        leaver = yield connect_ws(nodes["b"])
        yield leaver.register(named("leaver"), "com.left.in.outage")
        local_caller = yield connect_ws(nodes["b"])
        caller = yield connect_ws(nodes["a"])
        yield callees_seen(caller, "com.kept", 1)
        yield callees_seen(caller, "com.left.in.outage", 1)
        mark = len(nodes["b"].all_output)
        yield threads.deferToThread(nats.stop)
        yield threads.deferToThread(nodes["b"].wait_output, "cluster: node b lost NATS", 30, mark)
        # Local calls go on; a REGISTER needing the directory is refused, saying why.
        assert (yield local_caller.call("com.kept")) == "b"
        with pytest.raises(ApplicationError) as refused:
            yield local_caller.register(named("late"), "com.late")
        assert refused.value.error == "wamp.error.unavailable" and "NATS" in refused.value.args[0]
        leaver.leave()  # its entry stays in the directory until b resyncs
        yield threads.deferToThread(nats.start)
        yield threads.deferToThread(nodes["b"].wait_output, "cluster: node b reconnected to NATS", 30, mark)
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                assert (yield caller.call("com.kept")) == "b"
                break
            except ApplicationError:
                if time.monotonic() > deadline:
                    raise
                yield pause(0.1)
        yield callees_seen(caller, "com.left.in.outage", 0)
        yield local_caller.register(named("late"), "com.late")
        yield callees_seen(caller, "com.late", 1)
        assert (yield caller.call("com.late")) == "late"
        leave(callee, local_caller, caller)
    finally:
        yield threads.deferToThread(stop_cluster, nats, nodes)


@pytest_twisted.inlineCallbacks
def test_registers_on_their_way_to_the_directory_count_against_max_registrations(tmp_path):
    nats = NatsServer(tmp_path)
    nats.start()
    realms = '[[realms]]\nname = "realm1"\n[realms.limits]\nmax_registrations = 2\n'
    node = Node(tmp_path, "a", nats.url, realms=realms, extra=BEATS)
    try:
        yield threads.deferToThread(node.start)
        raw = yield connect_raw(node)
        yield raw.hello()
        for request in range(1, 6):  # all sent before the directory answered any
            raw.send([64, request, {}, f"com.limited.p{request}"])
        answers = []
        for _ in range(5):
            answers.append((yield raw.next()))
        assert sorted(a[0] for a in answers) == [8, 8, 8, 65, 65]
        assert all(a[4] == "relayrouter.error.limit_exceeded" for a in answers if a[0] == 8)
        raw.protocol.sendClose()
    finally:
        yield threads.deferToThread(node.stop)
        yield threads.deferToThread(nats.stop)


@pytest_twisted.inlineCallbacks
def test_without_jetstream_registrations_and_calls_stay_on_their_node(tmp_path):
    nats = NatsServer(tmp_path, jetstream=False)
    nats.start()
    nodes = {}
    try:
        for name in ("a", "b"):
            nodes[name] = Node(tmp_path, name, nats.url, extra=BEATS)
            yield threads.deferToThread(nodes[name].start)
        callee = yield connect_ws(nodes["b"])
        yield callee.register(named("b"), "com.here")
        local_caller = yield connect_ws(nodes["b"])
        assert (yield local_caller.call("com.here")) == "b"
        other = yield connect_ws(nodes["a"])
        yield other.register(named("a"), "com.here")  # exclusive per node only, as said in the log
        assert (yield other.call("com.here")) == "a"
        for node in nodes.values():
            assert any("no JetStream" in line and "stay on their node" in line for line in node.all_output)
        leave(callee, local_caller, other)
    finally:
        for node in nodes.values():
            yield threads.deferToThread(node.stop)
        yield threads.deferToThread(nats.stop)
