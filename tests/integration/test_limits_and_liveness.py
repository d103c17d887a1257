"""Inbound limits, opening-handshake deadlines, heartbeats and churn, over real sockets."""

import gc

import pytest

import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, reactor

from relayrouter import config as cfg
from relayrouter.core.limits import SessionLimits

from ..refusals import assert_refused
from ..support import (
    connect_raw, connect_rawsocket, connect_tcp, connect_ws, eventually, rawsocket_session, rss_bytes,
    meta_view, start_router, within,
)

BOTH = (cfg.Listener("websocket", "tcp:0:interface=127.0.0.1"),
        cfg.Listener("rawsocket", "tcp:0:interface=127.0.0.1"))


@defer.inlineCallbacks
def router_with(limits=cfg.Limits(), realm_limits=SessionLimits()):
    running = yield start_router(cfg.Config(
        listeners=BOTH, limits=limits, realms=(cfg.RealmConfig("realm1", limits=realm_limits),)))
    return running


@defer.inlineCallbacks
def stop_router(running):
    for session in list(running.router.sessions()):
        session.peer.close()
    yield running.service.stopService()


def pings(client) -> int:
    """RawSocket PING frames the router sent ``client``."""
    return sum(kind == 1 for kind, _ in client.frames)


# ------------------------------------------------------------------ floods


@pytest_twisted.inlineCallbacks
def test_publish_flood_above_the_rate_limit():
    # a slow refill: 40 messages sent at once, at least 20 refused even if
    # a loaded machine takes seconds to handle them
    running = yield router_with(realm_limits=SessionLimits(rate=2, burst=10))
    try:
        other = yield connect_ws(running)
        flooder = yield connect_raw(running)
        yield flooder.hello()
        for request in range(1, 41):
            flooder.send([16, request, {"acknowledge": True}, "com.example.flood"])
        replies = []
        for _ in range(40):
            replies.append((yield flooder.next()))
        refused = [r for r in replies if r[0] == 8]
        assert len(refused) >= 20
        assert refused[0][4] == "relayrouter.error.limit_exceeded"
        assert refused[0][5] == ["rate: this session sent more than 2 messages per second (burst 10); slow down"]
        assert running.realm().counters["limit.rate"] == len(refused)
        # the budget is the flooder's alone: another session's call is answered,
        # with both sessions still there
        assert (yield other.call("wamp.session.count")) == 2
    finally:
        yield stop_router(running)


@pytest_twisted.inlineCallbacks
def test_oversized_rawsocket_message_gets_abort_payload_size_exceeded():
    running = yield router_with(limits=cfg.Limits(max_message_size=4096))
    try:
        healthy = yield connect_rawsocket(running)
        client, welcome = yield rawsocket_session(running)
        assert welcome[0] == 2
        client.send_json([16, 1, {}, "com.example.big", ["x" * 10_000]])
        abort = yield client.next_message()
        assert abort[0] == 3 and abort[2] == "wamp.error.payload_size_exceeded"
        assert "limits.max_message_size" in abort[1]["message"]
        yield within(client.lost)
        yield healthy.publish("com.example.still_fine")
    finally:
        yield stop_router(running)


@pytest_twisted.inlineCallbacks
def test_deeply_nested_message_is_refused_over_websocket():
    running = yield router_with()
    try:
        raw = yield connect_raw(running)
        yield raw.hello()
        deep = "[" * 500 + "]" * 500
        raw.send_bytes(f'[16, 1, {{}}, "com.example.deep", [{deep}]]'.encode())
        abort = yield raw.next()
        assert abort[0] == 3 and "limits.max_depth" in abort[1]["message"]
        assert running.realm().counters["too_deep"] == 1
    finally:
        yield stop_router(running)


# ------------------------------------------------------- opening deadlines


@pytest_twisted.inlineCallbacks
def test_connections_that_never_join_are_closed_at_the_deadline():
    running = yield router_with(limits=cfg.Limits(hello_timeout=0.5))
    try:
        silent_ws = yield connect_tcp(running.ws_port)  # never sends an HTTP request
        half_http = yield connect_tcp(running.ws_port)
        half_http.transport.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and stops
        silent_rs = yield connect_tcp(running.rawsocket_port)  # never does the handshake
        no_hello_rs = yield connect_tcp(running.rawsocket_port, rawsocket=1)
        no_hello_ws = yield connect_raw(running)  # upgraded, never says HELLO
        started = reactor.seconds()
        for name, client in [("silent_ws", silent_ws), ("half_http", half_http),
                             ("silent_rs", silent_rs), ("no_hello_rs", no_hello_rs)]:
            yield within(client.lost, 10).addErrback(lambda f, name=name: pytest.fail(f"{name} not closed"))
        yield no_hello_ws.closed()
        assert reactor.seconds() - started < 8
        abort = yield client_abort(no_hello_rs)
        assert "limits.hello_timeout" in abort[1]["message"]
        ws_abort = no_hello_ws.factory.inbox[-1]
        assert_refused(ws_abort, "wamp.error.protocol_violation",
                       "no session was established in time after connecting (limits.hello_timeout)")
    finally:
        yield stop_router(running)


def client_abort(client):
    return client.next_message()  # already received before the connection was lost


# -------------------------------------------------------------- heartbeats

