"""/ready on a node whose buckets lost their quorum, on a real three-server NATS
cluster: with two of the three servers dead, the node (still connected to the
third) answers 503 naming the buckets that cannot serve; with one of them back,
200 again."""

import time

import pytest

from .harness import PATIENCE, NatsCluster, Node, ready

# /ready asks JetStream about each bucket every heartbeat_ttl; two failed checks in a row list it.
BEATS = "heartbeat_interval = 0.25\nheartbeat_ttl = 1.0\n"
READY_BOUND = 120.0  # elections after a server's return take seconds, up to a minute on a loaded machine


def wait_ready(node, wanted, seconds: float) -> dict:
    """Until /ready answers ``wanted(code, body)``; its last body."""
    deadline = time.monotonic() + seconds
    while True:
        code, body = ready(node)
        if wanted(code, body):
            return body
        assert time.monotonic() < deadline, (code, body)
        time.sleep(0.1)


def cannot_serve(body: dict) -> list[str]:
    return [p for p in body.get("problems") or () if "JetStream bucket" in p and "cannot serve" in p]


@pytest.mark.timeout(600)
def test_ready_names_the_buckets_without_a_quorum(tmp_path):
    nats = NatsCluster(tmp_path)
    nats.start()
    node = Node(tmp_path, "a", nats.servers[0].url, extra=BEATS)
    try:
        node.start()
        wait_ready(node, lambda code, body: code == 200, READY_BOUND)
        for server in nats.servers[1:]:
            server.kill9()
        # Each bucket is listed after its own two failed checks, so they come one after another:
        # until the registration directory is among them.
        body = wait_ready(node, lambda code, body: code == 503 and any(
            "relayrouter_reg'" in p for p in cannot_serve(body)), PATIENCE)
        assert all("no quorum" in p or "did not answer" in p for p in cannot_serve(body)), body

        nats.servers[1].start()
        nats.wait_jetstream()
        wait_ready(node, lambda code, body: code == 200, READY_BOUND)
    finally:
        node.stop()
        nats.stop()
