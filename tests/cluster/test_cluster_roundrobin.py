"""One roundrobin rotation for the whole cluster (cluster/turns.py): callers on two
nodes taking turns at a registration with a callee on each node get the callees in
turn, as callers on one router would; random draws from every node's callees."""

import time

import pytest
import pytest_twisted
from autobahn.wamp.types import RegisterOptions
from twisted.internet import defer, threads

from ..support import connect_ws
from .harness import PATIENCE, nats_and_nodes, sleep
from .test_cluster_calls import callees_seen, leave, named
from .test_cluster_view import metric

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster-roundrobin")
    yield from nats_and_nodes(tmp, names="ab")


def turns_heard(node) -> float:
    return metric(node, 'relayrouter_cluster_turns_total\\{direction="in"\\}')


@defer.inlineCallbacks
def heard_more_than(node, before: float):
    """Until ``node`` has heard more than ``before`` turns of the other nodes."""
    deadline = time.monotonic() + PATIENCE
    while (yield threads.deferToThread(turns_heard, node)) <= before:
        if time.monotonic() > deadline:
            raise AssertionError(f"node {node.name} heard no turn within {PATIENCE:g} s")
        yield sleep(0.05)


@pytest_twisted.inlineCallbacks
def test_callers_on_two_nodes_taking_turns_get_the_callees_in_turn(cluster):
    nats, nodes = cluster
    callees = []
    for name in "ab":
        callee = yield connect_ws(nodes[name])
        yield callee.register(named(name), "com.turns", options=RegisterOptions(invoke="roundrobin"))
        callees.append(callee)
    callers = {}
    for name in "ab":
        callers[name] = yield connect_ws(nodes[name])
        yield callees_seen(callers[name], "com.turns", 2)
    answers = []
    for i in range(8):
        here, there = ("a", "b") if i % 2 == 0 else ("b", "a")
        before = yield threads.deferToThread(turns_heard, nodes[there])
        answers.append((yield callers[here].call("com.turns")))
        yield heard_more_than(nodes[there], before)  # the other node knows of the turn before it calls
    # Alone, each node would keep its own position: a, a, b, b, a, a, b, b.
    assert answers in (["a", "b"] * 4, ["b", "a"] * 4), answers
    leave(*callees, *callers.values())


@pytest_twisted.inlineCallbacks
def test_turns_taken_on_one_node_move_the_other_nodes_position(cluster):
    """Three calls from a, then one from b: b's goes where a's fourth would have."""
    nats, nodes = cluster
    callees = []
    for name in "ab":
        callee = yield connect_ws(nodes[name])
        yield callee.register(named(name), "com.turns.moved", options=RegisterOptions(invoke="roundrobin"))
        callees.append(callee)
    callers = {}
    for name in "ab":
        callers[name] = yield connect_ws(nodes[name])
        yield callees_seen(callers[name], "com.turns.moved", 2)
    before = yield threads.deferToThread(turns_heard, nodes["b"])
    on_a = []
    for _ in range(3):
        on_a.append((yield callers["a"].call("com.turns.moved")))
    assert on_a == ["a", "b", "a"]
    yield heard_more_than(nodes["b"], before + 2)  # all three turns
    assert (yield callers["b"].call("com.turns.moved")) == "b"
    leave(*callees, *callers.values())


@pytest_twisted.inlineCallbacks
def test_random_draws_from_the_callees_of_every_node(cluster):
    nats, nodes = cluster
    callees = []
    for name in "ab":
        callee = yield connect_ws(nodes[name])
        yield callee.register(named(name), "com.turns.random", options=RegisterOptions(invoke="random"))
        callees.append(callee)
    caller = yield connect_ws(nodes["a"])
    yield callees_seen(caller, "com.turns.random", 2)
    drawn = []
    for _ in range(40):  # both are drawn but with a chance of 2 in 2^40
        drawn.append((yield caller.call("com.turns.random")))
    assert set(drawn) == {"a", "b"}, drawn
    leave(*callees, caller)
