"""Configured reports over HTTP and WAMP, with the real router and connector processes."""

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from .support import TICKETS, connect_publisher, connect_ws_url, get, until_stored
from .test_end_to_end import connectors, doc, publish_all, router, world  # noqa: F401 (fixtures)

REPORTS = """
[[reports]]
name = "revenue"
field = "amount"
by = ["status"]
metrics = ["count", "sum", "avg", "min", "max", "p50", "p95"]

[[reports]]
name = "daily_by_city"
field = "amount"
by = ["city"]
bucket = "day"
metrics = ["sum"]
"""


@pytest_twisted.inlineCallbacks
def test_reports_over_http_and_wamp(world, router, connectors):  # noqa: F811
    acme = connectors("acme", extra=REPORTS)
    publisher = yield connect_publisher(router)
    amounts = {1: (10.0, "new", "Lyon", "blue vase"), 2: (20.0, "new", "Paris", "red vase"),
               3: (30.0, "paid", "Lyon", "chair"), 4: (40.0, "paid", "Lyon", "blue chair"),
               5: (100.0, "paid", "Nice", "table")}
    yield publish_all(publisher, world, [(doc(n, a, s, c, note), ["acme"]) for n, (a, s, c, note) in amounts.items()])
    yield until_stored(acme, 5)
    revenue = yield get(acme, "/reports/revenue")
    assert revenue["groups"] == [
        {"status": "new", "count": 2, "sum": 30.0, "avg": 15.0, "min": 10.0, "max": 20.0, "p50": 10.0, "p95": 20.0},
        {"status": "paid", "count": 3, "sum": 170.0, "avg": 170.0 / 3, "min": 30.0, "max": 100.0, "p50": 40.0,
         "p95": 100.0}]
    filtered = yield get(acme, "/reports/revenue", {"q": "blue", "city": "Lyon"})
    assert [(g["status"], g["sum"]) for g in filtered["groups"]] == [("new", 10.0), ("paid", 40.0)]
    daily = yield get(acme, "/reports/daily_by_city")
    per_city = {}  # summed over the day buckets: the test may run across midnight
    for g in daily["groups"]:
        per_city[g["city"]] = per_city.get(g["city"], 0) + g["sum"]
    assert per_city == {"Lyon": 80.0, "Nice": 100.0, "Paris": 20.0} and len(daily["groups"]) in (3, 4, 5, 6)
    assert all(g["start"] % 86400 == 0 for g in daily["groups"])
    missing = yield get(acme, "/reports/nope", expect=404)
    assert missing["message"] == "use /reports/<name> with a configured report (revenue, daily_by_city)"
    bad = yield get(acme, "/reports/revenue", {"amount.near": "3"}, expect=400)
    assert bad["message"].startswith("amount.near: unknown operator")
    unauthorized = yield get(acme, "/reports/revenue", bearer=False, expect=401)
    assert unauthorized["error"]

    caller = yield connect_ws_url(router, authmethods=["ticket"], authid="globex-connector",
                                  ticket=TICKETS["globex"])
    over_wamp = yield caller.call("com.acme.records.report", "revenue", **{"q": "blue", "city": "Lyon"})
    assert over_wamp["groups"] == filtered["groups"]
    with pytest.raises(ApplicationError) as caught:
        yield caller.call("com.acme.records.report", "nope")
    assert caught.value.error == "wamp.error.invalid_argument" and "not a configured report" in caught.value.args[0]
    publisher.leave()
    caller.leave()
