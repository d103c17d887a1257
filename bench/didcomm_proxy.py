"""What ``twistd mediator-proxy didcomm`` adds between a DIDComm mediator and an agent.

    python bench/didcomm_proxy.py [--messages 200] [--latency 20] [--backlog 200]

Three ACA-Py agents (``RELAYROUTER_ACAPY``, as the test suite uses): M, an
external mediator (``--open-mediation``); B, the receiving agent; A, the
sender. Two set-ups, each measured the same way:

* **direct**: B's mediator is M itself (B reachable by M, which posts to it);
* **proxy**: B's mediator is the proxy, set up from M's invitation; M routes
  to the proxy, the proxy unwraps and posts to B.

A third figure, **pickup drain**: M with Message Pickup 2.0 (Indicio's
``acapy-plugin-pickup``), the proxy stopped while A sends ``--backlog``
messages (they wait in M's queue), then started: messages per second from
its start to the last arrival at B, each picked up, committed, acknowledged
to M and posted to B.

Rate: A sends ``--messages`` basic messages back to back through its admin
API; messages per second from the first send to the last arrival at B's
webhook. Latency: ``--latency`` messages one at a time, each sent after the
previous arrived; the median and the largest send-to-arrival time. Every
process runs on this machine, so read the figures as relative.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.connectors.test_mediator_proxy_acapy import AcaPy, Webhooks, free_port  # noqa: E402
from tests.connectors.test_mediator_proxy_didcomm import (DidcommProxy, connect_agent_behind_the_proxy,  # noqa: E402
                                                          connect_outside_peer, wait_for)
from tests.connectors.test_mediator_proxy_pickup import NOT_REQUEUED  # noqa: E402


def mediator(tmp: Path, webhooks, procs, extra=()):
    port, ws = free_port(), free_port()
    m = AcaPy("m", tmp / "home-m", [f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{ws}"], port, webhooks, extra=[
        "--inbound-transport", "ws", "127.0.0.1", str(ws), "--outbound-transport", "ws", "--open-mediation",
        "--enable-undelivered-queue", *extra])
    procs.append(m)
    m.start()
    return m


def direct_b(m, tmp: Path, webhooks, procs):
    port = free_port()
    b = AcaPy("b", tmp / "home-b", f"http://127.0.0.1:{port}", port, webhooks)
    procs.append(b)
    b.start()
    invitation = m.call("POST", "/connections/create-invitation", {})["invitation"]
    connection = b.call("POST", "/connections/receive-invitation", invitation)["connection_id"]
    wait_for("B's connection to M", lambda: b.call("GET", f"/connections/{connection}")["state"] == "active")
    record = b.call("POST", f"/mediation/request/{connection}", {})
    wait_for("mediation", lambda: b.call("GET", f"/mediation/requests/{record['mediation_id']}")["state"]
             == "granted")
    b.call("PUT", f"/mediation/{record['mediation_id']}/default-mediator")
    return b


def measure(b, tmp: Path, webhooks, procs, messages: int, latency: int) -> dict:
    _, a, conn = connect_outside_peer(b, webhooks, procs, tmp)
    b.active_connection()
    arrived = lambda: [body["content"] for t, body in webhooks.events["b"] if t == "basicmessages"]  # noqa: E731
    start = time.monotonic()
    for i in range(messages):
        a.say(conn, f"rate {i}")
    with webhooks.changed:  # held while counting, released while waiting: no wake-up missed
        while sum(1 for c in arrived() if c.startswith("rate ")) < messages:
            webhooks.changed.wait(1.0)
            if time.monotonic() - start > 600:
                raise SystemExit(f"only {len(arrived())} of {messages} arrived")
    rate = messages / (time.monotonic() - start)
    times = []
    for i in range(latency):
        sent = time.monotonic()
        a.say(conn, f"latency {i}")
        webhooks.basic_message("b", f"latency {i}", 60)  # woken by the webhook itself, no polling step
        times.append((time.monotonic() - sent) * 1000)
    return {"rate": rate, "p50_ms": statistics.median(times), "max_ms": max(times)}


def drain(proxy, m, b, tmp: Path, webhooks, procs, backlog: int) -> dict:
    _, a, conn = connect_outside_peer(b, webhooks, procs, tmp)
    b.active_connection()
    proxy.stop()
    failed = len(NOT_REQUEUED.findall(m.output()))
    for i in range(backlog):
        a.say(conn, f"backlog {i}")
    wait_for("the backlog queued at M", lambda: len(NOT_REQUEUED.findall(m.output())) >= failed + backlog, 600)
    start = time.monotonic()
    proxy.start()
    with webhooks.changed:
        while sum(1 for t, body in webhooks.events["b"] if t == "basicmessages"
                  and body["content"].startswith("backlog ")) < backlog:
            webhooks.changed.wait(1.0)
            if time.monotonic() - start > 600:
                raise SystemExit("the backlog did not arrive within 600 s")
    return {"rate": backlog / (time.monotonic() - start)}


def run(kind: str, args) -> dict:
    procs, webhooks = [], Webhooks()
    tmp = Path(tempfile.mkdtemp(prefix=f"didcomm-bench-{kind}-"))
    try:
        pickup = ["--plugin", "acapy_plugin_pickup", "--max-outbound-retry", "1"] if kind == "pickup" else []
        m = mediator(tmp, webhooks, procs, pickup)
        if kind == "direct":
            b = direct_b(m, tmp, webhooks, procs)
        else:
            invite = m.call("POST", "/connections/create-invitation", {})["invitation_url"]
            proxy = DidcommProxy(tmp, {"MEDIATOR_INVITE": invite})
            procs.append(proxy)
            proxy.start()
            b = connect_agent_behind_the_proxy(proxy, webhooks, procs, tmp)
            if kind == "pickup":
                return drain(proxy, m, b, tmp, webhooks, procs, args.backlog)
        return measure(b, tmp, webhooks, procs, args.messages, args.latency)
    finally:
        for proc in reversed(procs):
            proc.stop()
        webhooks.server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--latency", type=int, default=20)
    parser.add_argument("--backlog", type=int, default=200)
    args = parser.parse_args()
    for kind in ("direct", "proxy"):
        result = run(kind, args)
        print(f"{kind:6}  {result['rate']:6.1f} messages/s   latency p50 {result['p50_ms']:6.1f} ms"
              f"   max {result['max_ms']:6.1f} ms", flush=True)
    print(f"pickup drain  {run('pickup', args)['rate']:6.1f} messages/s", flush=True)


if __name__ == "__main__":
    main()
