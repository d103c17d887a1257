"""dojot v0.8.0's public APIs, case for case, against the real agent (real
router, real Mosquitto): what a dojot client sends and what dojot answers,
each case naming the dojot source file it was read from.

APIs (one table each): the HTTP agent (connector/http-agent), the retriever
(storage/time-series/influxdb/retriever, /tss/v1), the history proxy
(compatibility/history-proxy) and Kafka-WS (subscription-engine/kafka-ws).
Shared error shapes come from the SDK's web framework
(@dojot/microservice-sdk lib/webUtils/framework: errorTemplate.js,
defaultErrorHandler.js, createExpress.js).

Where relayrouter deliberately answers otherwise (README, "Differences from
dojot"), the case says so and asserts our answer; ``--compat dojot``
restores dojot's where a client could depend on it (the Kafka-WS cases at
the end run against a second agent started that way).
"""

import base64
import json
import time
import urllib.error
import urllib.request
from urllib.parse import quote

import pytest
import pytest_twisted
from twisted.internet import defer

from .clients import blocking, http_sync, kafka_ws, tls_context
from .harness import Agent, agent_environment, token, wait_served

pytestmark = pytest.mark.timeout(240)

SINGLE_ID = "2674a775-5e93-4370-8f1f-2e6f9d102e1f"
MANY_ID = "65b79e1a-0c6e-4fdd-9eba-7e5f2a4373fb"
T0 = 1623834000000  # 2021-06-16T09:00:00.000Z

HA = "connector/http-agent/app/"
RT = "storage/time-series/influxdb/retriever/"
HP = "compatibility/history-proxy/js/src/"
KW = "subscription-engine/kafka-ws/app/"
SDK = "@dojot/microservice-sdk lib/webUtils/framework/"


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


# ------------------------------------------------------------------ setup

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with agent_environment(tmp_path_factory.mktemp("dojot"), ("acme", "globex"), ("acme:c0ffee",)) as environment:
        environment.devices = {}
        _history_device(environment)
        yield environment


def user(tenant):
    return token(service=tenant, role="user", sub=f"user-{tenant}")


def device(env, device_id, tenant="acme"):
    """A device without attribute definitions (dojot's HTTP agent takes any data)."""
    if (tenant, device_id) not in env.devices:
        status, body = http_sync("POST", f"{env.agent.url}/device", {"id": device_id, "label": device_id, "attrs": []},
                                 bearer=user(tenant))
        assert status == 200, body
        env.devices[(tenant, device_id)] = body["credentials"]
    return env.devices[(tenant, device_id)]


