"""The deny list across nodes: a denial made on node a ends the matching
session on node b within a second and refuses it on node c; lifting it on
one node lifts it everywhere."""

import time

import pytest
import pytest_twisted

from ..support import LeftBeforeJoining, connect_ws, within
from .harness import LOAD_SLACK, LOOPS, PATIENCE, NatsServer, Node, sleep, stop_all

ADMIN, DEV = "admin-ticket-0123456789", "dev-ticket-0123456789"
REALMS = """
[revocation]
admin_roles = ["admin"]
close_grace = 1

[[realms]]
name = "lab"
[realms.auth.ticket]
principals = [{ authid = "ops", role = "admin", secret_env = "ADMIN_TICKET" },
              { authid = "dev", role = "device", secret_env = "DEV_TICKET" }]
[[realms.roles]]
name = "admin"
rules = [{ uri = "relayrouter.denylist.", match = "prefix", allow = ["call"] }]
[[realms.roles]]
name = "device"
rules = [{ uri = "com.", match = "prefix", allow = ["subscribe", "publish"] }]
"""


@pytest.fixture(scope="module", params=LOOPS)
def cluster(tmp_path_factory, request):
    """Three nodes with nats-py on a loop thread, or on the asyncio reactor's loop."""
    tmp = tmp_path_factory.mktemp(f"cluster-deny-{request.param}")
    nats = NatsServer(tmp)
    nats.start()
    nodes = {}
    try:
        for name in ("a", "b", "c"):
            nodes[name] = Node(tmp, name, nats.url, REALMS, env={"ADMIN_TICKET": ADMIN, "DEV_TICKET": DEV},
                               loop=request.param)
            nodes[name].start()
        yield nats, nodes
    finally:
        stop_all(nats, nodes)


def join(node, authid, ticket):
    return connect_ws(node, realm="lab", authmethods=["ticket"], authid=authid, ticket=ticket)


@pytest_twisted.inlineCallbacks
def test_a_denial_on_one_node_ends_the_session_on_another_and_is_lifted_everywhere(cluster):
    nats, nodes = cluster
    admin = yield join(nodes["a"], "ops", ADMIN)
    dev = yield join(nodes["b"], "dev", DEV)
    started = time.monotonic()
    result = yield admin.call("relayrouter.denylist.add", claim="authid", value="dev", ttl=600, reason="lost laptop")
    assert result["sessions_closed"] == 0  # this node only: nobody on node a itself
    details = yield within(dev.left, PATIENCE)
    assert details.reason == "wamp.close.revoked"
    assert time.monotonic() - started < 1.0 + LOAD_SLACK  # within a second on a machine not overloaded
    # Node c learnt it too: the credential is refused there.
    with pytest.raises(LeftBeforeJoining) as refused:
        yield join(nodes["c"], "dev", DEV)
    assert refused.value.reason == "wamp.error.not_authorized" and "revoked" in refused.value.message
    # Lifted on node c: node b admits the credential again.
    ops_c = yield join(nodes["c"], "ops", ADMIN)
    yield ops_c.call("relayrouter.denylist.remove", claim="authid", value="dev")
    again = None
    for _ in range(100):
        try:
            again = yield join(nodes["b"], "dev", DEV)
            break
        except LeftBeforeJoining:
            yield sleep(0.02)
    assert again is not None, "node b never admitted the credential again"
    listed = yield admin.call("relayrouter.denylist.list")
    assert listed["entries"] == []
    for session in (admin, ops_c, again):
        session.leave()
