"""The agent's I/O-free parts: Kafka-WS tickets, history query parsing and shaping."""

import pytest

from connectors.iot_agent.history import BadQuery, LegacyQuery, PageQuery
from connectors.iot_agent.kafka_ws import Tickets
from relayrouter.testing import FakeClock


def test_tickets_are_64_hex_single_use_and_expire():
    clock = FakeClock()
    tickets = Tickets(clock, lifetime=60)
    t = tickets.issue("acme", None)
    assert len(t) == 64 and int(t, 16) >= 0
    grant = tickets.take(t)
    assert grant.tenant == "acme"
    assert tickets.take(t) is None  # single use
    late = tickets.issue("acme", 5.0)
    clock.advance(61)
    assert tickets.take(late) is None
    assert tickets.take(None) is None and tickets.take("") is None and tickets.take("f" * 64) is None


def test_tickets_are_bounded():
    tickets = Tickets(FakeClock(), lifetime=60, max_tickets=2)
    tickets.issue("a", None)
    tickets.issue("a", None)
    with pytest.raises(OverflowError):
        tickets.issue("a", None)


@pytest.mark.parametrize("kwargs, words", [
    ({"order": "up"}, "order must be asc or desc"),
    ({"limit": "0"}, "limit must be a whole number from 1 to 256"),
    ({"limit": "257"}, "from 1 to 256"),
    ({"page": "x"}, "page must be a whole number"),
    ({"dateFrom": "yesterday"}, "dateFrom must be an ISO-8601"),
    ({"dateFrom": "2021-01-02T00:00:00Z", "dateTo": "2021-01-01T00:00:00Z"}, "dateFrom is after dateTo"),
])
def test_page_query_errors(kwargs, words):
    with pytest.raises(BadQuery, match=words):
        PageQuery.parse("d", None, **kwargs)


def test_page_query_answer_shape_and_paging():
    query = PageQuery.parse("d", None, limit="2", page="2", order="asc")
    answer = query.answer([(1000, {"t": 1}), (2000, {"t": 2})], 5, "/tss/v1/devices/d/data")
    assert answer["data"] == [{"ts": "1970-01-01T00:00:01.000Z", "attrs": [{"label": "t", "value": 1}]},
                              {"ts": "1970-01-01T00:00:02.000Z", "attrs": [{"label": "t", "value": 2}]}]
    paging = answer["paging"]
    assert (paging["totalItems"], paging["totalPages"], paging["limitPerPage"]) == (5, 3, 2)
    assert paging["previous"]["number"] == 1 and paging["next"]["number"] == 3
    assert paging["current"]["url"] == "/tss/v1/devices/d/data?page=2&limit=2&order=asc"
    attr = PageQuery.parse("d", "t").answer([(1000, {"t": 1})], 1, "/u")
    assert attr["data"] == [{"ts": "1970-01-01T00:00:01.000Z", "value": 1}]


def test_legacy_query_shapes():
    one = LegacyQuery.parse("d", ["t"], lastN="2")
    assert one.count == 2 and one.newest_first
    assert one.answer({"t": [(1000, 5)]}) == [{"device_id": "d", "attr": "t", "value": 5,
                                               "ts": "1970-01-01T00:00:01.000Z"}]
    assert one.answer({}) is None
    several = LegacyQuery.parse("d", "t,h", firstN="1")
    assert not several.newest_first
    assert several.answer({"t": [(1000, 5)]}) == {"t": [{"device_id": "d", "attr": "t", "value": 5,
                                                          "ts": "1970-01-01T00:00:01.000Z"}], "h": []}
    with pytest.raises(BadQuery, match="lastN or firstN, not both"):
        LegacyQuery.parse("d", [], lastN="1", firstN="1")
    with pytest.raises(BadQuery, match="attr must be an attribute name"):
        LegacyQuery.parse("d", ['a"b'])
