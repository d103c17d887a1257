"""/metrics, /health and /ready on a real router, read with real HTTP clients and the
official Prometheus text parser."""

import json
import os

import pytest
import pytest_twisted
import treq
from autobahn.wamp.types import PublishOptions
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, endpoints, protocol, reactor

from ..security_support import start, stop
from ..support import LeftBeforeJoining, connect_rawsocket, connect_ws, eventually, within

TOKEN = "metrics-token-0123456789abcdef"


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv("RR_TEST_METRICS_TOKEN", TOKEN)


def router(tmp_path, **metrics):
    data = {"realms": [{"name": "realm1", "anonymous": True}]}
    if metrics:
        data["metrics"] = metrics
    return start(data, tmp_path / "state")


@defer.inlineCallbacks
def get(running, path, token=None):
    headers = {"Authorization": [f"Bearer {token}"]} if token else {}
    response = yield treq.get(running.http_url + path, headers=headers, timeout=30)
    body = yield treq.content(response)
    return response, body


@defer.inlineCallbacks
def scrape(running, token=None) -> dict:
    """{(name, labels as a sorted tuple): value} of every sample."""
    response, body = yield get(running, "/metrics", token)
    assert response.code == 200, body
    assert response.headers.getRawHeaders("content-type")[0].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def delta(before, after, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


@pytest_twisted.inlineCallbacks
def test_counters_move_by_exactly_what_was_sent(tmp_path):
    running = yield router(tmp_path)
    try:
        subscriber = yield connect_ws(running)
        caller = yield connect_rawsocket(running, serializer="msgpack")
        got = []
        yield subscriber.subscribe(got.append, "com.example.topic")
        yield subscriber.register(lambda x: x * 2, "com.example.double")
        before = yield scrape(running)
        for i in range(7):
            yield caller.publish("com.example.topic", i, options=PublishOptions(acknowledge=True))
        for i in range(5):
            assert (yield caller.call("com.example.double", i)) == 2 * i
        yield eventually(lambda: len(got) == 7)
        after = yield scrape(running)
    finally:
        yield stop(running)
    assert delta(before, after, "relayrouter_messages_received_total", type="PUBLISH") == 7
    assert delta(before, after, "relayrouter_messages_received_total", type="CALL") == 5
    assert delta(before, after, "relayrouter_messages_received_total", type="YIELD") == 5
    assert delta(before, after, "relayrouter_messages_sent_total", type="EVENT") == 7
    assert delta(before, after, "relayrouter_messages_sent_total", type="PUBLISHED") == 7
    assert delta(before, after, "relayrouter_messages_sent_total", type="INVOCATION") == 5
    assert delta(before, after, "relayrouter_messages_sent_total", type="RESULT") == 5
    assert delta(before, after, "relayrouter_publications_total") == 7
    assert delta(before, after, "relayrouter_call_duration_seconds_count") == 5
    assert delta(before, after, "relayrouter_call_duration_seconds_bucket", le="+Inf") == 5
    assert delta(before, after, "relayrouter_bytes_received_total") > 0
    assert delta(before, after, "relayrouter_bytes_sent_total") > 0
    assert after[("relayrouter_sessions", (("realm", "realm1"), ("transport", "websocket")))] == 1
    assert after[("relayrouter_sessions", (("realm", "realm1"), ("transport", "rawsocket")))] == 1
    assert after[("relayrouter_auth_total", (("method", "anonymous"), ("outcome", "accepted"),
                                             ("realm", "realm1")))] == 2
    assert ("relayrouter_outbound_queue_messages_max", ()) in after
    assert ("process_resident_memory_bytes", ()) in after


@pytest_twisted.inlineCallbacks
def test_bytes_received_are_each_message_once_on_both_transports_and_outlive_the_connection(tmp_path):
    # Bytes read are tallied by the protocols as they frame messages (Autobahn's
    # count for WebSocket, ours for RawSocket), not per message by the core.
    running = yield router(tmp_path)
    payload = "x" * 10_000
    try:
        ws = yield connect_ws(running)
        raw = yield connect_rawsocket(running, serializer="msgpack")
        conns = {conn.info.kind: conn for conn in running.service.connections()}
        read = {kind: conn.rx_bytes for kind, conn in conns.items()}
        sent = {kind: conn.tx_bytes for kind, conn in conns.items()}
        before = yield scrape(running)
        for client in (ws, raw):
            yield client.publish("com.example.big", payload, options=PublishOptions(acknowledge=True))
        grown = {kind: conn.rx_bytes - read[kind] for kind, conn in conns.items()}
        answered = {kind: conn.tx_bytes - sent[kind] for kind, conn in conns.items()}
        middle = yield scrape(running)
        raw.leave()
        yield eventually(lambda: len(running.service.connections()) == 1)
        after = yield scrape(running)
    finally:
        yield stop(running)
    # One PUBLISH each: the payload and a few dozen bytes of WAMP around it; a PUBLISHED back.
    assert all(10_000 < n < 10_100 for n in grown.values()), grown
    assert all(0 < n < 100 for n in answered.values()), answered
    assert delta(before, middle, "relayrouter_bytes_received_total") == sum(grown.values())
    assert delta(before, middle, "relayrouter_bytes_sent_total") == sum(answered.values())
    # The connection that left keeps its bytes in the totals (plus its GOODBYE).
    assert 0 < delta(middle, after, "relayrouter_bytes_received_total") < 100
    assert delta(middle, after, "relayrouter_bytes_sent_total") > 0


@pytest_twisted.inlineCallbacks
def test_refused_logins_are_counted_by_method_and_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("RR_TEST_TICKET", "right-ticket-0123456789")
    running = yield start({"realms": [{"name": "realm1", "auth": {"ticket": {"principals": [
        {"authid": "alice", "role": "user", "secret_env": "RR_TEST_TICKET"}]}}}]}, tmp_path / "state")
    try:
        before = yield scrape(running)
        with pytest.raises(LeftBeforeJoining):
            yield connect_ws(running, authmethods=["ticket"], authid="alice", ticket="wrong")
        yield connect_ws(running, authmethods=["ticket"], authid="alice", ticket="right-ticket-0123456789")
        after = yield scrape(running)
    finally:
        yield stop(running)
    assert delta(before, after, "relayrouter_auth_total", realm="realm1", method="ticket",
                 outcome="wamp.error.authentication_failed") == 1
    assert delta(before, after, "relayrouter_auth_total", realm="realm1", method="ticket", outcome="accepted") == 1
    assert delta(before, after, "relayrouter_login_limiter_total", event="failures") == 1


@pytest_twisted.inlineCallbacks
def test_who_may_see_what(tmp_path, token_env):
    # loopback_open = false: as if a reverse proxy on this host forwarded the world.
    running = yield router(tmp_path, loopback_open=False, secret_env="RR_TEST_METRICS_TOKEN")
    try:
        response, body = yield get(running, "/metrics")
        assert response.code == 401 and "Authorization: Bearer" in json.loads(body)["message"]
        response, body = yield get(running, "/metrics", token="not-the-token")
        assert response.code == 401 and json.loads(body)["message"] == "the metrics token is wrong"
        yield scrape(running, TOKEN)
        response, body = yield get(running, "/health")
        assert json.loads(body) == {"status": "ok"}  # no realm names: they are the tenant list
        response, body = yield get(running, "/health", token=TOKEN)
        assert json.loads(body)["realms"] == {"realm1": 0}
        response, body = yield get(running, "/ready")
        assert response.code == 200 and json.loads(body) == {"ready": True}
        response, body = yield get(running, "/ready", token=TOKEN)
        assert json.loads(body) == {"ready": True, "problems": []}
    finally:
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_without_a_token_only_loopback_reads_metrics(tmp_path):
    running = yield router(tmp_path, loopback_open=False)
    try:
        response, body = yield get(running, "/metrics")
        assert response.code == 403 and "secret_env or secret_file" in json.loads(body)["message"]
    finally:
        yield stop(running)
    running = yield router(tmp_path)  # the default: loopback callers are operators
    try:
        yield scrape(running)
        response, body = yield get(running, "/health")
        assert json.loads(body)["realms"] == {"realm1": 0} and "version" in json.loads(body)
    finally:
        yield stop(running)


class _Raw(protocol.Protocol):
    def __init__(self):
        self.data = b""
        self.got = defer.Deferred()

    def dataReceived(self, data):
        self.data += data
        if b"\r\n\r\n" in self.data and self.got is not None:
            d, self.got = self.got, None
            d.callback(self.data)


@pytest_twisted.inlineCallbacks
def test_ready_is_false_while_shutting_down(tmp_path):
    running = yield router(tmp_path)
    # A kept-alive HTTP connection made before the shutdown can still ask.
    raw = _Raw()
    yield endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", running.ws_port), raw)
    client = yield connect_ws(running)
    running.service._stopping = True  # what the SIGTERM handler sets first
    try:
        raw.transport.write(b"GET /ready HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = yield within(raw.got)
        assert answer.startswith(b"HTTP/1.1 503")
        assert b'"problems": ["shutting down"]' in answer
    finally:
        running.service._stopping = False
        raw.transport.loseConnection()
        yield client.leave()
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_ready_is_false_until_jwks_keys_are_loaded(tmp_path):
    running = yield start({"realms": [{"name": "realm1", "auth": {"jwt": {
        "keys": [{"jwks_url": "http://127.0.0.1:9/jwks.json"}], "algorithms": ["RS256"],
        "audience": "relayrouter", "authrole": "user"}}}]},
        tmp_path / "state")
    try:
        response, body = yield get(running, "/ready")
        assert response.code == 503
        problems = json.loads(body)["problems"]
        assert problems and problems[0].startswith("JWKS keys are not loaded yet")
    finally:
        yield stop(running)
