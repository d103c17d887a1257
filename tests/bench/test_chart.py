"""bench/run.py --chart: the ratios it draws come from each run's own relayrouter figures."""

from bench.chart import comparisons
from bench.run import SCENARIOS, median


def run(scenario, ser, router, **figures):
    return {"rep": 0, "scenario": scenario, "ser": ser, "router": router, **figures}


def test_ratios_are_to_relayrouter_of_the_same_run_and_inverted_where_lower_is_better():
    against_crossbar = {"meta": {}, "runs": [
        run("rpc_throughput", "json", "relayrouter", calls_per_s=20_000),
        run("rpc_throughput", "json", "crossbar", calls_per_s=5_000),
        run("rpc_latency", "json", "relayrouter", p50_us=400, p99_us=900),
        run("rpc_latency", "json", "crossbar", p50_us=800, p99_us=2000),
        run("pubsub_1to1", "msgpack", "relayrouter", error="RuntimeError: generator failed"),
        run("pubsub_1to1", "msgpack", "crossbar", events_per_s=7_000),
    ]}
    against_ceiling = {"meta": {}, "runs": [
        run("rpc_throughput", "json", "relayrouter", calls_per_s=10_000),  # a slower moment of the machine
        run("rpc_throughput", "json", "ceiling", calls_per_s=8_000),
    ]}
    panels = {p["scenario"]: p for p in comparisons([against_crossbar, against_ceiling], SCENARIOS, median)}
    assert set(panels) == {"rpc_throughput", "rpc_latency"}  # no relayrouter figure: nothing to compare
    throughput = panels["rpc_throughput"]["groups"]["json"]
    assert throughput == {"relayrouter": (1.0, 20_000, 20_000), "crossbar": (0.25, 5_000, 20_000),
                          "ceiling": (0.8, 8_000, 10_000)}
    latency = panels["rpc_latency"]
    assert latency["metric"] == "p50_us" and latency["better"] == "low"
    assert latency["groups"]["json"]["crossbar"] == (0.5, 800, 400)
