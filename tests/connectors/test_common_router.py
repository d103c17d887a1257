"""connectors.common's router connection against the real router process:
reconnects after kill -9, a refused credential is logged once and retried slowly."""

import pytest
from autobahn.wamp.exception import ApplicationError
import pytest_twisted
from twisted.internet import defer, reactor, threads
from twisted.logger import LogLevel, globalLogPublisher

from connectors.common import Credentials, RouterConnection, RouterSettings

from ..support import connect_ws, eventually, within
from .processes import RouterProcess, listener

TICKET = "svc-ticket-0123456789-do-not-log"
CONFIG = listener() + """
[[realms]]
name = "lab"
[realms.auth.ticket]
[[realms.auth.ticket.principals]]
authid = "svc"
role = "service"
secret_env = "SVC_TICKET"
[realms.auth.anonymous]
role = "guest"
"""


class Recorded(RouterConnection):
    """Records when each attempt starts."""

    def _attempt(self) -> None:
        self.started_at = getattr(self, "started_at", [])
        self.started_at.append(reactor.seconds())
        super()._attempt()


@pytest.fixture
def router(tmp_path):
    proc = RouterProcess(tmp_path, CONFIG, env={"SVC_TICKET": TICKET})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def logged():
    events = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def text(event) -> str:
    from twisted.logger import formatEvent

    return formatEvent(event)


def settings(router, secret=TICKET, **kw):
    kw.setdefault("retry_initial", 0.05)
    kw.setdefault("retry_max", 0.5)
    return RouterSettings(router.ws_url, "lab", Credentials("ticket", "svc", secret), **kw)


@pytest_twisted.inlineCallbacks
def test_reconnects_and_runs_on_join_again_after_router_kill_9(router, logged):
    joins = []

    def on_join(session, details):
        joins.append(details.authid)
        return session.register(lambda: len(joins), "com.example.joins")

    left = []
    conn = RouterConnection(settings(router), on_join=on_join, on_leave=left.append)
    assert conn.status == "init"
    conn.startService()
    try:
        first = yield within(conn.when_ready(), 20)
        assert conn.describe()["status"] == "ready" and conn.describe()["authid"] == "svc"
        yield threads.deferToThread(router.kill9)
        yield eventually(lambda: conn.status == "connecting", 20)
        assert left and conn.session is None
        yield threads.deferToThread(router.start)
        second = yield within(conn.when_ready(), 30)
        assert second is not first and joins == ["svc", "svc"]
        caller = yield connect_ws(_Address(router), realm="lab", authmethods=["anonymous"])
        assert (yield caller.call("com.example.joins")) == 2
        caller.leave()
    finally:
        yield conn.stopService()
    assert conn.status == "init"
    assert not any(TICKET in text(e) for e in logged)


@pytest_twisted.inlineCallbacks
def test_unreachable_router_is_retried_with_backoff_and_warned_once(router, logged):
    yield threads.deferToThread(router.stop)
    conn = Recorded(settings(router, retry_initial=0.05, retry_max=0.4))
    conn.startService()
    try:
        yield eventually(lambda: len(conn.started_at) >= 6, 20)
        assert conn.status == "connecting" and conn.last_error["kind"] == "connect"
        gaps = [b - a for a, b in zip(conn.started_at, conn.started_at[1:])]
        assert max(gaps) < 2.0  # quick retries while the router is away, capped at retry_max
        warnings = [e for e in logged if e.get("log_level") == LogLevel.warn and "retrying with backoff" in text(e)]
        assert len(warnings) == 1, [text(e) for e in warnings]
        yield threads.deferToThread(router.start)
        yield within(conn.when_ready(), 20)
        assert conn.attempts == 0 and conn.describe()["last_error"]["kind"] == "connect"
    finally:
        yield conn.stopService()


