"""bench/cluster.py's projection to N nodes gives back the costs it was
derived from: one node is the same-node run, two nodes average a same-node
pair and a pair across, and the 1 -> 100 model reproduces the 2- and 3-node
runs it was fitted to.  Arithmetic, not a timing."""

import pytest

from bench import cluster


def row(topology, scenario, **costs):
    return {"topology": f"thread: {topology}", "scenario": scenario, **{f"us_{k}": v for k, v in costs.items()}}


RESULTS = [
    row("alone (no [cluster])", "pubsub_1to1", A=30.0),
    row("2 nodes, same node", "pubsub_1to1", A=50.0, B=0.0),
    row("2 nodes, across", "pubsub_1to1", A=35.0, B=20.0, nats=5.0),
    row("alone (no [cluster])", "pubsub_fanout", A=2.5),
    row("2 nodes, same node", "pubsub_fanout", A=3.0),
    row("2 nodes, across", "pubsub_fanout", A=0.5, B=2.6, nats=0.2),
    row("3 nodes, across", "pubsub_fanout", A=0.5, B=1.4, C=1.4, nats=0.3),
]


def by(scenario, nodes):
    return next(p for p in cluster.project(RESULTS, "thread") if p["scenario"] == scenario and p["nodes"] == nodes)


def test_one_to_one():
    assert by("1->1", 1)["us_per_event"] == pytest.approx(50.0)
    two = by("1->1", 2)
    assert two["us_per_event"] == pytest.approx((50.0 + 55.0) / 2)
    assert two["events_per_s"] == pytest.approx(2e6 / 52.5)
    assert two["vs_alone"] == pytest.approx((2e6 / 52.5) / (1e6 / 30.0))
    assert two["nats_cores"] == pytest.approx(two["events_per_s"] * 0.5 * 5.0 / 1e6)
    assert by("1->1", 16)["us_per_event"] == pytest.approx(50.0 / 16 + 55.0 * 15 / 16)


def test_fan_out_gives_back_what_it_was_fitted_to():
    assert by("1->100", 1)["us_per_event"] == pytest.approx(3.0)  # all 100 on the publisher's node
    # The fitted per-node costs give back the 2- and 3-node across runs:
    p, e = 100 * 0.5, (300 - 50) / 100
    f = (260 - 140) / 50
    r = 260 - 100 * f
    assert r + 100 * f == pytest.approx(260) and r + 50 * f == pytest.approx(140)
    two = by("1->100", 2)
    assert two["us_per_event"] * 100 == pytest.approx(p + 50 * e + r + 50 * f)
    # nats-server: 100 * 0.3 / 2 µs per publication and receiving node
    assert two["nats_cores"] == pytest.approx(15.0 * two["events_per_s"] / 100 / 1e6)


def test_missing_runs_project_nothing():
    assert cluster.project(RESULTS[:2], "thread") == []
    assert cluster.project(RESULTS, "reactor") == []