# Autobahn's WebSocket ping timers run on whole seconds (txaio's batched timer).
WS_HEARTBEAT = cfg.Limits(heartbeat_interval=1, heartbeat_timeout=2)


@defer.inlineCallbacks
def caller_waits_on_a_vanished_callee(running, callee_transport, invoked):
    """``invoked()``: a Deferred firing with the next message the callee receives."""
    caller = yield connect_ws(running)
    call = caller.call("com.example.slow")
    invocation = yield invoked()
    assert invocation[0] == 68
    callee_transport.pauseProducing()  # stops reading: no pongs, nothing read
    with pytest.raises(ApplicationError) as error:
        yield within(call, 15)
    assert_refused(error.value, "wamp.error.canceled")
    view = yield meta_view(running)
    # the callee is gone, and its registration with it
    yield view.until(view.session_ids, lambda ids: ids == [caller.details.session])
    assert (yield view.registrations()) == []


@pytest_twisted.inlineCallbacks
def test_websocket_peer_that_stops_answering_pings_is_dropped_and_its_caller_answered():
    running = yield router_with(limits=WS_HEARTBEAT)
    try:
        callee = yield connect_raw(running)
        yield callee.hello()
        callee.send([64, 1, {}, "com.example.slow"])
        assert (yield callee.next())[0] == 65
        # a live peer survives several ping rounds, however long they take
        yield eventually(lambda: callee.factory.pings >= 3, 30)
        view = yield meta_view(running)
        assert len((yield view.session_ids())) == 1
        yield view.leave()
        yield caller_waits_on_a_vanished_callee(running, callee.protocol.transport, callee.next)
        assert running.service.wamp_factories[0].counters["heartbeat_timeouts"] >= 1
    finally:
        yield stop_router(running)


@pytest_twisted.inlineCallbacks
def test_rawsocket_peer_that_stops_answering_pings_is_dropped_and_its_caller_answered():
    limits = cfg.Limits(heartbeat_interval=1, heartbeat_timeout=2, rawsocket_ping=True)
    running = yield router_with(limits=limits)
    try:
        callee, _ = yield rawsocket_session(running)
        callee.send_json([64, 1, {}, "com.example.slow"])
        assert (yield callee.next_message())[0] == 65
        yield eventually(lambda: pings(callee) >= 3, 30)  # pinged, and answered, several times
        view = yield meta_view(running)
        assert len((yield view.session_ids())) == 1
        yield view.leave()
        yield caller_waits_on_a_vanished_callee(running, callee.transport, callee.next_message)
    finally:
        yield stop_router(running)


@pytest_twisted.inlineCallbacks
def test_rawsocket_pings_only_peers_that_ping_by_default():
    running = yield router_with(limits=WS_HEARTBEAT)
    try:
        autobahn_client = yield connect_rawsocket(running)  # cannot parse PING frames
        pinging, _ = yield rawsocket_session(running)
        pinging.send_frame(b"are you there", kind=1)
        # four pings span more than heartbeat_timeout: a client that cannot
        # answer pings would have been dropped by then, had it been pinged
        yield eventually(lambda: pings(pinging) >= 4, 30)
        assert (2, b"are you there") in pinging.frames  # PONG echoes the payload
        yield autobahn_client.publish("com.example.alive")  # never pinged: still connected
        view = yield meta_view(running)
        assert len((yield view.session_ids())) == 2
    finally:
        yield stop_router(running)


# ------------------------------------------------------------------- churn


@pytest_twisted.inlineCallbacks
def test_a_thousand_abrupt_sessions_leave_no_trace():
    running = yield router_with()
    realm = running.realm()
    try:
        @defer.inlineCallbacks
        def one_round(n):
            client, _ = yield rawsocket_session(running)
            client.send_json([32, 1, {}, f"com.example.topic.{n % 7}"])
            client.send_json([64, 2, {}, f"com.example.proc.{n}"])
            yield client.next_message()
            yield client.next_message()
            client.transport.abortConnection()
            yield within(client.lost)

        for n in range(50):
            yield one_round(n)
        yield eventually(lambda: not realm.sessions)
        gc.collect()
        baseline = rss_bytes()
        for n in range(1000):
            yield one_round(n)
        yield eventually(lambda: not realm.sessions)
        gc.collect()
        assert not realm.sessions and not realm.sessions_by_address
        assert not realm.broker.subscriptions_by_id and len(realm.broker.subscriptions) == 0
        assert not realm.dealer.registrations_by_id and len(realm.dealer.registrations) == 0
        assert not running.service.connections()
        growth = rss_bytes() - baseline
        assert growth < 16 * 1024 * 1024, growth
    finally:
        yield stop_router(running)


# ---------------------------------------------------------------- shutdown


@pytest_twisted.inlineCallbacks
def test_shutdown_closes_connections_that_never_joined_within_its_bound():
    running = yield router_with(limits=cfg.Limits(shutdown_timeout=2))
    silent = yield connect_tcp(running.ws_port)
    handshaking = yield connect_tcp(running.rawsocket_port)
    session = yield connect_ws(running)
    started = reactor.seconds()
    yield running.service.shutdown()
    yield within(silent.lost, 5)
    yield within(handshaking.lost, 5)
    details = yield within(session.left, 5)
    assert details.reason == "wamp.close.system_shutdown"
    assert reactor.seconds() - started < 2 + 6  # the bound, and time for a loaded machine
    yield running.service.stopService()
