"""``twistd mediator-proxy didcomm`` retrieving with Message Pickup 2.0 from a real ACA-Py mediator.

M is ACA-Py 0.12.8 with Indicio's ``acapy-plugin-pickup`` (``messagepickup/2.0``:
status-request, delivery-request, messages-received over its undelivered
queue); B is the agent behind the proxy, A the outside peer, as in
``test_mediator_proxy_didcomm.py``.  The seed retrieves only with trust
pings (``proxy_mediator/message_retriever.py``), whose messages the mediator
deletes as it sends them; with Pickup 2.0 the mediator deletes only what the
proxy acknowledged, and the proxy acknowledges only what it committed.
"""

import re
import time

import pytest

from .processes import Child
from .test_mediator_proxy_acapy import AcaPy, Webhooks, acapy_installed, free_port  # noqa: F401 (autouse fixture)
from .test_mediator_proxy_didcomm import (DidcommProxy, connect_agent_behind_the_proxy, connect_outside_peer,
                                          received, wait_for)

pytestmark = pytest.mark.timeout(900)
NOT_REQUEUED = re.compile(r"Outbound message failed to deliver, NOT Re-queued")


@pytest.fixture
def pickup_deployment(tmp_path):
    """M with the pickup plugin; one retry of a failed POST, so what the proxy (killed) does not take
    waits in M's queue for pickup 10 s later instead of 40 s."""
    procs = []
    webhooks = Webhooks()
    m_port, m_ws = free_port(), free_port()
    mediator = AcaPy("m", tmp_path / "home-m", [f"http://127.0.0.1:{m_port}", f"ws://127.0.0.1:{m_ws}"], m_port,
                     webhooks, extra=["--inbound-transport", "ws", "127.0.0.1", str(m_ws), "--outbound-transport", "ws",
                                      "--open-mediation", "--enable-undelivered-queue", "--plugin",
                                      "acapy_plugin_pickup", "--max-outbound-retry", "1"])
    procs.append(mediator)
    mediator.start()
    invite = mediator.call("POST", "/connections/create-invitation", {})["invitation_url"]
    proxy = DidcommProxy(tmp_path, {"MEDIATOR_INVITE": invite})
    procs.append(proxy)
    yield mediator, proxy, webhooks, procs, tmp_path
    for proc in reversed(procs):
        proc.stop()
    webhooks.server.shutdown()


def queued_at_the_mediator(mediator: Child, count: int) -> None:
    wait_for(f"{count} forwards queued at the mediator",
             lambda: len(NOT_REQUEUED.findall(mediator.output())) >= count, 120)


@pytest.mark.scenario  # ACA-Py agents, a kill -9 and a restart
def test_pickup_2_0_is_chosen_and_a_kill_9_mid_retrieval_loses_nothing(pickup_deployment):
    mediator, proxy, webhooks, procs, tmp_path = pickup_deployment
    proxy.start()
    b = connect_agent_behind_the_proxy(proxy, webhooks, procs, tmp_path)
    wait_for("retrieval chosen", lambda: proxy.counters()["retrieval"])
    assert proxy.counters()["retrieval"] == "pickup-2.0"
    invitation, a, a_conn = connect_outside_peer(b, webhooks, procs, tmp_path)
    for i in range(5):
        a.say(a_conn, f"first {i}")
    received(webhooks, 5)

    # B away, the proxy killed: what A sends now waits in the mediator's queue.
    b.stop()
    proxy.kill9()
    failed_before = len(NOT_REQUEUED.findall(mediator.output()))
    for i in range(40):
        a.say(a_conn, f"queued {i:02d}")
    queued_at_the_mediator(mediator, failed_before + 40)

    # The proxy picks them up in batches of 10; killed once it committed some, not all.
    proxy.start()
    deadline = time.monotonic() + 120
    while (spooled := proxy.counters()["spooled"]) == 0:  # polled tightly: the 40 take about a second
        assert time.monotonic() < deadline, f"nothing picked up within 120 s\n{proxy.describe()}"
        time.sleep(0.01)
    proxy.kill9()
    proxy.start()
    proxy.wait_status("ready")
    status = wait_for("all 40 spooled", lambda: (lambda s: s if s["spooled"] >= 40 else None)(proxy.counters()), 120)
    assert status["retrieval"] == "pickup-2.0" and status["spooled"] <= 41, (spooled, status)
    b.start()
    got = received(webhooks, 45)
    wanted = [f"first {i}" for i in range(5)] + [f"queued {i:02d}" for i in range(40)]
    assert sorted(set(got)) == sorted(wanted)  # nothing lost
    assert len(got) - len(set(got)) <= 1, sorted(got)  # at most one repeat
    assert proxy.counters()["dead_letters"] == 0


def test_a_mediator_away_at_the_proxys_start_is_asked_again_until_it_is_back(pickup_deployment):
    """The seed exits when the mediator's socket closes; here the proxy starts while M is down, keeps
    asking which pickup M offers (with backoff), chooses Pickup 2.0 once M is back, and A's messages
    reach B."""
    mediator, proxy, webhooks, procs, tmp_path = pickup_deployment
    proxy.start()
    b = connect_agent_behind_the_proxy(proxy, webhooks, procs, tmp_path)
    invitation, a, a_conn = connect_outside_peer(b, webhooks, procs, tmp_path)
    a.say(a_conn, "before")
    received(webhooks, 1)
    proxy.stop()
    mediator.stop()
    proxy.start()
    proxy.wait_for("cannot ask the mediator which pickup it offers")
    assert proxy.counters()["retrieval"] is None and not proxy.counters()["mediator_socket"]
    mediator.start()
    wait_for("Pickup 2.0 chosen once M is back", lambda: proxy.counters()["retrieval"] == "pickup-2.0", 90)
    wait_for("a pickup round done", lambda: proxy.counters()["mediator_socket"], 30)
    for i in range(10):
        a.say(a_conn, f"after {i}")
    got = received(webhooks, 11)
    assert sorted(got) == sorted(["before"] + [f"after {i}" for i in range(10)])
