"""practable-compatible access: codes, the raw WebSocket, the raw <-> WAMP bridge,
scopes, expiry, booking-id denial, the admin API and /status."""

import time

import pytest
import treq
import pytest_twisted
from twisted.internet import defer, reactor

from ..support import connect_ws, eventually
from .support import (HS_SECRET, admin_token, connect_topic, http, open_raw, post_access, practable_token,
                      relay_config, start, stop, RawRefused)


@pytest.fixture
def router(monkeypatch, tmp_path):
    running = pytest_twisted.blockon(start(relay_config(monkeypatch, stats_interval=0), tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


def jwt_client(router, token, **kw):
    return connect_ws(router, realm="lab", authmethods=["ticket"], ticket=token, **kw)


@pytest_twisted.inlineCallbacks
def test_code_flow_and_fan_out_without_echo(router):
    code, body = yield post_access(router, "pend00", practable_token())
    assert code == 200
    uri = body["uri"]
    assert uri.startswith(f"ws://127.0.0.1:{router.ws_port}/session/pend00?code=")
    experiment = yield open_raw(router, uri)
    # The code was used up: a second upgrade with it is refused.
    with pytest.raises(RawRefused) as refused:
        yield open_raw(router, uri)
    assert "401" in str(refused.value.reason)
    page1 = yield connect_topic(router)
    page2 = yield connect_topic(router)
    experiment.send_text('{"v": 1.5}')
    assert (yield page1.next()) == '{"v": 1.5}'
    assert (yield page2.next()) == '{"v": 1.5}'
    page1.send_binary(b"\x00\x01cmd")
    assert (yield experiment.next()) == b"\x00\x01cmd"
    assert (yield page2.next()) == b"\x00\x01cmd"
    # Nothing came back to the senders: the next thing each sees is the next frame.
    page2.send_text("last")
    assert (yield experiment.next()) == "last"
    assert (yield page1.next()) == "last"
    assert not experiment.factory.inbox and not page2.factory.inbox


@pytest_twisted.inlineCallbacks
def test_access_refusals(router):
    ok = practable_token()
    assert (yield post_access(router, "other", ok))[0] == 401  # wrong topic
    response = yield treq.post(f"{router.http_url}/shell/pend00", headers={"Authorization": [ok]})
    assert response.code == 404  # not a served prefix
    yield response.content()
    assert (yield post_access(router, "pend00", practable_token(prefix="shell")))[0] == 401
    assert (yield post_access(router, "pend00", practable_token(aud="https://elsewhere")))[0] == 401
    assert (yield post_access(router, "pend00", practable_token(lifetime=-10)))[0] == 401
    code, body = yield post_access(router, "pend00", practable_token(booking_id=None))
    assert code == 400 and "booking id" in body["message"]
    assert (yield post_access(router, "pend00", practable_token(scopes=("stats",))))[0] == 401
    code, _, body = yield http("POST", f"{router.http_url}/session/pend00")
    assert code == 401 and "Authorization" in body["message"]
    # With or without Bearer
    assert (yield post_access(router, "pend00", ok, bearer=True))[0] == 200


@pytest_twisted.inlineCallbacks
def test_read_only_cannot_write_and_write_only_reads_nothing(router):
    writer = yield connect_topic(router, scopes=("write",))
    reader = yield connect_topic(router, scopes=("read",))
    other = yield connect_topic(router)
    reader.send_text("from a reader")
    writer.send_text("from the writer")
    assert (yield other.next()) == "from the writer"
    assert (yield reader.next()) == "from the writer"
    other.send_text("to all")
    assert (yield reader.next()) == "to all"
    yield eventually(lambda: any(p.refused for p in router.service.relay.peers))
    assert not writer.factory.inbox


@pytest_twisted.inlineCallbacks
def test_raw_and_wamp_share_the_stream_both_ways(router):
    raw = yield connect_topic(router)
    watcher = yield jwt_client(router, practable_token(sub="dashboard"))
    got = []
    arrived = defer.Deferred()

    def on_event(*args, **kwargs):
        got.append(args)
        if len(got) == 2:
            arrived.callback(None)

    yield watcher.subscribe(on_event, "relay.session.pend00")
    raw.send_text("hello wamp")
    raw.send_binary(b"\xff\x00video")
    yield arrived.addTimeout(10, reactor)
    assert got == [("hello wamp",), (b"\xff\x00video",)]
    yield watcher.publish("relay.session.pend00", "text from wamp")
    yield watcher.publish("relay.session.pend00", b"\x01\x02")
    yield watcher.publish("relay.session.pend00", {"set": 3})
    assert (yield raw.next()) == "text from wamp"
    assert (yield raw.next()) == b"\x01\x02"
    assert (yield raw.next()) == '{"set":3}'


@pytest_twisted.inlineCallbacks
def test_connection_closed_at_token_exp(router):
    # Long enough to connect on a loaded machine, short enough to wait for.
    raw = yield connect_topic(router, lifetime=5)
    code, reason = yield raw.closed(timeout=30)
    assert code == 1000 and reason == "wamp.close.token_expired"


@pytest_twisted.inlineCallbacks
def test_deny_mid_session_closes_voids_codes_and_refuses(router):
    admin = admin_token()
    raw = yield connect_topic(router, booking_id="bk-9")
    other = yield connect_topic(router, booking_id="bk-10")
    _, pending = yield post_access(router, "pend00", practable_token(booking_id="bk-9"))
    code, _, _ = yield http("GET", f"{router.http_url}/bids/allow", headers={"Authorization": admin})
    assert code == 200
    _, _, allowed = yield http("GET", f"{router.http_url}/bids/allow", headers={"Authorization": admin})
    assert set(allowed["booking_ids"]) >= {"bk-9", "bk-10"}
    exp = int(time.time()) + 3600
    code, _, body = yield http("POST", f"{router.http_url}/bids/deny?bid=bk-9&exp={exp}",
                               headers={"Authorization": admin})
    assert code == 204, body
    assert (yield raw.closed()) == (1000, "wamp.close.revoked")
    with pytest.raises(RawRefused):  # the pending code was voided
        yield open_raw(router, pending["uri"])
    code, body = yield post_access(router, "pend00", practable_token(booking_id="bk-9"))
    assert code == 403 and "denied" in body["message"]
    _, _, denied = yield http("GET", f"{router.http_url}/bids/deny", headers={"Authorization": admin})
    assert denied == {"booking_ids": ["bk-9"]}
    _, _, allowed = yield http("GET", f"{router.http_url}/bids/allow", headers={"Authorization": admin})
    assert "bk-9" not in allowed["booking_ids"] and "bk-10" in allowed["booking_ids"]
    other.send_text("still here")  # the other booking is untouched
    code, _, _ = yield http("POST", f"{router.http_url}/bids/allow?bid=bk-9&exp={exp}",
                            headers={"Authorization": admin})
    assert code == 204
    assert (yield post_access(router, "pend00", practable_token(booking_id="bk-9")))[0] == 200
    # bad admin requests
    past = int(time.time()) - 10
    code, _, body = yield http("POST", f"{router.http_url}/bids/deny?bid=x&exp={past}",
                               headers={"Authorization": admin})
    assert code == 400
    code, _, _ = yield http("POST", f"{router.http_url}/bids/deny?exp={exp}", headers={"Authorization": admin})
    assert code == 422
    code, _, body = yield http("GET", f"{router.http_url}/bids/deny",
                               headers={"Authorization": practable_token()})
    assert code == 403 and "relay:admin" in body["message"]


@pytest_twisted.inlineCallbacks
def test_status_reports_connections(router):
    raw = yield connect_topic(router, scopes=("read", "write"))
    yield connect_topic(router, scopes=("read",))
    raw.send_text("12345")
    relay = router.service.relay
    yield eventually(lambda: sum(p.tx.messages for p in relay.peers) == 1)
    code, _, body = yield http("GET", f"{router.http_url}/status",
                               headers={"Authorization": admin_token(scopes=("relay:stats",))})
    assert code == 200
    assert len(body) == 2
    for report in body:
        assert set(report) >= {"can_read", "can_write", "connected_at", "expires_at", "remote_addr",
                               "scopes", "topic", "user_agent", "stats"}
        assert report["topic"] == "pend00" and report["remote_addr"].startswith("127.0.0.1:")
        assert report["connected_at"].endswith("Z")
    writer = next(r for r in body if r["can_write"])
    assert writer["stats"]["rx"]["size"] == 5.0 and writer["stats"]["rx"]["never"] is False
    code, _, _ = yield http("GET", f"{router.http_url}/status", headers={"Authorization": admin_token()})
    assert code == 403


@pytest_twisted.inlineCallbacks
def test_video_page_and_player_are_served_without_listings(router):
    for path, kind in (("video.html", b"text/html"), ("jsmpeg.min.js", b"javascript"), ("video.js", b"javascript")):
        response = yield treq.get(f"{router.http_url}/relay/{path}")
        body = yield response.content()
        assert response.code == 200 and body
        assert kind in response.headers.getRawHeaders(b"content-type")[0]
    response = yield treq.get(f"{router.http_url}/relay/")
    yield response.content()
    assert response.code == 404


@pytest_twisted.inlineCallbacks
def test_no_token_or_code_reaches_the_log(monkeypatch, tmp_path):
    from twisted.logger import formatEvent, globalLogPublisher

    from relayrouter.logs import event_as_json

    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        running = yield start(relay_config(monkeypatch, stats_interval=0), tmp_path / "state")
        good = practable_token(booking_id="secret-booking")
        bad = good[:-3] + "abc"
        code, body = yield post_access(running, "pend00", good)
        used = body["uri"]
        client = yield open_raw(running, used)
        with pytest.raises(RawRefused):
            yield open_raw(running, used)  # the used code, refused
        assert (yield post_access(running, "pend00", bad))[0] == 401
        exp = int(time.time()) + 60
        yield http("POST", f"{running.http_url}/bids/deny?bid=secret-booking&exp={exp}",
                   headers={"Authorization": admin_token()})
        yield client.closed()
        yield stop(running)
    finally:
        globalLogPublisher.removeObserver(events.append)
    secrets = [good, bad, used.split("code=", 1)[1], HS_SECRET]
    logged = "\n".join(formatEvent(e) + " " + repr(e) for e in events)
    as_json = "".join(event_as_json(e) for e in events)
    for text in (logged, as_json):
        assert "Booking id denied" in text  # the log is being captured
        for secret in secrets:
            assert secret not in text and secret[:24] not in text
