"""``[cluster] prefer_local_callees``: roundrobin and random pick a callee on
the caller's own node when there is one, and any of the cluster's callees
when there is none."""

import pytest
import pytest_twisted
from autobahn.wamp.types import RegisterOptions

from ..support import connect_ws
from .harness import nats_and_nodes
from .test_cluster_calls import callees_seen, leave, named

PREFER = "prefer_local_callees = true\n"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster-local-callees")
    yield from nats_and_nodes(tmp, extra=PREFER)


@pytest_twisted.inlineCallbacks
def register_on(nodes, where, procedure, invoke):
    """One callee per entry of ``where`` (node names), answering ``<node><n>``; the sessions."""
    sessions = []
    for i, name in enumerate(where):
        callee = yield connect_ws(nodes[name])
        yield callee.register(named(f"{name}{i}"), procedure, options=RegisterOptions(invoke=invoke))
        sessions.append(callee)
    return sessions


@pytest_twisted.inlineCallbacks
def answers(caller, procedure, count):
    found = []
    for _ in range(count):
        found.append((yield caller.call(procedure)))
    return found


@pytest.mark.parametrize("invoke", ["roundrobin", "random"])
@pytest_twisted.inlineCallbacks
def test_a_callee_on_the_callers_node_is_preferred(cluster, invoke):
    nats, nodes = cluster
    procedure = f"com.local.{invoke}"
    callees = yield register_on(nodes, "abb", procedure, invoke)  # a0 on a; b1, b2 on b
    callers = {}
    for name in "abc":
        callers[name] = yield connect_ws(nodes[name])
        yield callees_seen(callers[name], procedure, 3)
    on_a = yield answers(callers["a"], procedure, 6)
    assert on_a == ["a0"] * 6  # never the two callees on b
    on_b = yield answers(callers["b"], procedure, 6)
    assert set(on_b) <= {"b1", "b2"}
    if invoke == "roundrobin":
        assert on_b == ["b1", "b2"] * 3  # rotating among b's own callees
    on_c = yield answers(callers["c"], procedure, 60 if invoke == "random" else 6)
    if invoke == "roundrobin":
        assert on_c == ["a0", "b1", "b2"] * 2  # none on c: the whole cluster's, in registration order
    else:
        assert set(on_c) == {"a0", "b1", "b2"}
    leave(*callees, *callers.values())


@pytest_twisted.inlineCallbacks
def test_first_and_last_keep_the_clusters_registration_order(cluster):
    """The preference is for roundrobin and random only: first is first cluster-wide."""
    nats, nodes = cluster
    callees = yield register_on(nodes, "ab", "com.local.first", "first")
    caller = yield connect_ws(nodes["b"])
    yield callees_seen(caller, "com.local.first", 2)
    assert (yield answers(caller, "com.local.first", 3)) == ["a0"] * 3
    leave(*callees, caller)
