"""The IoT agent end to end: the real router, the real agent process, a real
Mosquitto of our own, and real HTTP, MQTT, WAMP and WebSocket clients.

Two tenants (acme, globex) exist before the agent starts; another is made
while it runs.  Each test uses its own device ids.
"""

import base64
import os
import json
import time

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, reactor, task

from .clients import MqttDevice, blocking, http, http_sync, kafka_ws, tls_context, wamp
from .harness import Agent, agent_environment, token, wait_served

pytestmark = pytest.mark.timeout(180)

ADMIN = token(role="admin", sub="ops")
TYPES = [{"label": "temperature", "type": "float"}, {"label": "humidity", "type": "integer"},
         {"label": "status", "type": "string"}]


def make_tenant(router, name):
    status, body = http_sync("POST", f"{router.http_url}/realms", {"name": name}, bearer=ADMIN)
    assert status == 200, body


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with agent_environment(tmp_path_factory.mktemp("iot"), ("acme", "globex"), ("acme:tls1", "acme:nobody"),
                           "--ticket-lifetime", "3", "--kafka-ws-max-lifetime", "4") as environment:
        yield environment


def _wait_served(agent, tenants, seconds=20.0):
    wait_served(agent, tenants, seconds)


def user(tenant):
    return token(service=tenant, role="user", sub=f"user-{tenant}")


@defer.inlineCallbacks
def create(env, tenant, device_id, attrs=TYPES):
    status, body = yield http("POST", f"{env.agent.url}/device", {"id": device_id, "label": device_id,
                                                                   "attrs": attrs}, bearer=user(tenant))
    assert status == 200, body
    assert body["mqtt_provisioned"] is True
    return body


