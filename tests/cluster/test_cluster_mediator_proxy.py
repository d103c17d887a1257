"""The mediator proxy on a cluster: its agent's mailbox put to through either
node's HTTP endpoint, taken through one node, then (that node killed with -9)
through the other, as a load balancer would send it; every message reaches the
agent, in the order it was put (the proxy's pickup never goes back below an
ID it finished)."""

import pytest

from ..connectors.processes import listener
from ..connectors.test_mediator_proxy_e2e import CONFIG, MAILBOX_SECRET, TICKETS, endpoint, first_seen, put, start_proxy
from ..connectors.test_mediator_proxy_e2e import agent, started  # noqa: F401 (fixtures)
from .harness import PATIENCE, NatsServer, Node, stop_all
from .test_cluster_mailboxes import pg_dsn  # noqa: F401 (a fixture)

REALM = CONFIG[len(listener()):]
ENV = {"AGENTB_TICKET": TICKETS["agentb"], "AGENTA_TICKET": TICKETS["agenta"], "MAILBOX_TOKEN_SECRET": MAILBOX_SECRET}


@pytest.fixture
def cluster(tmp_path, pg_dsn):  # noqa: F811
    nats = NatsServer(tmp_path)
    nats.start()
    nodes = {}
    try:
        for name in "ab":
            nodes[name] = Node(tmp_path, name, nats.url, realms=REALM, env=ENV,
                               extra=f'\n[storage]\ndsn = "{pg_dsn}"\n')
            nodes[name].start()
        yield nodes
    finally:
        stop_all(nats, nodes)


def test_the_agent_gets_every_message_in_order_through_either_node_and_a_kill_9(tmp_path, cluster, agent, started):  # noqa: F811
    a, b = cluster["a"], cluster["b"]
    proxy = start_proxy(tmp_path, b, agent, started)
    on_b = endpoint(proxy)
    on_a = on_b.replace(b.http_url, a.http_url)  # the same mailbox, its token the same on every node
    ids = [put(on_a if i % 2 else on_b, b"put %d" % i) for i in range(30)]
    assert ids == sorted(ids)  # numbered in commit order, whichever node took the POST
    seen = agent.wait_messages(lambda ms: len(first_seen(ms)) >= 30, PATIENCE)
    assert first_seen(seen) == ids and [m["body"] for m in seen[:4]] == ["put 0", "put 1", "put 2", "put 3"]

    # The proxy's node dies; posts go on through the other; the proxy is sent there.
    b.kill9()
    ids += [put(on_a, b"after %d" % i) for i in range(10)]
    proxy.stop()
    started.remove(proxy)
    start_proxy(tmp_path, a, agent, started)
    seen = agent.wait_messages(lambda ms: len(first_seen(ms)) >= 40, PATIENCE)
    assert first_seen(seen) == ids  # every message once at least, never one behind another put before it
    assert [m["body"] for m in seen if m["id"] == ids[-1]][0] == "after 9"