def basic(credentials) -> dict:
    http_cred = credentials["http"]
    value = base64.b64encode(f"{http_cred['username']}:{http_cred['password']}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


def call(method, url, body=None, headers=None, raw=None, context=None):
    """(status, content-type, body as JSON or text)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, method=method, data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=20, context=context) as response:
            status, kind, content = response.status, response.headers.get("content-type", ""), response.read()
    except urllib.error.HTTPError as e:
        status, kind, content = e.code, e.headers.get("content-type", ""), e.read()
    text = content.decode()
    return status, kind, (json.loads(text) if text and "json" in kind else text)


def latest_ts(env, device_id, tenant="acme"):
    status, _, body = call("GET", f"{env.agent.url}/tss/v1/devices/{device_id}/data?limit=1",
                           headers={"Authorization": f"Bearer {user(tenant)}"})
    assert status == 200, body
    return body["data"][0]["ts"] if body["data"] else None


# ------------------------------------------------------------ HTTP agent

def _schema(schema_id, keyword):
    def check(body):
        assert body["error"] == "Input data schema validation failure.", body
        assert body["detail"]["schemaId"] == schema_id
        assert keyword in {e["keyword"] for e in body["detail"]["schemaErrors"]}, body
    return check


INCOMING = "/http-agent/v1/incoming-messages"
MANY = INCOMING + "/create-many"
NOW = object()  # the stored timestamp is the time of the request

# (case, source, path, body, status, expected body or check, stored ts)
HTTP_AGENT = [
    ("ts RFC 3339", HA + "express/schemas/single-message.json",
     INCOMING, {"ts": "2021-06-16T09:32:01.683Z", "data": {"t": 1}}, 204, None, "2021-06-16T09:32:01.683Z"),
    ("ts with an offset", HA + "Utils.js (parseTimestamp: new Date(ts))",
     INCOMING, {"ts": "2021-06-16T11:32:01.683+02:00", "data": {"t": 1}}, 204, None, "2021-06-16T09:32:01.683Z"),
    ("ts integer epoch ms", HA + "express/schemas/single-message.json (anyOf integer >= 0)",
     INCOMING, {"ts": 1623835921683, "data": {"t": 1}}, 204, None, "2021-06-16T09:32:01.683Z"),
    ("ts 0 is now", HA + "Utils.js (parseTimestamp: a falsy ts is now)",
     INCOMING, {"ts": 0, "data": {"t": 1}}, 204, None, NOW),
    ("no ts is now", HA + "Utils.js (parseTimestamp)", INCOMING, {"data": {"t": 1}}, 204, None, NOW),
    ("other keys are let be", HA + "express/schemas/single-message.json (no additionalProperties)",
     INCOMING, {"data": {"t": 1}, "extra": 1}, 204, None, NOW),
    ("ts at 1970 is no timestamp", HA + "Utils.js (getTime() > 0, else 'Invalid timestamp')",
     INCOMING, {"ts": "1970-01-01T00:00:00.000Z", "data": {"t": 1}}, 400, {"error": "Invalid timestamp"}, None),
    ("ts before 1970 is no timestamp", HA + "Utils.js (parseTimestamp)",
     INCOMING, {"ts": "1969-12-31T23:59:59.999Z", "data": {"t": 1}}, 400, {"error": "Invalid timestamp"}, None),
    ("ts negative integer", HA + "express/schemas/single-message.json (minimum 0)",
     INCOMING, {"ts": -1, "data": {"t": 1}}, 400, _schema(SINGLE_ID, "minimum"), None),
    ("ts not whole", HA + "express/schemas/single-message.json (type integer)",
     INCOMING, {"ts": 1.5, "data": {"t": 1}}, 400, _schema(SINGLE_ID, "anyOf"), None),
    ("ts not a date-time", HA + "express/helpers/schemaValidator.js (ajv-formats date-time)",
     INCOMING, {"ts": "noon", "data": {"t": 1}}, 400, _schema(SINGLE_ID, "format"), None),
    ("ts without an offset", HA + "express/helpers/schemaValidator.js (RFC 3339 requires the offset)",
     INCOMING, {"ts": "2021-06-16T09:32:01", "data": {"t": 1}}, 400, _schema(SINGLE_ID, "format"), None),
    ("data missing", HA + "express/schemas/single-message.json (required data)",
     INCOMING, {"ts": 1623835921683}, 400, _schema(SINGLE_ID, "required"), None),
    ("data not an object", HA + "express/schemas/single-message.json (data type object)",
     INCOMING, {"data": 5}, 400, _schema(SINGLE_ID, "type"), None),
    ("a list to the single route", HA + "express/schemas/single-message.json (type object)",
     INCOMING, [{"data": {}}], 400, _schema(SINGLE_ID, "type"), None),
    ("create-many", HA + "express/routes/v1/IncomingMessages.js (many-messages)",
     MANY, [{"ts": "2021-06-16T09:32:01.000Z", "data": {"t": 1}}, {"ts": 1623835922000, "data": {"t": 2}}],
     204, None, "2021-06-16T09:32:02.000Z"),
    ("create-many needs ts", HA + "express/schemas/multiple-messages.json (required ts, data)",
     MANY, [{"data": {"t": 1}}], 400, _schema(MANY_ID, "required"), None),
    ("create-many empty", HA + "express/schemas/multiple-messages.json (minItems 1)",
     MANY, [], 400, _schema(MANY_ID, "minItems"), None),
    ("create-many over 64", HA + "express/schemas/multiple-messages.json (maxItems 64)",
     MANY, [{"ts": T0 + i, "data": {}} for i in range(65)], 400, _schema(MANY_ID, "maxItems"), None),
    ("create-many twice the same", HA + "express/schemas/multiple-messages.json (uniqueItems)",
     MANY, [{"ts": T0, "data": {"t": 1}}] * 2, 400, _schema(MANY_ID, "uniqueItems"), None),
    ("create-many an object", HA + "express/schemas/multiple-messages.json (type array)",
     MANY, {"ts": T0, "data": {}}, 400, _schema(MANY_ID, "type"), None),
    ("create-many a bad timestamp", HA + "express/routes/v1/IncomingMessages.js (errors by index)",
     MANY, [{"ts": "1970-01-01T00:00:00Z", "data": {}}, {"ts": T0, "data": {}}], 400,
     {"error": {"0": "Invalid timestamp"}}, None),
    ("unsecure route", HA + "express/routes/v1/IncomingMessages.js (/unsecure/incoming-messages)",
     "/http-agent/v1/unsecure/incoming-messages", {"ts": T0, "data": {"t": 1}}, 204, None, iso(T0)),
    ("unsecure create-many", HA + "express/routes/v1/IncomingMessages.js (/unsecure/.../create-many)",
     "/http-agent/v1/unsecure/incoming-messages/create-many", [{"ts": T0 + 5, "data": {"t": 1}}], 204, None,
     iso(T0 + 5)),
]


@pytest.mark.parametrize("case, source, path, body, status, expected, stored", HTTP_AGENT,
                         ids=[c[0] for c in HTTP_AGENT])
def test_http_agent(env, case, source, path, body, status, expected, stored):
    device_id = f"a{HTTP_AGENT.index(next(c for c in HTTP_AGENT if c[0] == case)):02x}"
    credentials = device(env, device_id)
    before = time.time() * 1000
    got, _, answer = call("POST", env.agent.url + path, body, headers=basic(credentials))
    assert got == status, answer
    if callable(expected):
        expected(answer)
    elif expected is not None or status == 204:
        assert answer == (expected if expected is not None else ""), answer
    ts = latest_ts(env, device_id)
    if stored is NOW:
        assert ts is not None and before - 5 <= _ms(ts) <= time.time() * 1000 + 5
    else:
        assert ts == stored  # None: nothing of a refused request was stored


def _ms(text: str) -> int:
    from connectors.iot_agent.normalize import parse_timestamp
    return parse_timestamp(text)


# (case, source, path, headers(credentials) -> dict, status, body)
HTTP_AGENT_AUTH = [
    ("unsecure without credentials", HA + "express/interceptors/identificationService.js (basicAuth)",
     "/http-agent/v1/unsecure/incoming-messages", lambda c: {}, 401, {"error": "Invalid Basic token."}),
    ("unsecure Basic without a token", HA + "express/interceptors/identificationService.js (basicAuth)",
     "/http-agent/v1/unsecure/incoming-messages", lambda c: {"Authorization": "Basic"}, 401,
     {"error": "Invalid Basic token."}),
    ("undecodable Basic token", HA + "express/interceptors/identificationService.js (Buffer.from decodes anything)",
     "/http-agent/v1/unsecure/incoming-messages", lambda c: {"Authorization": "Basic !!!"}, 401,
     {"error": "Invalid credentials."}),
    ("wrong secret", HA + "express/interceptors/identificationService.js (basicAuth)",
     "/http-agent/v1/unsecure/incoming-messages",
     lambda c: basic({"http": {"username": c["http"]["username"], "password": "0" * 32}}), 401,
     {"error": "Invalid credentials."}),
    ("unknown device", HA + "axios/DeviceAuthService.js (not authenticated)",
     "/http-agent/v1/unsecure/incoming-messages",
     lambda c: basic({"http": {"username": "acme@ffffff", "password": "0" * 32}}), 401,
     {"error": "Invalid credentials."}),
    ("secure route, plain HTTP, no credentials", HA + "express/interceptors/deviceIdentification.js",
     INCOMING, lambda c: {}, 400, {"error": "Unable to authenticate"}),
    ("unknown path", SDK + "createExpress.js (catchInvalidRequest: NotFound)",
     "/http-agent/v1/outgoing-messages", basic, 404, {"error": "Not Found"}),
]


@pytest.mark.parametrize("case, source, path, headers, status, expected", HTTP_AGENT_AUTH,
                         ids=[c[0] for c in HTTP_AGENT_AUTH])
def test_http_agent_refusals(env, case, source, path, headers, status, expected):
    credentials = device(env, "a0ffff")
    got, _, answer = call("POST", env.agent.url + path, {"data": {"t": 1}}, headers=headers(credentials))
    assert (got, answer) == (status, expected)


def test_http_agent_invalid_json(env):
    """connector/http-agent/app/express/index.js (jsonBodyParsingInterceptor: 400 {error: the parser's text})."""
    got, _, answer = call("POST", env.agent.url + INCOMING, raw=b"{oops", headers=basic(device(env, "a0fffe")))
    assert got == 400 and set(answer) == {"error"} and isinstance(answer["error"], str)


@pytest.mark.parametrize("path", [INCOMING, "/http-agent/v1/unsecure/incoming-messages"])
def test_http_agent_client_certificate_on_every_route(env, path):
    """connector/http-agent/app/express/interceptors/deviceIdentification.js: on TLS the configured
    mode (cn: tenant:deviceid) identifies the device on every route, /unsecure/ too."""
    device(env, "c0ffee")
    crt, key = env.certs.clients["acme:c0ffee"]
    url = f"https://127.0.0.1:{env.agent.tls_port}{path}"
    got, _, _ = call("POST", url, {"ts": T0 + 7, "data": {"t": 1}}, context=tls_context(env.certs.ca_crt, crt, key))
    assert got == 204 and latest_ts(env, "c0ffee") == iso(T0 + 7)


# ------------------------------------------------------------- retriever

HISTORY_DEVICE = "b0b0"
POINTS = [(T0 + i * 1000, {"t": i, "s": f"v{i}"}) for i in range(5)]  # 09:00:00 .. 09:00:04


def _history_device(env):
    credentials = device(env, HISTORY_DEVICE)
    future = int(time.time() * 1000) + 3_600_000
    many = [{"ts": ts, "data": attrs} for ts, attrs in POINTS] + [{"ts": future, "data": {"t": 99}}]
    many[2]["data"] = {**many[2]["data"], "o": {"x": 1.5, "q": 'a"b'}}
    got, _, answer = call("POST", env.agent.url + MANY, many, headers=basic(credentials))
    assert got == 204, answer


def tss(env, path, bearer=None, accept=None, tenant="acme"):
    headers = {"Authorization": f"Bearer {bearer or user(tenant)}"} if bearer != "" else {}
    if accept is not None:
        headers["Accept"] = accept
    return call("GET", f"{env.agent.url}/tss/v1/devices/{path}", headers=headers)


def _ts_values(body):
    return [p["ts"][17:19] for p in body["data"]]  # the seconds: 00 .. 04


D = f"{HISTORY_DEVICE}/data"
A = f"{HISTORY_DEVICE}/attrs/t/data"

# (case, source, path, status, check(body))
RETRIEVER = [
    ("device data, newest first, window ends now", RT + "app/express/routes/v1/Devices.js (checkDateTo)",
     D, 200, lambda b: _ts_values(b) == ["04", "03", "02", "01", "00"]),
    ("attrs as label/value", RT + "app/influx/DeviceDataRepository.js (queryByMeasurement)",
     D + "?order=asc&limit=1", 200,
     lambda b: b["data"] == [{"ts": iso(T0), "attrs": [{"label": "t", "value": 0}, {"label": "s", "value": "v0"}]}]),
    ("order asc", RT + "api/v1.yml (order) + DeviceDataRepository.js (commonQueryOrderExpression)",
     D + "?order=asc", 200, lambda b: _ts_values(b) == ["00", "01", "02", "03", "04"]),
    ("dateFrom inclusive, dateTo exclusive", RT + "app/influx/DeviceDataRepository.js (Flux range)",
     D + f"?dateFrom={iso(T0 + 1000)}&dateTo={iso(T0 + 3000)}", 200, lambda b: _ts_values(b) == ["02", "01"]),
    ("sub-millisecond bounds", RT + "app/influx/DeviceDataRepository.js (Flux range, nanoseconds)",
     D + "?dateFrom=2021-06-16T09:00:01.0000001Z&dateTo=2021-06-16T09:00:03.0000001Z", 200,
     lambda b: _ts_values(b) == ["03", "02"]),
    ("limit and page", RT + "app/express/interceptors/CustomPaginator.js (getPaging)",
     D + "?limit=2&page=2", 200,
     lambda b: _ts_values(b) == ["02", "01"] and b["paging"]["previous"]["number"] == 1
     and b["paging"]["current"]["number"] == 2 and b["paging"]["next"]["number"] == 3
     and "page=3" in b["paging"]["next"]["url"]),
    ("next is null on a page not full", RT + "app/express/interceptors/CustomPaginator.js (getPaging)",
     D + "?limit=2&page=3", 200, lambda b: _ts_values(b) == ["00"] and b["paging"]["next"] is None),
    ("limit 0 is the default 256", RT + "app/express/interceptors/CustomPaginator.js (limit < 1)",
     D + "?limit=0", 200, lambda b: len(b["data"]) == 5),
    ("limit not a number is the default", RT + "express-paginate middleware (parseInt || 0)",
     D + "?limit=abc&page=x", 200, lambda b: len(b["data"]) == 5 and b["paging"]["current"]["number"] == 1),
    ("a page past any data", RT + "express-paginate middleware (parseInt) + CustomPaginator.js (getPaging)",
     D + "?page=" + "9" * 50, 200, lambda b: b["data"] == [] and b["paging"]["next"] is None),
    ("limit over 256", RT + "app/express/interceptors/CustomPaginator.js (maxLimit)",
     D + "?limit=257", 400, lambda b: b == {"error": "The configured maximum limit is 256"}),
    ("order neither asc nor desc", RT + "api/v1.yml (order enum) + interceptors/OpenApiValidator.js",
     D + "?order=up", 400, lambda b: set(b) == {"error"} and "asc" in b["error"]),
    ("dateFrom not a date-time", RT + "api/v1.yml (format date-time) + interceptors/OpenApiValidator.js",
     D + "?dateFrom=yesterday", 400, lambda b: set(b) == {"error"} and "dateFrom" in b["error"]),
    ("dateFrom after dateTo", RT + "app/influx/DeviceDataRepository.js (Flux refuses an empty range)",
     D + f"?dateFrom={iso(T0 + 3000)}&dateTo={iso(T0)}", 400, lambda b: set(b) == {"error"}),
    ("unknown query parameter", RT + "app/express/interceptors/OpenApiValidator.js (validateRequests)",
     D + "?colour=red", 400, lambda b: b == {"error": "Unknown query parameter 'colour'"}),
    ("one attribute", RT + "app/influx/DeviceDataRepository.js (queryByField)",
     A + "?order=asc&limit=2", 200, lambda b: [p["value"] for p in b["data"]] == [0, 1] and b["data"][0]["ts"] == iso(T0)),
    ("an object value comes back as it went", RT + "app/influx/DeviceDataRepository.js (JSON.parse)",
     f"{HISTORY_DEVICE}/attrs/o/data", 200, lambda b: [p["value"] for p in b["data"]] == [{"x": 1.5, "q": 'a"b'}]),
    ("unknown device", RT + "app/express/routes/v1/Devices.js (NotFound)",
     "0bad/data", 404, lambda b: set(b) == {"error"}),
]


@pytest.mark.parametrize("case, source, path, status, check", RETRIEVER, ids=[c[0] for c in RETRIEVER])
def test_retriever(env, case, source, path, status, check):
    got, kind, body = tss(env, path)
    assert got == status, body
    assert "json" in kind and check(body), body


def test_retriever_csv(env):
    """retriever app/express/routes/v1/Devices.js + services/v1/DeviceDataService.js (parseDeviceDataToCsv)
    + json2csv 5 (columns as they first appear, labels and text quoted, "" inside, objects as JSON)."""
    got, kind, body = tss(env, D + "?order=asc&limit=3", accept="text/csv")
    assert got == 200 and kind.startswith("text/csv")
    assert body.split("\n") == ['"ts","t","s","o"', f'"{iso(T0)}",0,"v0",', f'"{iso(T0 + 1000)}",1,"v1",',
                                f'"{iso(T0 + 2000)}",2,"v2","{{""x"":1.5,""q"":""a\\""b""}}"']


def test_retriever_csv_of_an_attribute_and_of_nothing(env):
    """retriever app/express/helpers/SimpleCSVParser.js (parseCSV: ts,value; '' for no data)."""
    got, kind, body = tss(env, A + "?order=asc&limit=2", accept="text/csv")
    assert (got, body) == (200, f'"ts","value"\n"{iso(T0)}",0\n"{iso(T0 + 1000)}",1')
    got, kind, body = tss(env, A + f"?dateTo={iso(T0)}", accept="text/csv")
    assert (got, body) == (200, "") and kind.startswith("text/csv")


@pytest.mark.parametrize("accept, kind", [("*/*", "json"), ("text/csv, application/json", "csv"),
                                          ("application/json, text/csv", "json"), ("text/*", "csv")])
def test_retriever_accept_negotiation(env, accept, kind):
    """retriever app/express/helpers/AcceptHeaderHelper.js (req.accepts(['json', 'csv']))."""
    got, content_type, _ = tss(env, A, accept=accept)
    assert got == 200 and (("csv" in content_type) == (kind == "csv"))


@pytest.mark.parametrize("accept", ["text/html", "application/xml, image/*"])
def test_retriever_406_for_an_unsupported_accept(env, accept):
    """retriever app/express/helpers/AcceptHeaderHelper.js (NotAcceptable with detail 'Not Acceptable')."""
    got, _, body = tss(env, D, accept=accept)
    assert (got, body) == (406, {"error": f"This server does not support {accept}", "detail": "Not Acceptable"})


def test_retriever_missing_jwt(env):
    """retriever app/express/interceptors/DojotTenantJwtParse.js ('Missing JWT token')."""
    assert tss(env, D, bearer="")[::2] == (401, {"error": "Missing JWT token"})


def test_retriever_another_tenants_device_is_not_found(env):
    """retriever app/express/routes/v1/Devices.js (localPersistence.get(req.tenant, deviceId))."""
    got, _, body = tss(env, D, tenant="globex")
    assert got == 404 and set(body) == {"error"}


# -------------------------------------------------------- history proxy

def history(env, query, tenant="acme", bearer=None):
    headers = {} if bearer == "" else {"Authorization": f"Bearer {bearer or user(tenant)}"}
    return call("GET", f"{env.agent.url}/history/device/{HISTORY_DEVICE}/history{query}", headers=headers)


def _point(i, attr="t"):
    value = POINTS[i][1][attr]
    return {"device_id": HISTORY_DEVICE, "ts": iso(POINTS[i][0]), "value": value, "attr": attr, "metadata": {}}


NOT_FOUND = {"title": "Attr not found", "description": "No data for the given attribute could be found"}

# (case, source, query, status, body)
HISTORY = [
    ("lastN of one attribute, newest first", HP + "proxy.js (lastN: desc) + handlers/handleResponse.js (parseOneAttr)",
     "?attr=t&lastN=2", 200, [_point(4), _point(3)]),
    ("firstN, oldest first", HP + "proxy.js (firstN: asc)", "?attr=t&firstN=2", 200, [_point(0), _point(1)]),
    ("firstN wins over lastN", HP + "proxy.js (firstN read after lastN)", "?attr=t&lastN=1&firstN=2", 200,
     [_point(0), _point(1)]),
    ("every attribute", HP + "handlers/handleValidation.js (isAllAttrs) + handleResponse.js (parseAllAttr)",
     f"?lastN=2&dateTo={iso(T0 + 2000)}", 200, {"t": [_point(1), _point(0)], "s": [_point(1, "s"), _point(0, "s")]}),
    ("dateFrom inclusive, dateTo exclusive", HP + "handlers/handleRequest.js (passed to the retriever)",
     f"?attr=s&dateFrom={iso(T0 + 1000)}&dateTo={iso(T0 + 3000)}", 200, [_point(2, "s"), _point(1, "s")]),
    ("window ends now", HP + "handlers/handleValidation.js (dateTo: new Date())", "?attr=t&lastN=1", 200,
     [_point(4)]),
    ("lastN 0 is the retriever's default", HP + "handlers/handleValidation.js + retriever CustomPaginator.js",
     "?attr=t&lastN=0", 200, [_point(i) for i in range(4, -1, -1)]),
    ("unknown attribute", HP + "handlers/handleResponse.js (empty data: 404 Attr not found)",
     "?attr=nothing", 404, NOT_FOUND),
    ("empty window", HP + "handlers/handleResponse.js (empty data: 404 Attr not found)",
     f"?attr=t&dateTo={iso(T0)}", 404, NOT_FOUND),
    ("unknown path", SDK + "createExpress.js (NotFound)", "/more", 404, {"error": "Not Found"}),
]


@pytest.mark.parametrize("case, source, query, status, expected", HISTORY, ids=[c[0] for c in HISTORY])
def test_history_proxy(env, case, source, query, status, expected):
    got, _, body = history(env, query)
    assert (got, body) == (status, expected)


# ---------------------------------------------------------------- Kafka-WS

def test_kafka_ws_ticket(env):
    """subscription-engine/kafka-ws/app/routes/TicketRouter.js + services/TicketService.js ({ticket}: 64 hex)."""
    got, _, body = call("GET", f"{env.agent.url}/kafka-ws/v1/ticket", headers={"Authorization": f"Bearer {user('acme')}"})
    assert got == 200 and set(body) == {"ticket"} and len(body["ticket"]) == 64 and int(body["ticket"], 16) >= 0


@pytest.mark.parametrize("headers, status, expected", [
    ({}, 401, {"message": "Missing JWT token"}),
    ({"Authorization": "Basic abc"}, 401, None),
])
def test_kafka_ws_ticket_refusals(env, headers, status, expected):
    """subscription-engine/kafka-ws/app/routes/TicketRouter.js (Missing / Invalid JWT token) + App.js
    (the default error handler answers {message})."""
    got, _, body = call("GET", f"{env.agent.url}/kafka-ws/v1/ticket", headers=headers)
    assert got == status and set(body) == {"message"}
    assert expected is None or body == expected


def test_kafka_ws_unknown_path(env):
    """subscription-engine/kafka-ws/app/App.js (catch 404: {message: 'Not Found'})."""
    got, _, body = call("GET", f"{env.agent.url}/kafka-ws/v1/nothing", headers={"Authorization": f"Bearer {user('acme')}"})
    assert (got, body) == (404, {"message": "Not Found"})


def _ticket(agent_url):
    status, body = http_sync("GET", f"{agent_url}/kafka-ws/v1/ticket", bearer=user("acme"))
    assert status == 200, body
    return body["ticket"]


@pytest.fixture(scope="module")
def dojot_agent(env):
    """A second agent with --compat dojot (no MQTT: the first one owns the broker's client ids)."""
    agent = Agent(env.tmp / "compat", env.router, None, "--compat", "dojot")
    (env.tmp / "compat").mkdir(exist_ok=True)
    agent.start()
    wait_served(agent, {"acme", "globex"}, mqtt=False)
    agent.devices = {}
    yield agent
    agent.stop()


def agent_device(agent, device_id):
    cache = getattr(agent, "devices", None)
    if cache is None:
        cache = agent.devices = {}
    if device_id not in cache:
        status, body = http_sync("POST", f"{agent.url}/device", {"id": device_id, "label": device_id, "attrs": []},
                                 bearer=user("acme"))
        assert status == 200, body
        cache[device_id] = body["credentials"]
    return cache[device_id]


@defer.inlineCallbacks
def frames_for(agent, device_id, query, posted, count):
    """Open acme.device-data with ``query``, post each of ``posted`` as ``device_id``, and
    return the ``attrs`` of the first ``count`` frames (the last message posted passes)."""
    credentials = yield blocking(agent_device, agent, device_id)
    t = yield blocking(_ticket, agent.url)
    stream = yield kafka_ws(agent.port, f"/kafka-ws/v1/topics/acme.device-data?ticket={t}&{query}")
    client = yield stream.opened
    try:
        for attrs in posted:
            got, _, _ = yield blocking(call, "POST", agent.url + INCOMING, {"data": attrs}, headers=basic(credentials))
            assert got == 204
        messages = yield stream.wait_messages(count)
    finally:
        client.sendClose()
    return [m.get("attrs") for m in messages]


# (case, source, query, posted (the last one passes), frames' attrs: default, with --compat dojot)
KAFKA_WS = [
    ("a space after '='", KW + "WhereProcessing/Lexer.js (values: anything up to ';') + Utils.js (isNumber)",
     "where=attrs.n=%203;", [{"n": 4}, {"n": 3}], [{"n": 3}], None),
    ("a hexadecimal operand", KW + "Utils.js (isNumber: Number('0x10'))",
     "where=attrs.n=gte:0x10;", [{"n": 15}, {"n": 16}], [{"n": 16}], None),
    ("numbers in text compare as numbers", KW + "Conditions/Conditions.js (Number(data[parameter]))",
     "where=attrs.n=gt:2;", [{"n": "x"}, {"n": 2}, {"n": " 3 "}], [{"n": " 3 "}], None),
    ("an empty value in an 'in' list", KW + "WhereProcessing/WhereParser.js (split(','): 'ok,' is 'ok' and '')",
     "where=attrs.s=in:ok,;", [{"s": "no"}, {"s": ""}, {"s": "ok"}],
     [{"s": ""}, {"s": "ok"}], [{"s": "no"}, {"s": "ok"}]),
    ("in as a regular expression", KW + "Conditions/Conditions.js (applyIn: toString().match(value))",
     "where=attrs.s=in:o.;", [{"s": "xoxo"}, {"s": "o."}], [{"s": "o."}], [{"s": "xoxo"}, {"s": "o."}]),
    ("in over 0", KW + "Conditions/Conditions.js (applyIn: a falsy value never matches)",
     "where=attrs.n=in:0,1;", [{"n": 0}, {"n": 1}], [{"n": 0}, {"n": 1}], [{"n": 1}]),
    ("bool reads true, 1, false, 0", KW + "Utils.js (parseBoolean)",
     "where=attrs.b=bool:true;", [{"b": False}, {"b": "maybe"}, {"b": True}, {"b": "1"}],
     [{"b": True}, {"b": "1"}], None),
    ("a list element by index", KW + "Conditions/ConditionApplier.js (npm flat: attrs.l.0)",
     "where=attrs.l.0=eq:5;", [{"l": [1, 5]}, {"l": [5, 1]}], [{"l": [5, 1]}], None),
    ("every condition holds", KW + "ProcessingRule/ProcessingRule.js (each condition in turn)",
     "where=attrs.n=gt:1;attrs.n=lt:3;", [{"n": 1}, {"n": 3}, {"n": 2}], [{"n": 2}], None),
    ("a falsy scalar under a selection is kept", KW + "ProcessingRule/ProcessingRule.js (json-mask 1.0.4 filter)",
     "fields=attrs/obj/*", [{"obj": 5}, {"obj": 0}, {"obj": {"a": 1}}], [{}, {"obj": 0}, {"obj": {"a": 1}}], None),
    ("a list keeps only its objects", KW + "ProcessingRule/ProcessingRule.js (json-mask _array)",
     "fields=attrs/*/x", [{"obj": {"x": -2.5}, "t": ["ok"]}], [{"obj": {"x": -2.5}}], None),
    ("a later selection of a key replaces an earlier", KW + "ProcessingRule/ProcessingRule.js (json-mask compiler)",
     "fields=attrs/a,attrs/b", [{"a": 1, "b": 2}], [{"b": 2}], None),
    ("a string under '*' drops the message in dojot", KW + "WebsocketTarball.js (an exception: nothing sent)",
     "fields=attrs/s/*", [{"s": "abc"}, {"s": {"k": 1}}], [{}, {"s": {"k": 1}}], [{"s": {"k": 1}}]),
]


@pytest.mark.parametrize("case, source, query, posted, ours, theirs", KAFKA_WS, ids=[c[0] for c in KAFKA_WS])
@pytest_twisted.inlineCallbacks
def test_kafka_ws_filters(env, case, source, query, posted, ours, theirs):
    index = [c[0] for c in KAFKA_WS].index(case)
    frames = yield frames_for(env.agent, f"e{index:02x}", query, posted, len(ours))
    assert frames == ours


@pytest.mark.parametrize("case, source, query, posted, ours, theirs", [c for c in KAFKA_WS if c[5] is not None],
                         ids=[c[0] for c in KAFKA_WS if c[5] is not None])
@pytest_twisted.inlineCallbacks
def test_kafka_ws_filters_with_compat_dojot(env, dojot_agent, case, source, query, posted, ours, theirs):
    index = [c[0] for c in KAFKA_WS].index(case)
    frames = yield frames_for(dojot_agent, f"f{index:02x}", query, posted, len(theirs))
    assert frames == theirs


# (case, source, where, close code: default, with --compat dojot)
KAFKA_WS_ERRORS = [
    ("no rule matches", KW + "WhereProcessing/Lexer.js (moo: invalid syntax) + WhereParser.js", "hi)", 4000, 4000),
    ("unknown operator", KW + "WhereProcessing/Lexer.js (InvalidOperator, lost in nearley's error)",
     "attrs.n=itn:1;", 4001, 4999),
    ("IN in capitals is part of the value", KW + "WhereProcessing/Lexer.js (operator: [a-z]+:) + OperatorValidator.js",
     "attrs.n=IN:1;", 4004, 4004),
    ("a one-character selector", KW + "WhereProcessing/Lexer.js (a parameter needs two characters)",
     "n=1;", 4000, 4999),
    ("the text ends inside a condition", KW + "WhereProcessing/WhereParser.js (no complete parse)",
     "attrs.n=", 4000, 4999),
    ("an escape of a letter", KW + "WhereProcessing/WhereParser.js (escapeString)", 'attrs.n=in:"\\q";', 4002, 4002),
    ("two values for gt", KW + "WhereProcessing/OperatorValidator.js (InvalidOperatorArity)",
     "attrs.n=gt:1,2;", 4003, 4003),
    ("not a number", KW + "WhereProcessing/OperatorValidator.js (InvalidValue)", "attrs.n=gt:abc;", 4004, 4004),
    ("not a boolean", KW + "WhereProcessing/OperatorValidator.js (InvalidValue)", "attrs.n=bool:maybe;", 4004, 4004),
]


@defer.inlineCallbacks
def close_code(agent, where):
    t = yield blocking(_ticket, agent.url)
    stream = yield kafka_ws(agent.port, f"/kafka-ws/v1/topics/acme.device-data?ticket={t}&where={quote(where)}")
    code, _ = yield stream.closed
    return code


@pytest.mark.parametrize("case, source, where, ours, theirs", KAFKA_WS_ERRORS, ids=[c[0] for c in KAFKA_WS_ERRORS])
@pytest_twisted.inlineCallbacks
def test_kafka_ws_where_errors(env, dojot_agent, case, source, where, ours, theirs):
    assert (yield close_code(env.agent, where)) == ours
    assert (yield close_code(dojot_agent, where)) == theirs


@pytest_twisted.inlineCallbacks
def test_kafka_ws_tickets_and_topics(env):
    """subscription-engine/kafka-ws/app/routes/AccessControlRouter.js ('Missing ticket', 'Invalid ticket'),
    WebsocketTarball.js (4403 'Tenant can't access this topic'); the close codes are dojot's
    ErrorCodes.js (README: dojot refuses the upgrade, we close with the code)."""
    missing = yield kafka_ws(env.agent.port, "/kafka-ws/v1/topics/acme.device-data")
    assert (yield missing.closed) == (4401, "Missing ticket")
    unknown = yield kafka_ws(env.agent.port, f"/kafka-ws/v1/topics/acme.device-data?ticket={'0' * 64}")
    assert (yield unknown.closed) == (4401, "Invalid ticket")
    t = yield blocking(_ticket, env.agent.url)
    foreign = yield kafka_ws(env.agent.port, f"/kafka-ws/v1/topics/globex.device-data?ticket={t}")
    assert (yield foreign.closed) == (4403, "Tenant can't access this topic")