def basic(credentials) -> dict:
    http_cred = credentials["http"]
    value = base64.b64encode(f"{http_cred['username']}:{http_cred['password']}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


def until(predicate, seconds=10.0, describe=None):
    @defer.inlineCallbacks
    def wait():
        deadline = reactor.seconds() + seconds
        while not predicate():
            if reactor.seconds() > deadline:
                raise AssertionError(f"condition not reached{': ' + describe() if describe else ''}")
            yield task.deferLater(reactor, 0.02, lambda: None)
    return wait()


# ------------------------------------------------------------------ HTTP

@pytest_twisted.inlineCallbacks
def test_http_ingest_reaches_only_its_tenant_and_history_answers(env):
    agent = env.agent
    made = yield create(env, "acme", "h1")
    yield create(env, "globex", "h1")  # the same id in another tenant
    acme = yield wamp(env.router.ws_url, env.router.port, "acme", user("acme"))
    globex = yield wamp(env.router.ws_url, env.router.port, "globex", user("globex"))
    seen_acme, seen_globex = [], []
    yield acme.subscribe(lambda msg: seen_acme.append(msg), "device-data")
    yield globex.subscribe(lambda msg: seen_globex.append(msg), "device-data")
    url = f"{agent.url}/http-agent/v1/incoming-messages"
    status, _ = yield http("POST", url, {"ts": "2021-06-16T09:32:01.683000Z",
                                          "data": {"temperature": 25.79, "humidity": 70}},
                           headers=basic(made["credentials"]))
    assert status == 204
    many = [{"ts": f"2021-06-16T09:3{i}:00Z", "data": {"temperature": 20 + i, "status": f"s{i}"}}
            for i in range(3, 6)]
    status, _ = yield http("POST", url + "/create-many", many,
                           headers={"Authorization": f"Bearer {made['credentials']['http']['token']}"})
    assert status == 204
    yield until(lambda: len(seen_acme) == 4)
    assert seen_globex == []
    first = seen_acme[0]
    assert first == {"metadata": {"deviceid": "h1", "tenant": "acme", "timestamp": 1623835921683},
                     "attrs": {"temperature": 25.79, "humidity": 70}}
    assert [m["attrs"]["temperature"] for m in seen_acme[1:]] == [23.0, 24.0, 25.0]

    bearer = user("acme")
    status, body = yield http("GET", f"{agent.url}/tss/v1/devices/h1/data", bearer=bearer)
    assert status == 200 and body["paging"]["totalItems"] == 4
    assert [d["ts"] for d in body["data"]] == ["2021-06-16T09:35:00.000Z", "2021-06-16T09:34:00.000Z",
                                               "2021-06-16T09:33:00.000Z", "2021-06-16T09:32:01.683Z"]
    assert body["data"][-1]["attrs"] == [{"label": "temperature", "value": 25.79}, {"label": "humidity", "value": 70}]
    status, body = yield http("GET", f"{agent.url}/tss/v1/devices/h1/data?order=asc&limit=2&page=2"
                                     "&dateFrom=2021-06-16T09:32:00Z&dateTo=2021-06-16T09:36:00Z", bearer=bearer)
    assert [d["ts"] for d in body["data"]] == ["2021-06-16T09:34:00.000Z", "2021-06-16T09:35:00.000Z"]
    assert body["paging"]["previous"]["number"] == 1 and body["paging"]["next"]["number"] == 3  # a full page
    assert body["paging"]["totalPages"] == 2 and body["paging"]["limitPerPage"] == 2
    status, body = yield http("GET", f"{agent.url}/tss/v1/devices/h1/attrs/status/data?order=asc", bearer=bearer)
    assert [d["value"] for d in body["data"]] == ["s3", "s4", "s5"]
    status, body = yield http("GET", f"{agent.url}/history/device/h1/history?attr=temperature&lastN=2",
                              bearer=bearer)
    assert status == 200 and [p["value"] for p in body] == [25.0, 24.0]
    assert body[0] == {"device_id": "h1", "attr": "temperature", "value": 25.0, "ts": "2021-06-16T09:35:00.000Z",
                       "metadata": {}}
    status, body = yield http("GET", f"{agent.url}/history/device/h1/history?attr=temperature&firstN=1", bearer=bearer)
    assert [p["value"] for p in body] == [25.79]
    status, body = yield http("GET", f"{agent.url}/history/device/h1/history?attr=temperature&attr=humidity"
                                     "&dateFrom=2021-06-16T09:32:00Z&dateTo=2021-06-16T09:33:30Z", bearer=bearer)
    assert set(body) == {"temperature", "humidity"} and [p["value"] for p in body["temperature"]] == [23.0, 25.79]
    status, body = yield http("GET", f"{agent.url}/history/device/h1/history?attr=nothing", bearer=bearer)
    assert status == 404
    status, body = yield http("GET", f"{agent.url}/tss/v1/devices/h1/data?limit=999", bearer=bearer)
    assert status == 400 and body == {"error": "The configured maximum limit is 256"}
    # The same over WAMP, in the caller's tenant.
    page = yield acme.call("iot_agent.history.device", "h1", order="asc", limit=1)
    assert page["data"][0]["ts"] == "2021-06-16T09:32:01.683Z" and page["paging"]["totalItems"] == 4
    legacy = yield acme.call("iot_agent.history.legacy", "h1", attr="status", last_n=1)
    assert [p["value"] for p in legacy] == ["s5"]
    points = yield acme.call("iot_agent.history.attr", "h1", "humidity")
    assert [d["value"] for d in points["data"]] == [70]
    other = yield globex.call("iot_agent.history.device", "h1")
    assert other["paging"]["totalItems"] == 0  # globex's h1 sent nothing
    acme.leave()
    globex.leave()


@pytest_twisted.inlineCallbacks
def test_http_refusals_are_precise_and_counted(env):
    agent = env.agent
    made = yield create(env, "acme", "h2")
    url = f"{agent.url}/http-agent/v1/incoming-messages"
    before = agent.status()["counters"]
    cases = [
        ({"data": {"temperature": "hot"}}, 400, "attribute 'temperature' is float: not a number (got 'hot')"),
        ({"data": {"pressure": 1}}, 400, "device 'h2' has no attribute 'pressure'"),
        ({"temperature": 1}, 400, "Input data schema validation failure."),
        ({"data": {}, "ts": "noon"}, 400, "Input data schema validation failure."),
    ]
    for body, code, words in cases:
        status, answer = yield http("POST", url, body, headers=basic(made["credentials"]))
        assert status == code and words in answer["error"], answer
    status, answer = yield http("POST", url, raw=b"{not json", headers=basic(made["credentials"]))
    assert status == 400 and "not valid JSON" in answer["error"]
    status, answer = yield http("POST", url + "/create-many", [{"ts": 5, "data": {"temperature": 1}},
                                                               {"ts": 6, "data": {"temperature": "hot"}}],
                                headers=basic(made["credentials"]))
    assert status == 400 and answer == {"error": {"1": "attribute 'temperature' is float: not a number (got 'hot')"}}
    wrong = {"http": {"username": "acme@h2", "password": "0" * 32}}
    status, answer = yield http("POST", url, {"data": {}}, headers=basic(wrong))
    assert status == 401 and answer == {"error": "Invalid credentials."}
    unknown = {"http": {"username": "acme@ghost", "password": "0" * 32}}
    status, answer = yield http("POST", url, {"data": {}}, headers=basic(unknown))
    assert status == 401 and answer == {"error": "Invalid credentials."}  # whether the device exists is not told
    status, _ = yield http("POST", url, {"data": {}})
    assert status == 400
    after = agent.status()["counters"]
    assert after.get("refused_unknown_device", 0) == before.get("refused_unknown_device", 0) + 1
    assert after.get("refused_bad_credentials", 0) == before.get("refused_bad_credentials", 0) + 1
    assert after.get("refused_invalid", 0) >= before.get("refused_invalid", 0) + 4
    # Nothing of a refused message was stored.
    status, body = yield http("GET", f"{agent.url}/tss/v1/devices/h2/data", bearer=user("acme"))
    assert body["paging"]["totalItems"] == 0


@pytest_twisted.inlineCallbacks
def test_json_nested_thousands_deep_is_a_400_on_every_body_never_a_500(env):
    agent = env.agent
    made = yield create(env, "acme", "deep1")
    deep = b"[" * 5000
    device, tenant = basic(made["credentials"]), {"Authorization": f"Bearer {user('acme')}"}
    cases = [("POST", "/http-agent/v1/incoming-messages", device),
             ("POST", "/http-agent/v1/incoming-messages/create-many", device),
             ("POST", "/device", tenant), ("PUT", "/device/deep1", tenant), ("PUT", "/device/deep1/actuate", tenant)]
    for method, path, headers in cases:
        status, answer = yield http(method, agent.url + path, raw=deep, headers=headers)
        assert status == 400, (path, status, answer)
        text = answer["error" if path.startswith("/http-agent/") else "message"]  # dojot's {error} there
        assert text == "the body is nested more than 100 levels deep (the limit)", answer
    # Over MQTT too: refused and counted, the agent goes on.
    before = agent.status()["counters"].get("mqtt_refused_malformed", 0)
    mqtt = made["credentials"]["mqtt"]
    sender = MqttDevice(env.broker.port, mqtt["username"], mqtt["password"], client_id=mqtt["client_id"])
    rc = yield blocking(sender.connect)
    assert not rc.is_failure
    try:
        rc = yield blocking(sender.publish, "acme:deep1/attrs", deep)
        assert not rc.is_failure
        yield until(lambda: agent.status()["counters"].get("mqtt_refused_malformed", 0) == before + 1)
    finally:
        sender.close()
    status, _ = yield http("GET", f"{agent.url}/device/deep1", bearer=user("acme"))
    assert status == 200


@pytest_twisted.inlineCallbacks
def test_http_device_by_client_certificate(env):
    agent, certs = env.agent, env.certs
    yield create(env, "acme", "tls1")
    url = f"https://127.0.0.1:{agent.tls_port}/http-agent/v1/incoming-messages"
    crt, key = certs.clients["acme:tls1"]
    taken = agent.status()["counters"].get("http_lane_taken", 0)
    status, _ = yield http("POST", url, {"data": {"temperature": 1.5}}, context=tls_context(certs.ca_crt, crt, key))
    assert status == 204
    assert agent.status()["counters"]["http_lane_taken"] == taken + 1  # the lane reads the certificate too
    crt, key = certs.clients["acme:nobody"]
    status, answer = yield http("POST", url, {"data": {"temperature": 1.5}},
                                context=tls_context(certs.ca_crt, crt, key))
    assert status == 403 and "certificate CN 'acme:nobody'" in answer["error"]
    with pytest.raises(Exception):  # no client certificate: the TLS handshake itself fails
        yield http("POST", url, {"data": {}}, context=tls_context(certs.ca_crt))
    status, body = yield http("GET", f"{agent.url}/tss/v1/devices/tls1/data", bearer=user("acme"))
    assert body["paging"]["totalItems"] == 1


def _responses(sock, count: int) -> list[tuple[int, dict, bytes]]:
    """``count`` HTTP/1.1 responses read off ``sock``: (status, headers, body)."""
    buffered, out = b"", []
    while len(out) < count:
        while b"\r\n\r\n" not in buffered:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(out)} responses"
            buffered += chunk
        head, _, buffered = buffered.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (x.partition(":") for x in lines[1:])}
        body = b""
        if headers.get("transfer-encoding") == "chunked":  # twisted.web's answers without a Content-Length
            while not body.endswith(b"0\r\n\r\n") or b"\r\n0\r\n\r\n" not in b"\r\n" + body:
                if not buffered:
                    buffered = sock.recv(65536)
                    assert buffered, "closed in a chunked body"
                body, buffered = body + buffered[:1], buffered[1:]
            body = _dechunk(body)
        else:
            length = int(headers.get("content-length", 0))
            while len(buffered) < length:
                buffered += sock.recv(65536)
            body, buffered = buffered[:length], buffered[length:]
        out.append((int(lines[0].split()[1]), headers, body))
    return out


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size, _, data = data.partition(b"\r\n")
        if int(size, 16) == 0:
            return out
        out, data = out + data[:int(size, 16)], data[int(size, 16) + 2:]


