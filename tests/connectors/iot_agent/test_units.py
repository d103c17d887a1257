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


from connectors.iot_agent.dojot_api import DojotError

NOW = 1_700_000_000_000


@pytest.mark.parametrize("kwargs, words", [
    ({"order": "up"}, "order should be equal to one of the allowed values: asc, desc"),
    ({"dateFrom": "yesterday"}, 'request.query.dateFrom should match format "date-time"'),
    ({"dateTo": "2021-01-02T00:00:00"}, 'request.query.dateTo should match format "date-time"'),  # no offset
    ({"dateFrom": "2021-01-02T00:00:00Z", "dateTo": "2021-01-01T00:00:00Z"}, "dateFrom is after dateTo"),
])
def test_page_query_errors(kwargs, words):
    """Retriever: api/v1.yml (format date-time, order enum); Flux refuses an empty range."""
    with pytest.raises(BadQuery, match=words):
        PageQuery.parse("d", None, now_ms=NOW, **kwargs)


@pytest.mark.parametrize("limit, page, expected", [
    (None, None, (256, 1)), ("0", "0", (256, 1)), ("-5", "-1", (256, 1)), ("abc", "x", (256, 1)),
    ("1.9", "2.7", (1, 2)), ("300abc", "3", (256, 3)), ("256", "1", (256, 1)),
])
def test_page_query_limit_and_page_as_the_retriever_reads_them(limit, page, expected):
    """Retriever: app/express/interceptors/CustomPaginator.js (limit 0 -> the default) over
    express-paginate (parseInt, page below 1 -> 1, limit capped)."""
    query = PageQuery.parse("d", None, limit=limit, page=page, now_ms=NOW)
    assert (query.limit, query.page) == expected


@pytest.mark.parametrize("limit", ["257", "1e3", " 300"])
def test_page_query_limit_over_the_maximum_is_a_400(limit):
    """Retriever: CustomPaginator.js compares the text as a number with the maximum."""
    with pytest.raises(DojotError, match="The configured maximum limit is 256"):
        PageQuery.parse("d", None, limit=limit, now_ms=NOW)


def test_page_query_window_is_dateFrom_inclusive_dateTo_exclusive_to_the_nanosecond():
    """Retriever: app/influx/DeviceDataRepository.js (Flux range: start inclusive, stop
    exclusive; stop now() without dateTo, routes/v1/Devices.js checkDateTo)."""
    query = PageQuery.parse("d", None, now_ms=NOW)
    assert (query.date_from, query.date_to) == (None, NOW)
    query = PageQuery.parse("d", None, dateFrom="1970-01-01T00:00:01.0000001Z",
                            dateTo="1970-01-01T00:00:02.0005Z", now_ms=NOW)
    assert (query.date_from, query.date_to) == (1001, 2001)  # 1000 ms is before the start, 2000 ms inside


def test_page_query_answer_shape_and_paging():
    """Retriever: CustomPaginator.js getPaging (next only when the page is full)."""
    query = PageQuery.parse("d", None, limit="2", page="2", order="asc", now_ms=NOW)
    answer = query.answer([(1000, {"t": 1}), (2000, {"t": 2})], 5, "/tss/v1/devices/d/data", {"order": "asc"})
    assert answer["data"] == [{"ts": "1970-01-01T00:00:01.000Z", "attrs": [{"label": "t", "value": 1}]},
                              {"ts": "1970-01-01T00:00:02.000Z", "attrs": [{"label": "t", "value": 2}]}]
    paging = answer["paging"]
    assert (paging["totalItems"], paging["totalPages"], paging["limitPerPage"]) == (5, 3, 2)
    assert paging["previous"]["number"] == 1 and paging["next"]["number"] == 3
    assert paging["current"]["url"] == "/tss/v1/devices/d/data?order=asc&page=2&limit=2"
    short = query.answer([(1000, {"t": 1})], 3, "/u")
    assert short["paging"]["next"] is None
    attr = PageQuery.parse("d", "t", now_ms=NOW).answer([(1000, {"t": 1})], 1, "/u")
    assert attr["data"] == [{"ts": "1970-01-01T00:00:01.000Z", "value": 1}]


def test_legacy_query_shapes():
    """History proxy: src/handlers/handleResponse.js (device_id, ts, value, attr, metadata),
    src/proxy.js (firstN wins, ascending), handleValidation.js (256 points by default)."""
    one = LegacyQuery.parse("d", ["t"], lastN="2", now_ms=NOW)
    assert one.count == 2 and one.newest_first
    assert one.answer({"t": [(1000, 5)]}) == [{"device_id": "d", "attr": "t", "value": 5,
                                               "ts": "1970-01-01T00:00:01.000Z", "metadata": {}}]
    assert one.answer({}) is None
    several = LegacyQuery.parse("d", "t,h", firstN="1", now_ms=NOW)
    assert not several.newest_first
    assert several.answer({"t": [(1000, 5)]}) == {"t": [{"device_id": "d", "attr": "t", "value": 5, "metadata": {},
                                                          "ts": "1970-01-01T00:00:01.000Z"}], "h": []}
    both = LegacyQuery.parse("d", [], lastN="1", firstN="3", now_ms=NOW)
    assert (both.count, both.newest_first) == (3, False)
    assert LegacyQuery.parse("d", [], now_ms=NOW).count == 256
    with pytest.raises(BadQuery, match="attr must be an attribute name"):
        LegacyQuery.parse("d", ['a"b'], now_ms=NOW)