@pytest_twisted.inlineCallbacks
def test_wrong_credential_is_logged_once_and_retried_slowly(router, logged, logged_errors):
    logged_errors.expect(r"the router refused us: wamp\.error\.authentication_failed")
    conn = Recorded(settings(router, secret="wrong-ticket-value-never-logged", auth_retry=1.0))
    conn.startService()
    try:
        yield eventually(lambda: len(conn.started_at) >= 4, 30)
        gaps = [b - a for a, b in zip(conn.started_at, conn.started_at[1:])]
        assert min(gaps) >= 1.0, gaps  # never faster than auth_retry, though retry_max is 0.5
        assert conn.status == "connecting"
        assert conn.last_error["kind"] == "auth"
        assert conn.last_error["message"].startswith("wamp.error.authentication_failed")
    finally:
        yield conn.stopService()
    errors = [text(e) for e in logged if e.get("log_level") == LogLevel.error]
    refusals = [t for t in errors if "the router refused us" in t]
    assert len(refusals) == 1, errors
    assert "wamp.error.authentication_failed" in refusals[0] and "--auth ticket" in refusals[0]
    assert not any("wrong-ticket-value" in text(e) for e in logged)


@pytest_twisted.inlineCallbacks
def test_failing_on_join_is_retried_not_ready(router, logged):
    calls = []

    def on_join(session, details):
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("not yet")

    conn = RouterConnection(settings(router), on_join=on_join)
    conn.startService()
    try:
        yield within(conn.when_ready(), 20)
        assert len(calls) == 3 and conn.last_error["kind"] == "setup"
        assert conn.last_error["message"] == "setting up the session failed: RuntimeError: not yet"
    finally:
        yield conn.stopService()


@pytest_twisted.inlineCallbacks
def test_stop_while_waiting_to_retry(router):
    yield threads.deferToThread(router.stop)
    conn = RouterConnection(settings(router, retry_initial=5, retry_max=5))
    conn.startService()
    yield eventually(lambda: conn._retry is not None)
    waiting = conn.when_ready()
    yield conn.stopService()
    with pytest.raises(defer.CancelledError):
        yield waiting
    assert conn._retry is None and conn.status == "init"


class _Address:
    def __init__(self, router) -> None:
        self.ws_url = router.ws_url
        self.ws_port = router.port


@pytest_twisted.inlineCallbacks
def test_calls_in_flight_fail_when_the_router_goes_away(router):
    conn = RouterConnection(settings(router))
    conn.startService()
    try:
        session = yield within(conn.when_ready(), 20)
        yield session.register(lambda: defer.Deferred(), "com.example.never")
        outcome = []
        session.call("com.example.never").addBoth(outcome.append)
        yield threads.deferToThread(router.kill9)
        yield eventually(lambda: outcome, 20)
        assert outcome[0].check(ApplicationError) and outcome[0].value.error == "wamp.close.transport_lost"
    finally:
        yield conn.stopService()


def test_a_challenge_that_crosses_our_close_is_left_unanswered(logged_errors):
    """stopService while connecting closes the WebSocket; the router's CHALLENGE, already on
    its way, then finds it closing. Answering would raise Disconnected in Autobahn's callback,
    an unhandled error (seen in CI at a later test's teardown); it is left unanswered."""
    import gc

    from autobahn.twisted.websocket import WampWebSocketClientProtocol
    from autobahn.wamp import message
    from autobahn.wamp.types import ComponentConfig

    from relayrouter.client.router import _Attempt, _ConnectorSession

    attempt = _Attempt()
    config = ComponentConfig("lab", extra={"attempt": attempt, "credentials": Credentials("ticket", "svc", TICKET)})
    session = _ConnectorSession(config)
    transport = WampWebSocketClientProtocol()
    transport._session = session
    session._transport = transport
    transport.state = transport.STATE_CLOSING
    attempt.abandoned = True
    session.onMessage(message.Challenge("ticket"))
    gc.collect()  # an unhandled failure is logged when its Deferred goes
    assert not logged_errors.texts()  # nor does the log guard see one at teardown

    transport.state = transport.STATE_OPEN  # and while open, the answer goes out
    sent = []
    transport.sendMessage = lambda payload, binary=False: sent.append(payload)
    transport._serializer = type("Json", (), {"serialize": lambda self, m: (m, False)})()
    session.onMessage(message.Challenge("ticket"))
    assert len(sent) == 1 and isinstance(sent[0], message.Authenticate) and sent[0].signature == TICKET