def _post(path: str, auth: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: agent\r\nAuthorization: {auth}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_http_posts_on_one_keep_alive_connection_pipelined_refused_chunked_and_closed(env):
    """The device-post lane (http_lane.py) on the real agent: what it takes and
    what it hands to twisted.web, on raw sockets, each answer as dojot's."""
    import socket

    agent = env.agent
    status, made = http_sync("POST", f"{agent.url}/device", {"id": "lane1", "label": "lane1", "attrs": TYPES},
                             bearer=user("acme"))
    assert status == 200, made
    auth = basic(made["credentials"])["Authorization"]
    wrong = "Basic " + base64.b64encode(b"acme@lane1:" + b"0" * 32).decode()
    path = "/http-agent/v1/incoming-messages"
    counters = agent.status()["counters"]
    with socket.create_connection(("127.0.0.1", agent.port), timeout=20) as sock:
        sock.sendall(b"".join(_post(path, auth, b'{"data": {"humidity": %d}}' % i) for i in range(3)))
        assert [r[0] for r in _responses(sock, 3)] == [204, 204, 204]
        sock.sendall(_post(path, auth, b'{"data": {"humidity": 3}}') + _post(path, wrong, b'{"data": {}}')
                     + _post(path + "/create-many", auth, b'[{"ts": 1, "data": {"humidity": 4}}]'))
        answers = _responses(sock, 3)
        assert [r[0] for r in answers] == [204, 401, 204]
        assert json.loads(answers[1][2]) == {"error": "Invalid credentials."}
        assert answers[1][1]["www-authenticate"] == 'Basic realm="iot-agent"'
    after = agent.status()["counters"]
    assert after["http_lane_taken"] - counters.get("http_lane_taken", 0) == 4
    # the refused post, and this GET /status
    assert after["http_lane_handed_over"] - counters.get("http_lane_handed_over", 0) == 2
    assert after["refused_bad_credentials"] - counters.get("refused_bad_credentials", 0) == 1  # counted once

    with socket.create_connection(("127.0.0.1", agent.port), timeout=20) as sock:  # chunked: twisted.web's
        body = b'{"data": {"humidity": 5}}'
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: agent\r\nAuthorization: {auth}\r\n"
                     f"Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        assert _responses(sock, 1)[0][0] == 204
        sock.sendall(_post(path, auth, b'{"data": {"humidity": 6}}', "Connection: close\r\n"))
        status, headers, _ = _responses(sock, 1)[0]
        assert status == 204 and headers["connection"] == "close" and sock.recv(100) == b""

    with socket.create_connection(("127.0.0.1", agent.port), timeout=20) as sock:  # over the body limit
        sock.sendall(_post(path, auth, b'{"data": {"s": "' + b"x" * 256_000 + b'"}}'))
        status, _, answer = _responses(sock, 1)[0]
        assert status == 413 and "256000 bytes" in json.loads(answer)["error"]

    status, body = http_sync("GET", f"{agent.url}/tss/v1/devices/lane1/attrs/humidity/data", bearer=user("acme"))
    assert sorted(p["value"] for p in body["data"]) == [0, 1, 2, 3, 4, 5, 6]


def test_http_posts_from_curl_keep_alive_and_expect_100_continue(env, tmp_path):
    import shutil
    import subprocess

    if shutil.which("curl") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("curl is required (scripts/test.sh installs it)", pytrace=False)
        pytest.skip("curl is not installed")
    agent = env.agent
    status, made = http_sync("POST", f"{agent.url}/device", {"id": "lane2", "label": "lane2", "attrs": TYPES},
                             bearer=user("acme"))
    assert status == 200, made
    cred = made["credentials"]["http"]
    url = f"{agent.url}/http-agent/v1/incoming-messages"
    (tmp_path / "a.json").write_text('{"data": {"humidity": 1}}')
    before = agent.status()["counters"].get("http_lane_taken", 0)
    # two posts on one connection (curl reuses it), then one with Expect: 100-continue
    out = subprocess.run(["curl", "-sS", "-u", f"{cred['username']}:{cred['password']}",
                          "-H", "Content-Type: application/json", "--data-binary", "@" + str(tmp_path / "a.json"),
                          "-w", "%{http_code} %{num_connects}\n", url, url], capture_output=True, text=True, timeout=30)
    assert out.stdout.split("\n")[:2] == ["204 1", "204 0"], out
    out = subprocess.run(["curl", "-sS", "-u", f"{cred['username']}:{cred['password']}", "-H", "Expect: 100-continue",
                          "--data-binary", '{"data": {"humidity": 2}}', "-w", "%{http_code}", url],
                         capture_output=True, text=True, timeout=30)
    assert out.stdout == "204", out
    assert agent.status()["counters"]["http_lane_taken"] - before == 2  # Expect: twisted.web's
    status, body = http_sync("GET", f"{agent.url}/tss/v1/devices/lane2/attrs/humidity/data", bearer=user("acme"))
    assert sorted(p["value"] for p in body["data"]) == [1, 1, 2]


# ------------------------------------------------------------------ MQTT

@pytest_twisted.inlineCallbacks
def test_mqtt_ingest_and_broker_side_refusals(env):
    port = env.broker.port
    made = yield create(env, "acme", "m1")
    yield create(env, "acme", "m2")
    acme = yield wamp(env.router.ws_url, env.router.port, "acme", user("acme"))
    seen = []
    yield acme.subscribe(lambda msg: seen.append(msg), "device-data")
    mqtt = made["credentials"]["mqtt"]
    device = MqttDevice(port, mqtt["username"], mqtt["password"], client_id=mqtt["client_id"])
    rc = yield blocking(device.connect)
    assert not rc.is_failure
    rc = yield blocking(device.publish, "acme:m1/attrs", {"temperature": 30.5, "humidity": "41"})
    assert not rc.is_failure
    rc = yield blocking(device.publish, "/acme/m1/attrs", {"data": {"status": "ok"}, "ts": "2021-01-01T00:00:00Z"})
    assert not rc.is_failure
    # Another device's topic: the broker refuses (the ACL the agent provisioned).
    rc = yield blocking(device.publish, "acme:m2/attrs", {"temperature": 1})
    assert rc.is_failure and rc.value == 135  # Not authorized
    rc = yield blocking(device.publish, "globex:m1/attrs", {"temperature": 1})
    assert rc.is_failure
    yield until(lambda: len(seen) == 2, describe=lambda: f"{seen} {env.agent.status()}")
    assert seen[0]["attrs"] == {"temperature": 30.5, "humidity": 41}
    assert seen[1]["attrs"] == {"status": "ok"} and seen[1]["metadata"]["timestamp"] == 1609459200000
    # A bad value: refused and counted, nothing stored, the device still acknowledged.
    before = env.agent.status()["counters"].get("mqtt_refused_invalid", 0)
    rc = yield blocking(device.publish, "acme:m1/attrs", {"humidity": "lots"})
    assert not rc.is_failure
    yield until(lambda: env.agent.status()["counters"].get("mqtt_refused_invalid", 0) == before + 1)
    # An unregistered device cannot even connect.
    stranger = MqttDevice(port, "acme:ghost", "0" * 32)
    rc = yield blocking(stranger.connect)
    assert rc.is_failure
    stranger.client.loop_stop()
    # A deleted device is removed from the broker (and disconnected).
    status, _ = yield http("DELETE", f"{env.agent.url}/device/m1", bearer=user("acme"))
    assert status == 200
    again = MqttDevice(port, mqtt["username"], mqtt["password"])
    rc = yield blocking(again.connect)
    assert rc.is_failure
    again.client.loop_stop()
    device.client.loop_stop()
    status, body = yield http("GET", f"{env.agent.url}/tss/v1/devices/m2/data", bearer=user("acme"))
    assert status == 200 and body["paging"]["totalItems"] == 0
    acme.leave()


@pytest_twisted.inlineCallbacks
def test_actuation_over_wamp_and_http_reaches_the_device(env):
    made = yield create(env, "acme", "a1")
    mqtt = made["credentials"]["mqtt"]
    device = MqttDevice(env.broker.port, mqtt["username"], mqtt["password"])
    rc = yield blocking(device.connect)
    assert not rc.is_failure
    yield blocking(device.subscribe, "acme:a1/config")
    acme = yield wamp(env.router.ws_url, env.router.port, "acme", user("acme"))
    result = yield acme.call("iot_agent.device.actuate", "a1", {"status": "reboot"})
    assert result["accepted"] is True
    topic, payload = yield blocking(device.next_message)
    assert topic == "acme:a1/config" and payload == b'{"status":"reboot"}'
    status, body = yield http("PUT", f"{env.agent.url}/device/a1/actuate", {"attrs": {"temperature": "18"}},
                              bearer=user("acme"))
    assert status == 200 and body["accepted"] is True
    topic, payload = yield blocking(device.next_message)
    assert payload == b'{"temperature":18.0}'
    with pytest.raises(ApplicationError) as caught:
        yield acme.call("iot_agent.device.actuate", "a1", {"temperature": "warm"})
    assert caught.value.error == "iot_agent.error.invalid_request" and "float" in caught.value.args[0]
    with pytest.raises(ApplicationError) as caught:
        yield acme.call("iot_agent.device.actuate", "nobody", {"x": 1})
    assert caught.value.error == "iot_agent.error.no_such_device"
    device.close()
    acme.leave()


# -------------------------------------------------------------- registry

@pytest_twisted.inlineCallbacks
def test_registry_over_wamp_with_events(env):
    acme = yield wamp(env.router.ws_url, env.router.port, "acme", user("acme"))
    events = []
    yield acme.subscribe(lambda e: events.append(e), "iot_agent.device.on_change")
    made = yield acme.call("iot_agent.device.create", {"id": "w1", "label": "pump",
                                                        "attrs": [{"label": "on", "type": "bool"}]})
    assert made["device"]["id"] == "w1" and made["credentials"]["mqtt"]["username"] == "acme:w1"
    updated = yield acme.call("iot_agent.device.update", "w1", {"label": "big pump"})
    assert updated["label"] == "big pump"
    got = yield acme.call("iot_agent.device.get", "w1")
    assert got["label"] == "big pump"
    listed = yield acme.call("iot_agent.device.list")
    assert "w1" in [d["id"] for d in listed]
    with pytest.raises(ApplicationError) as caught:
        yield acme.call("iot_agent.device.create", {"id": "w1", "label": "again"})
    assert caught.value.error == "iot_agent.error.device_exists"
    with pytest.raises(ApplicationError) as caught:
        yield acme.call("iot_agent.device.create", {"label": "x", "attrs": [{"label": "t", "type": "kelvin"}]})
    assert caught.value.error == "iot_agent.error.invalid_request" and "kelvin" in caught.value.args[0]
    yield acme.call("iot_agent.device.delete", "w1")
    yield until(lambda: len(events) == 3)
    assert [e["event"] for e in events] == ["create", "update", "remove"]
    assert events[0]["meta"]["service"] == "acme" and events[0]["data"]["id"] == "w1"
    # HTTP: the tenant comes from the JWT; a JWT of no served tenant is refused.
    status, body = yield http("GET", f"{env.agent.url}/device/w1", bearer=user("acme"))
    assert status == 404
    status, body = yield http("GET", f"{env.agent.url}/device", bearer=user("nobody"))
    assert status == 403 and "not served" in body["message"]
    status, body = yield http("GET", f"{env.agent.url}/device", bearer="not.a.jwt")
    assert status == 401
    acme.leave()


# -------------------------------------------------------------- Kafka-WS

@defer.inlineCallbacks
def ticket(env, tenant):
    status, body = yield http("GET", f"{env.agent.url}/kafka-ws/v1/ticket", bearer=user(tenant))
    assert status == 200 and len(body["ticket"]) == 64 and int(body["ticket"], 16) >= 0
    return body["ticket"]


@pytest_twisted.inlineCallbacks
def test_kafka_ws_filters_tickets_and_close_codes(env):
    agent = env.agent
    made = yield create(env, "acme", "k1")
    t = yield ticket(env, "acme")
    stream = yield kafka_ws(agent.port, f"/kafka-ws/v1/topics/acme.device-data?ticket={t}"
                                        "&fields=attrs/temperature,metadata/deviceid&where=attrs.temperature=gte:20;")
    yield stream.opened
    url = f"{agent.url}/http-agent/v1/incoming-messages"
    for value in (10, 25):
        status, _ = yield http("POST", url, {"data": {"temperature": value, "humidity": 5}},
                               headers=basic(made["credentials"]))
        assert status == 204
    yield stream.wait_messages(1)
    assert stream.messages == [{"attrs": {"temperature": 25.0}, "metadata": {"deviceid": "k1"}}]
    # The ticket was used: 4401.
    again = yield kafka_ws(agent.port, f"/kafka-ws/v1/topics/acme.device-data?ticket={t}")
    code, reason = yield again.closed
    assert code == 4401 and reason == "Invalid ticket"
    missing = yield kafka_ws(agent.port, "/kafka-ws/v1/topics/acme.device-data")
    assert (yield missing.closed) == (4401, "Missing ticket")
    # Another tenant's topic: 4403.
    t = yield ticket(env, "globex")
    foreign = yield kafka_ws(agent.port, f"/kafka-ws/v1/topics/acme.device-data?ticket={t}")
    code, _ = yield foreign.closed
    assert code == 4403
    # Each malformed expression, its code.
    for query, code in (("where=x=1", 4000), ("where=xx=foo:1;", 4001), ("where=xx=in:%22%5Cq%22;", 4002),
                        ("where=xx=gt:1,2;", 4003), ("where=xx=gt:abc;", 4004), ("where=x=1;", 4000)):
        t = yield ticket(env, "acme")
        bad = yield kafka_ws(agent.port, f"/kafka-ws/v1/topics/acme.device-data?ticket={t}&{query}")
        closed_code, reason = yield bad.closed
        assert closed_code == code, (query, reason)
    # An expired ticket (lifetime 3 s here): 4401.
    t = yield ticket(env, "acme")
    yield task.deferLater(reactor, 3.5, lambda: None)  # the ticket's lifetime is the point
    late = yield kafka_ws(agent.port, f"/kafka-ws/v1/topics/acme.device-data?ticket={t}")
    assert (yield late.closed)[0] == 4401
    # The first stream reached its lifetime (4 s here): 4408.
    code, reason = yield stream.closed
    assert code == 4408 and reason == "Connection lifetime"
    status, _ = yield http("GET", f"{agent.url}/kafka-ws/v1/topics/acme.device-data")
    assert status == 426


# --------------------------------------------------------------- tenants

@pytest_twisted.inlineCallbacks
def test_tenant_made_at_run_time_is_served_within_a_second_and_a_deleted_one_detached(env):
    agent = env.agent
    started = time.monotonic()
    yield blocking(make_tenant, env.router, "initech")
    yield blocking(_wait_served, agent, {"initech"}, 5.0)
    assert time.monotonic() - started < 1.5, "served later than a second after the router's answer"
    made = yield create(env, "initech", "i1")
    status, _ = yield http("POST", f"{agent.url}/http-agent/v1/incoming-messages", {"data": {"temperature": 1}},
                           headers=basic(made["credentials"]))
    assert status == 204
    status, _ = yield http("DELETE", f"{env.router.http_url}/realms/initech", bearer=ADMIN)
    assert status == 200
    yield until(lambda: "initech" not in agent.status()["router"]["tenants"])
    status, body = yield http("POST", f"{agent.url}/http-agent/v1/incoming-messages", {"data": {"temperature": 2}},
                              headers=basic(made["credentials"]))
    assert status == 403
    mqtt = made["credentials"]["mqtt"]
    device = MqttDevice(env.broker.port, mqtt["username"], mqtt["password"])
    rc = yield blocking(device.connect)
    assert rc.is_failure  # its broker account is disabled with the tenant
    device.client.loop_stop()


# --------------------------------------------------------------- restart

@pytest_twisted.inlineCallbacks
def test_restart_and_kill_lose_nothing_persisted(env):
    agent = env.agent
    made = yield create(env, "globex", "r1")
    url = f"{agent.url}/http-agent/v1/incoming-messages"
    for i in range(20):
        status, _ = yield http("POST", url, {"data": {"humidity": i}}, headers=basic(made["credentials"]))
        assert status == 204
    mqtt = made["credentials"]["mqtt"]
    device = MqttDevice(env.broker.port, mqtt["username"], mqtt["password"])
    assert not (yield blocking(device.connect)).is_failure
    yield blocking(agent.kill9)
    # While the agent is gone the broker keeps what devices send for its persistent sessions.
    for i in range(20, 30):
        rc = yield blocking(device.publish, "globex:r1/attrs", {"humidity": i})
        assert not rc.is_failure
    yield blocking(agent.start)
    yield blocking(_wait_served, agent, {"acme", "globex"})

    @defer.inlineCallbacks
    def stored():
        status, body = yield http("GET", f"{agent.url}/tss/v1/devices/r1/attrs/humidity/data?order=asc",
                                  bearer=user("globex"))
        # Two connections share the subscription: arrival order (the timestamp) may differ from sending order.
        return sorted(d["value"] for d in body["data"])
    deadline = reactor.seconds() + 20
    values = yield stored()
    while values != list(range(30)) and reactor.seconds() < deadline:
        yield task.deferLater(reactor, 0.1, lambda: None)
        values = yield stored()
    assert values == list(range(30))
    device.close()


# ------------------------------------------------------------ PostgreSQL

@pytest_twisted.inlineCallbacks
def test_postgresql_database_keeps_registry_and_data_across_restart(env, tmp_path):
    from .pg import own_database

    with own_database("iot_agent") as dsn:
        agent = Agent(tmp_path, env.router, None, "--tenants", "globex", env={"IOT_AGENT_DATABASE": dsn})
        try:
            yield blocking(agent.start)
            yield blocking(agent.wait_for, "joined realm globex")
            status, body = yield http("POST", f"{agent.url}/device", {"id": "pg1", "label": "pg",
                                                                       "attrs": [{"label": "n", "type": "integer"}]},
                                      bearer=user("globex"))
            assert status == 200 and body["mqtt_provisioned"] is False  # this agent has no broker
            for n in range(5):
                status, _ = yield http("POST", f"{agent.url}/http-agent/v1/incoming-messages", {"data": {"n": n}},
                                       headers=basic(body["credentials"]))
                assert status == 204
            assert agent.status()["store"].startswith("PostgreSQL 127.0.0.1")  # never the credentials
            yield blocking(agent.kill9)
            yield blocking(agent.start)
            yield blocking(agent.wait_for, "joined realm globex")
            status, got = yield http("GET", f"{agent.url}/tss/v1/devices/pg1/attrs/n/data?order=asc",
                                     bearer=user("globex"))
            assert status == 200 and [d["value"] for d in got["data"]] == [0, 1, 2, 3, 4]
        finally:
            agent.stop()


# ------------------------------------------------- filtered subscriptions

def subscribe_filtered(session, handler, topic, **custom):
    """SUBSCRIBE with custom options (Autobahn-Python has no way to send them):
    the message is marshalled while it is sent, so the patch lasts one call."""
    from autobahn.wamp import message

    original = message.Subscribe.marshal_options

    def marshal_options(self):
        options = original(self)
        if self.topic == topic:
            options.update(custom)
        return options
    message.Subscribe.marshal_options = marshal_options
    try:
        return session.subscribe(handler, topic)
    finally:
        message.Subscribe.marshal_options = original


@pytest_twisted.inlineCallbacks
def test_router_side_filtered_subscription_on_device_data(env):
    made = yield create(env, "acme", "f1")
    acme = yield wamp(env.router.ws_url, env.router.port, "acme", user("acme"))
    filtered, plain = [], []
    yield subscribe_filtered(acme, lambda msg: filtered.append(msg), "device-data",
                             _fields="attrs/temperature,metadata/deviceid",
                             _where="attrs.temperature=gt:20;metadata.deviceid=in:f1;")
    yield acme.subscribe(lambda msg: plain.append(msg), "device-data")
    for value in (15, 30):
        status, _ = yield http("POST", f"{env.agent.url}/http-agent/v1/incoming-messages",
                               {"data": {"temperature": value, "humidity": 1}}, headers=basic(made["credentials"]))
        assert status == 204
    yield until(lambda: len(plain) == 2 and len(filtered) == 1)
    assert filtered == [{"attrs": {"temperature": 30.0}, "metadata": {"deviceid": "f1"}}]
    for custom, uri in (({"_where": "attrs.t=between:1,2;"}, "relayrouter.error.filter.invalid_operator"),
                        ({"_fields": "attrs("}, "relayrouter.error.filter.invalid_syntax"),
                        ({"_where": "attrs.t=gt:x;"}, "relayrouter.error.filter.invalid_value")):
        with pytest.raises(ApplicationError) as caught:
            yield subscribe_filtered(acme, lambda msg: None, "device-data", **custom)
        assert caught.value.error == uri
    acme.leave()


@pytest_twisted.inlineCallbacks
def test_kafka_ws_device_events_and_a_subject_other_clients_publish(env):
    t = yield ticket(env, "acme")
    events = yield kafka_ws(env.agent.port, f"/kafka-ws/v1/topics/acme.iot_agent.device.on_change?ticket={t}"
                                            "&fields=event,data/id")
    yield events.opened
    yield create(env, "acme", "e1")
    yield events.wait_messages(1)
    assert events.messages == [{"event": "create", "data": {"id": "e1"}}]
    t = yield ticket(env, "acme")
    alerts = yield kafka_ws(env.agent.port, f"/kafka-ws/v1/topics/acme.alerts?ticket={t}&where=level=gte:3;")
    yield alerts.opened
    publisher = yield wamp(env.router.ws_url, env.router.port, "acme", token(service="acme", role="agent"))
    # The agent subscribes in the router when the WebSocket opens; publish until the first one gets through.
    deadline = reactor.seconds() + 10
    while not alerts.messages and reactor.seconds() < deadline:
        publisher.publish("alerts", {"level": 1})
        publisher.publish("alerts", {"level": 5, "text": "hot"})
        yield task.deferLater(reactor, 0.1, lambda: None)
    assert alerts.messages and all(m["level"] == 5 for m in alerts.messages)
    publisher.leave()


@pytest_twisted.inlineCallbacks
def test_mqtt5_workers_ingest_too(env, tmp_path):
    """The same broker and tenants, a second agent (its own registry) whose ingesting
    connections speak MQTT 5 (its own share group, so it sees every device message too)."""
    other = Agent(tmp_path, env.router, env.broker, "--mqtt-worker-protocol", "5", "--mqtt-client-id", "agent-v5",
                  "--mqtt-share-group", "v5")
    try:
        yield blocking(other.start)
        yield blocking(_wait_served, other, {"acme"})
        status, made = yield http("POST", f"{other.url}/device", {"id": "v5", "label": "v5"}, bearer=user("acme"))
        assert status == 200 and made["mqtt_provisioned"]
        mqtt = made["credentials"]["mqtt"]
        device = MqttDevice(env.broker.port, mqtt["username"], mqtt["password"])
        assert not (yield blocking(device.connect)).is_failure
        rc = yield blocking(device.publish, "acme:v5/attrs", {"temperature": 5.5})
        assert not rc.is_failure
        yield until(lambda: other.status()["counters"].get("stored", 0) == 1)
        device.close()
    finally:
        other.stop()


@pytest_twisted.inlineCallbacks
def test_an_event_the_session_cannot_send_is_stored_and_counted_apart_from_an_offline_tenant(env, tmp_path):
    """MessagePack holds no integer of 2^64 or more: such a message is stored
    (history has it) but its WAMP event cannot be sent; that is counted as
    ``not_published_failed`` and logged, not as a tenant that is offline."""
    other = Agent(tmp_path, env.router, None, "--serializer", "msgpack", "--tenants", "acme")
    try:
        yield blocking(other.start)
        yield blocking(wait_served, other, {"acme"}, 20.0, False)
        status, made = yield http("POST", f"{other.url}/device", {"id": "big", "label": "big"}, bearer=user("acme"))
        assert status == 200, made
        url = f"{other.url}/http-agent/v1/incoming-messages"
        for value in (2 ** 70, 7):
            status, _ = yield http("POST", url, {"data": {"n": value}}, headers=basic(made["credentials"]))
            assert status == 204
        yield until(lambda: other.status()["counters"].get("stored", 0) == 2)
        counters = other.status()["counters"]
        assert counters.get("not_published_failed") == 1 and counters.get("published") == 1, counters
        assert "not_published_tenant_offline" not in counters, counters
        status, body = yield http("GET", f"{other.url}/tss/v1/devices/big/attrs/n/data?order=asc",
                                  bearer=user("acme"))
        assert status == 200 and [d["value"] for d in body["data"]] == [2 ** 70, 7]
        logged = [line for line in other.all_output if "publishing to device-data failed" in line]
        assert len(logged) == 1 and other.new_faults() == [], logged
    finally:
        other.stop()