def test_agent_requests_skip_form_parsing_of_post_bodies():
    """Every body the agent takes is JSON: Twisted's reading of a POST's Content-Type for form
    fields (through the email package; a large share of a device post's CPU) is skipped."""
    from io import BytesIO

    from twisted.web.test.requesthelper import DummyChannel

    from connectors.iot_agent.http_api import AgentRequest

    request = AgentRequest(DummyChannel())
    request.requestHeaders.setRawHeaders(b"content-type", [b"application/x-www-form-urlencoded"])
    request.content = BytesIO(b"injected=1")
    request.content.seek(0, 2)
    request.process = lambda: None
    request.requestReceived(b"POST", b"/tss/v1/devices/d/data?page=2", b"HTTP/1.1")
    assert request.args == {b"page": [b"2"]} and request.content.read() == b"injected=1"


def test_hostile_numbers_in_dojot_parameters_are_answered_not_raised():
    """A page, a limit or a where operand of thousands of digits, or a hexadecimal beyond a double."""
    from connectors.iot_agent.dojot_filter import DojotFilter
    from connectors.iot_agent.jsvalues import js_number, js_parse_int
    from relayrouter.core.filters import FilterError

    assert js_number("0x" + "f" * 300) == float("inf") and js_parse_int("9" * 5000) == int("9" * 20)
    query = PageQuery.parse("d", None, page="9" * 5000, limit="0" * 5000 + "5", now_ms=NOW)
    assert (query.page, query.limit) == (2 ** 31, 5)  # an empty page, its offset within SQL's integers
    with pytest.raises(FilterError) as caught:
        DojotFilter(None, "attrs.n=gt:0x" + "f" * 300 + ";")
    assert caught.value.code == 4004
    assert DojotFilter(None, "attrs.n=gt:1;").apply({"attrs": {"n": "0x" + "f" * 300}}) is None


def test_a_hostile_create_many_gets_a_bounded_report():
    """ajv would list an error per item; a 256 kB body of them must not make a megabytes answer."""
    from connectors.iot_agent.dojot_api import MAX_SCHEMA_ERRORS, check_many

    with pytest.raises(DojotError) as caught:
        check_many([1] * 100_000)
    assert len(caught.value.detail["schemaErrors"]) == MAX_SCHEMA_ERRORS


@pytest.mark.parametrize("value, ok", [("dojot", True), ("relayrouter", True), ("Dojot", False), ("0.8", False)])
def test_the_compat_setting_is_checked_at_start(tmp_path, monkeypatch, value, ok):
    from connectors.iot_agent.tap import Options

    options = Options()
    argv = ["--state-dir", str(tmp_path), "--mqtt-host", "", "--compat", value]
    if ok:
        options.parseOptions(argv)
        assert options["config"].compat == value
    else:
        with pytest.raises(SystemExit, match="--compat.*relayrouter or dojot"):
            options.parseOptions(argv)


def test_a_device_secret_is_kept_per_record_and_a_changed_record_gets_its_own():
    """The directory keeps each device's HMAC secret with the record it was
    made from: a rotation (a new record, a new generation) is never answered
    with the old secret, and a deleted device's is forgotten."""
    from connectors.iot_agent.devices import DeviceDirectory

    directory = DeviceDirectory(store=None, key=b"k" * 32)
    device = {"tenant": "acme", "id": "d1", "generation": 1, "attrs": []}
    directory._keep(device)
    first = directory.secret(device)
    assert len(first) == 32 and directory.secret(device) == first
    assert directory.check_secret("acme", "d1", first) is device
    rotated = dict(device, generation=2)
    directory._keep(rotated)
    second = directory.secret(rotated)
    assert second != first
    assert directory.check_secret("acme", "d1", first) is None
    assert directory.check_secret("acme", "d1", second) is rotated
    rotated["generation"] = 3  # even a record changed in place is not answered from the cache
    assert directory.secret(rotated) not in (first, second)
    directory.devices.pop(("acme", "d1"))
    directory._secrets.pop(("acme", "d1"))
    assert directory.check_secret("acme", "d1", second) is None
    stale = {"tenant": "acme", "id": "d2", "generation": 1, "attrs": []}
    directory.secret(stale)  # not the directory's record: computed, not kept
    assert ("acme", "d2") not in directory._secrets
