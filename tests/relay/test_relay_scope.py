"""A relay token's scope holds on every path: over WAMP (ticket, jwt, one-time
ticket) a session authenticated by one does what its claims say and nothing
else, whatever the realm's roles say (the README's relay configuration has none)."""

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer

from ..support import connect_ws, eventually
from .support import connect_topic, http, practable_token, relay_config, start, stop

NOT_AUTHORIZED = "wamp.error.not_authorized"


@pytest.fixture
def router(monkeypatch, tmp_path):
    data = relay_config(monkeypatch, stats_interval=0)
    data["realms"][0]["auth"]["one_time_tickets"] = {"lifetime": 30}
    running = pytest_twisted.blockon(start(data, tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


def joined(router, token, method="ticket"):
    if method == "jwt":
        return connect_ws(router, realm="lab", authmethods=["jwt"], authextra={"token": token})
    return connect_ws(router, realm="lab", authmethods=["ticket"], ticket=token)


@defer.inlineCallbacks
def refused(deferred_call):
    try:
        yield deferred_call()
    except ApplicationError as e:
        return e
    raise AssertionError("the router accepted what the token does not allow")


@pytest.mark.parametrize("method", ["ticket", "jwt"])
@pytest_twisted.inlineCallbacks
def test_read_only_token_cannot_publish_into_another_experiment(router, method):
    """The finding: a read-only token with a sub, joined over WAMP, published into
    relay.session.<another topic> and that experiment's raw readers received it."""
    reader = yield connect_topic(router, topic="other", scopes=("read",), booking_id="bk-other")
    writer = yield connect_topic(router, topic="other", scopes=("write",), booking_id="bk-other")
    session = yield joined(router, practable_token(topic="pend00", scopes=("read",), sub="viewer"), method)
    for topic in ("relay.session.other", "relay.session.pend00"):
        error = yield refused(lambda: session.publish(topic, "intruder", options=_acknowledged()))
        assert error.error == NOT_AUTHORIZED and f"publish '{topic}'" in error.args[0], error
    writer.send_text("the experiment's own frame")
    assert (yield reader.next()) == "the experiment's own frame"  # nothing came before it


@pytest_twisted.inlineCallbacks
def test_a_token_reaches_its_own_topic_only(router):
    session = yield joined(router, practable_token(topic="pend00", scopes=("read", "write")))
    assert session.details.authid == "bk-1"  # no sub needed: the booking id
    raw = yield connect_topic(router, topic="pend00", scopes=("read", "write"), booking_id="bk-2")
    got = []
    yield session.subscribe(got.append, "relay.session.pend00")
    yield session.publish("relay.session.pend00", "from wamp", options=_acknowledged())
    assert (yield raw.next()) == "from wamp"
    raw.send_text("from raw")
    yield eventually(lambda: got == ["from raw"])
    for action in (lambda: session.subscribe(print, "relay.session.other"),
                   lambda: session.subscribe(print, "relay.session.", options=_match("prefix")),
                   lambda: session.subscribe(print, "relay..pend00", options=_match("wildcard")),
                   lambda: session.subscribe(print, "relayrouter.stats"),
                   lambda: session.call("relayrouter.stats.get"),
                   lambda: session.call("wamp.session.list"),
                   lambda: session.register(print, "com.example.anything"),
                   lambda: session.publish("com.example.anything", 1, options=_acknowledged())):
        error = yield refused(action)
        assert error.error == NOT_AUTHORIZED and "relay token" in error.args[0], error


@pytest_twisted.inlineCallbacks
def test_tunnel_procedures_need_the_tunnels_scope(router):
    plain = yield joined(router, practable_token(topic="pend00", scopes=("read", "write"), sub="rw"))
    for action in (lambda: plain.register(print, "tunnel.lab42.open"),
                   lambda: plain.call("tunnel.lab42.open")):
        error = yield refused(action)
        assert error.error == NOT_AUTHORIZED, error
    host = yield joined(router, practable_token(topic="lab42", prefix="tunnel", scopes=("host",),
                                                booking_id=None, sub=None))
    yield host.register(lambda: "opened", "tunnel.lab42.open")
    error = yield refused(lambda: host.register(print, "tunnel.lab43.open"))
    assert error.error == NOT_AUTHORIZED
    error = yield refused(lambda: host.call("tunnel.lab42.open"))
    assert error.error == NOT_AUTHORIZED  # host, not client
    client = yield joined(router, practable_token(topic="lab42", prefix="tunnel", scopes=("client",),
                                                  booking_id=None, sub=None), "jwt")
    assert (yield client.call("tunnel.lab42.open")) == "opened"
    error = yield refused(lambda: client.register(print, "tunnel.lab42.send"))
    assert error.error == NOT_AUTHORIZED


@pytest_twisted.inlineCallbacks
def test_stats_need_the_stats_scope(router):
    stats = yield joined(router, practable_token(topic="stats-reader", scopes=("relay:stats",), sub="dash"))
    report = yield stats.call("relayrouter.stats.get")
    assert set(report) >= {"connections", "topics"}
    yield stats.subscribe(print, "relayrouter.stats")
    error = yield refused(lambda: stats.publish("relayrouter.stats", {}, options=_acknowledged()))
    assert error.error == NOT_AUTHORIZED


@pytest_twisted.inlineCallbacks
def test_a_one_time_ticket_carries_the_tokens_scope(router):
    token = practable_token(topic="pend00", scopes=("read",), sub="browser")
    code, _, body = yield http("POST", f"{router.http_url}/ticket?realm=lab", bearer=token)
    assert code == 200, body
    session = yield joined(router, body["ticket"])
    yield session.subscribe(print, "relay.session.pend00")
    error = yield refused(lambda: session.publish("relay.session.other", "x", options=_acknowledged()))
    assert error.error == NOT_AUTHORIZED


def _acknowledged():
    from autobahn.wamp.types import PublishOptions

    return PublishOptions(acknowledge=True)


def _match(match):
    from autobahn.wamp.types import SubscribeOptions

    return SubscribeOptions(match=match)


@pytest_twisted.inlineCallbacks
def test_the_documented_relay_configuration_is_safe_as_written(monkeypatch, tmp_path):
    """The finding's attack against the relay reference's configuration itself, read from
    the page: a read-only token with a sub, joined over WAMP, neither publishes into another
    experiment nor reaches the tunnel procedures."""
    import tomllib

    from ..documentation import page
    from ..security_support import HS_SECRET

    monkeypatch.setenv("RELAYROUTER_JWT_SECRET", HS_SECRET)
    documented = tomllib.loads(page("reference/relay.md").split("```toml\n", 1)[1].split("```", 1)[0])
    running = yield start(documented, tmp_path / "state")
    try:
        session = yield joined(running, practable_token(topic="pend00", scopes=("read",), sub="viewer"))
        for action in (lambda: session.publish("relay.session.other", "intruder", options=_acknowledged()),
                       lambda: session.publish("relay.session.pend00", "intruder", options=_acknowledged()),
                       lambda: session.call("tunnel.lab42.open"),
                       lambda: session.register(print, "tunnel.lab42.open")):
            error = yield refused(action)
            assert error.error == NOT_AUTHORIZED, error
        yield session.subscribe(print, "relay.session.pend00")  # what the token does allow
    finally:
        yield stop(running)
