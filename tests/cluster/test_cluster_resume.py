"""``cluster.resume_window`` and ``cluster.resume_limit`` on a real nats-server:
a node back on NATS within its window keeps its key-value watches (shared state
and registration directory), one back later makes them anew, and a kept watch
that does not show a live consumer within the limit is made anew too.

The NATS server is first stopped for longer than the default window (5 s), so
the node with the default makes its watches anew while those with a longer
window keep them: the setting, not the outage, decides.  Then it comes back
without its store (the buckets lost with it): a kept watch cannot resume until
a node makes the buckets anew, and the node with a short limit gives up on it
(and makes them) long before the others would."""

import re
import shutil
import time
import urllib.request

import pytest

from .harness import PATIENCE, NatsServer, Node, stop_all

OUTAGE = 6.5  # seconds without NATS: more than the default resume_window


def metric(node, name: str, **labels) -> float:
    with urllib.request.urlopen(f"{node.http_url}/metrics", timeout=5) as r:
        text = r.read().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}(\{{{re.escape(wanted)}\}})? (\S+)$", text, re.M)
    return float(found.group(2)) if found else 0.0


def said(node, pattern: str, after: int) -> bool:
    return any(re.search(pattern, line) for line in node.all_output[after:])


@pytest.mark.timeout(300)
def test_the_resume_window_and_limit_decide_whether_watches_are_kept(tmp_path):
    nats = NatsServer(tmp_path)
    nats.start()
    nodes = {
        "keeper": Node(tmp_path, "keeper", nats.url, extra="resume_window = 60\n"),
        "default": Node(tmp_path, "default", nats.url),
        "hasty": Node(tmp_path, "hasty", nats.url, extra="resume_window = 60\nresume_limit = 2\n"),
    }
    try:
        for node in nodes.values():
            node.start()
        marks = {name: len(node.all_output) for name, node in nodes.items()}
        before = {name: (metric(node, "relayrouter_cluster_state_resumes_total"),
                         metric(node, "relayrouter_cluster_state_resyncs_total"),
                         metric(node, "relayrouter_cluster_directory_total", kind="resumes"))
                  for name, node in nodes.items()}
        nats.stop()
        time.sleep(OUTAGE)
        nats.start()
        for name, node in nodes.items():
            node.wait_output(rf"cluster: node {name} reconnected to NATS", PATIENCE, marks[name])

        keeper, default, hasty = nodes["keeper"], nodes["default"], nodes["hasty"]
        keeper.wait_output(r"cluster: node keeper kept its watches of the shared state", PATIENCE, marks["keeper"])
        keeper.wait_output(r"cluster: node keeper's watches of the shared state resumed [0-9.]+ s after",
                           PATIENCE, marks["keeper"])
        default.wait_output(r"cluster: node default synced its shared state with JetStream", PATIENCE,
                            marks["default"])
        hasty.wait_output(r"cluster: node hasty's watches of the shared state resumed", PATIENCE, marks["hasty"])
        assert not said(default, "kept its watches", marks["default"])
        assert not said(keeper, "synced its shared state with JetStream", marks["keeper"])

        deadline = time.monotonic() + PATIENCE
        while metric(keeper, "relayrouter_cluster_directory_total", kind="resumes") <= before["keeper"][2]:
            assert time.monotonic() < deadline, "the keeper did not keep its registration directory's watch"
            time.sleep(0.1)
        after = {name: (metric(node, "relayrouter_cluster_state_resumes_total"),
                        metric(node, "relayrouter_cluster_state_resyncs_total"),
                        metric(node, "relayrouter_cluster_directory_total", kind="resumes"))
                 for name, node in nodes.items()}
        assert after["keeper"][:2] == (before["keeper"][0] + 1, before["keeper"][1])
        assert after["default"] == (before["default"][0], before["default"][1] + 1, before["default"][2])

        marks = {name: len(node.all_output) for name, node in nodes.items()}
        nats.stop()
        shutil.rmtree(nats.store)
        nats.store.mkdir()
        nats.start()
        hasty.wait_output(r"cluster: node hasty kept its watches of the shared state", PATIENCE, marks["hasty"])
        started = time.monotonic()
        hasty.wait_output(r"cluster: node hasty's watches of the shared state did not resume within 2 s; "
                          r"making them anew", PATIENCE, marks["hasty"])
        hasty.wait_output(r"cluster: node hasty synced its shared state with JetStream", PATIENCE, marks["hasty"])
        # The keeper (30 s, the default limit) is still asking; once the hasty node made the
        # buckets anew, its watches find them again.
        assert time.monotonic() - started < 25, "the hasty node took too long to give up to compare"
        assert not said(keeper, "did not resume", marks["keeper"])
    finally:
        stop_all(nats, nodes)
