"""Failed-login limits for the whole cluster: three nodes behind one address
(as behind a load balancer) give a guesser one allowance, not three; on one
NATS server, and with each node on its own server of a three-server NATS
cluster."""

import re
import time
import urllib.request

import pytest
import pytest_twisted

from ..support import LeftBeforeJoining, connect_ws
from .harness import PATIENCE, nats_and_nodes, sleep

DEV = "dev-ticket-0123456789"
BURST = 6
DENIED = "wrong authid or ticket"
REFUSED = "too many failed authentication attempts for this authid from your address"
REALMS = f"""
[auth_limits]
burst = {BURST}
per_minute = 0.1
address_burst = 100

[[realms]]
name = "lab"
[realms.auth.ticket]
principals = [{{ authid = "dev", role = "device", secret_env = "DEV_TICKET" }}]
"""


@pytest.fixture(scope="module", params=[1, 3], ids=["one-nats-server", "three-nats-servers"])
def cluster(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("cluster-login-limits")
    yield from nats_and_nodes(tmp, servers=request.param, realms=REALMS, env={"DEV_TICKET": DEV})


def limiter_metric(node, event: str) -> float:
    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = re.search(rf'^relayrouter_login_limiter_total\{{event="{event}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest_twisted.inlineCallbacks
def attempt(node, ticket):
    """'joined', or the ABORT's message."""
    try:
        session = yield connect_ws(node, realm="lab", authmethods=["ticket"], authid="dev", ticket=ticket)
    except LeftBeforeJoining as e:
        assert e.reason == "wamp.error.authentication_failed", (e.reason, e.message)
        return e.message
    session.leave()
    return "joined"


@pytest_twisted.inlineCallbacks
def heard_everywhere(nodes, failing_node, elsewhere_before: dict):
    """Until every node but ``failing_node`` counted one more failure from elsewhere."""
    deadline = time.monotonic() + PATIENCE
    others = [n for n in nodes.values() if n is not failing_node]
    while any(limiter_metric(n, "failures_elsewhere") <= elsewhere_before[n.name] for n in others):
        assert time.monotonic() < deadline, "a failure verified on one node never reached the others"
        yield sleep(0.02)


@pytest_twisted.inlineCallbacks
def test_three_nodes_give_one_allowance_not_three(cluster):
    nats, nodes = cluster
    order = [nodes[name] for name in ("a", "b", "c")] * BURST  # 3x the allowance, spread evenly
    outcomes = []
    for node in order:
        before = {n.name: limiter_metric(n, "failures_elsewhere") for n in nodes.values()}
        outcome = yield attempt(node, "a-guess")
        outcomes.append((node.name, outcome))
        if outcome == DENIED:
            yield heard_everywhere(nodes, node, before)
    checked = [o for o in outcomes if o[1] == DENIED]
    refused = [o for o in outcomes if o[1].startswith(REFUSED)]
    # Per node, every one of the 18 guesses would have been checked (6 per node).
    assert len(checked) == BURST, outcomes
    assert outcomes[:BURST] == checked and len(refused) == 2 * BURST, outcomes
    # The right ticket is a guessable secret: refused on every node while the budget is spent.
    for node in nodes.values():
        outcome = yield attempt(node, DEV)
        assert outcome.startswith(REFUSED), (node.name, outcome)
    # Each node verified its share and counted the others' (the metric an operator reads).
    for node in nodes.values():
        assert limiter_metric(node, "failures") == BURST / 3
        assert limiter_metric(node, "failures_elsewhere") == BURST * 2 / 3
