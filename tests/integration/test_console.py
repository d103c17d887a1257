"""The console's procedures and pages on a real router (the page itself is
driven in Chromium by tests/js/test_js_console.py)."""

import pytest
import pytest_twisted
import treq
from autobahn.wamp.exception import ApplicationError

from ..refusals import assert_refused
from ..security_support import start, stop
from ..support import connect_ws

ADMIN_TICKET = "ops-admin-ticket-0123456789abcdef"


def config(monkeypatch):
    monkeypatch.setenv("OPS_TICKET", ADMIN_TICKET)
    return {
        "revocation": {"admin_roles": ["ops"]},
        "realms": [
            {"name": "lab",
             "auth": {"anonymous": {"role": "guest"},
                      "ticket": {"principals": [{"authid": "ops", "role": "ops", "secret_env": "OPS_TICKET"}]}},
             "roles": [{"name": "guest", "rules": [{"uri": "relayrouter.console.", "match": "prefix",
                                                   "allow": ["call"]}]},
                       {"name": "ops", "rules": [{"uri": "relayrouter.", "match": "prefix", "allow": ["call"]}]}]},
            {"name": "other"},
        ],
    }


@pytest.fixture
def router(monkeypatch, tmp_path):
    running = pytest_twisted.blockon(start(config(monkeypatch), tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


@pytest_twisted.inlineCallbacks
def test_console_procedures_are_for_admins(router):
    guest = yield connect_ws(router, realm="lab")
    ops = yield connect_ws(router, realm="lab", authmethods=["ticket"], authid="ops", ticket=ADMIN_TICKET)
    elsewhere = yield connect_ws(router, "msgpack", realm="other")
    for procedure in ("relayrouter.console.sessions", "relayrouter.console.overview"):
        with pytest.raises(ApplicationError) as refused:
            yield guest.call(procedure)
        assert_refused(refused.value, "wamp.error.not_authorized", "may not use the console")

    listing = yield ops.call("relayrouter.console.sessions")
    assert listing["realm"] == "lab"
    rows = {row["authid"]: row for row in listing["sessions"]}
    assert set(rows) == {"ops", guest.details.authid}
    me = rows["ops"]
    assert me["session"] == ops.details.session and me["authrole"] == "ops" and me["authmethod"] == "ticket"
    assert (me["transport"], me["serializer"]) == ("websocket", "json")
    assert me["rx_bytes"] > 0 and me["tx_bytes"] > 0 and me["since"].endswith("Z")

    other = yield ops.call("relayrouter.console.sessions", realm="other")
    assert [(r["session"], r["serializer"]) for r in other["sessions"]] == [(elsewhere.details.session, "msgpack")]
    with pytest.raises(ApplicationError) as refused:
        yield ops.call("relayrouter.console.sessions", realm="nowhere")
    assert_refused(refused.value, "wamp.error.invalid_argument", "no realm 'nowhere'")

    before = yield ops.call("relayrouter.console.overview")
    yield guest.call("relayrouter.console.overview").addErrback(lambda f: None)
    after = yield ops.call("relayrouter.console.overview")
    assert {r["name"]: r["sessions"] for r in after["realms"]} == {"lab": 2, "other": 1}
    # between the two: the guest's CALL and ERROR, and our second CALL (its RESULT comes after)
    assert after["messages_received"] - before["messages_received"] == 2
    assert after["messages_sent"] - before["messages_sent"] == 2
    assert after["time"] >= before["time"]


@pytest_twisted.inlineCallbacks
def test_console_pages_are_served(router):
    base = router.http_url
    response = yield treq.get(f"{base}/console", allow_redirects=False)
    assert response.code in (301, 302) and response.headers.getRawHeaders("location")[0].endswith("/console/")
    response = yield treq.get(f"{base}/console/")
    page = yield response.text()
    assert response.code == 200 and "<title>relayrouter console</title>" in page
    for name in ("console.js", "console.css", "autobahn.min.js"):
        response = yield treq.get(f"{base}/console/{name}")
        yield response.content()
        assert response.code == 200, name
    response = yield treq.get(f"{base}/console/missing.js")
    yield response.content()
    assert response.code == 404


# ------------------------------------------------ console roles, tenant realms

VIEWER_TICKET = "viewer-ticket-0123456789abcdef"
OPERATOR_TICKET = "operator-ticket-0123456789abcdef"
ALL_RULES = [{"uri": "relayrouter.", "match": "prefix", "allow": ["call"]},
             {"uri": "wamp.", "match": "prefix", "allow": ["call", "subscribe"]}]


def realm_like(name):
    """A realm (or template) with everything that brings router procedures."""
    return {"name": name,
            "auth": {"anonymous": {"role": "guest"}, "ticket": {"principals": [
                {"authid": "viewer", "role": "watcher", "secret_env": "VIEWER_TICKET"},
                {"authid": "operator", "role": "operator", "secret_env": "OPERATOR_TICKET"},
                {"authid": "ops", "role": "ops", "secret_env": "OPS_TICKET"}]}},
            "roles": [{"name": role, "rules": ALL_RULES} for role in ("guest", "watcher", "operator", "ops")],
            "history": [{"uri": "app.", "match": "prefix", "limit": 5}],
            "mailboxes": [{"uri": "mailbox.{authid}", "http": "off"}],
            "pairing": {"micronets_path": ""}}


def roles_config(monkeypatch, tmp_path):
    for name, value in (("OPS_TICKET", ADMIN_TICKET), ("VIEWER_TICKET", VIEWER_TICKET),
                        ("OPERATOR_TICKET", OPERATOR_TICKET)):
        monkeypatch.setenv(name, value)
    return {
        "state_dir": str(tmp_path / "state"),
        "listeners": [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1"}],
        "console": {"roles": ["watcher"], "operator_roles": ["operator"]},
        "revocation": {"admin_roles": ["ops"]},
        "realms": [realm_like("lab"), {"name": "other"}],
        "realm_templates": [realm_like("tenant")],
        "tenants": {"management_realms": ["lab"]},
    }


@pytest.fixture
def roles_router(monkeypatch, tmp_path):
    from twisted.internet import reactor

    from relayrouter import config as cfg
    from relayrouter.service import RouterService

    from ..support import RunningRouter

    data = roles_config(monkeypatch, tmp_path)
    service = RouterService(cfg.parse(data).with_defaults(), reactor,
                            reload_config=lambda: cfg.parse(data).with_defaults())
    service.startService()
    running = RunningRouter(service, pytest_twisted.blockon(service.when_listening()))
    yield running
    pytest_twisted.blockon(stop(running))


def as_(router, authid, ticket, realm="lab"):
    return connect_ws(router, realm=realm, authmethods=["ticket"], authid=authid, ticket=ticket)


@pytest_twisted.inlineCallbacks
def test_console_roles_view_or_operate(roles_router):
    viewer = yield as_(roles_router, "viewer", VIEWER_TICKET)
    operator = yield as_(roles_router, "operator", OPERATOR_TICKET)
    guest = yield connect_ws(roles_router, realm="lab")
    assert (yield viewer.call("relayrouter.console.access")) == {
        "authid": "viewer", "authrole": "watcher", "realm": "lab", "access": "view", "reach": "router"}
    assert (yield operator.call("relayrouter.console.access"))["access"] == "operate"
    for procedure in ("relayrouter.console.access", "relayrouter.console.overview", "relayrouter.console.sessions"):
        with pytest.raises(ApplicationError) as refused:
            yield guest.call(procedure)
        assert_refused(refused.value, "wamp.error.not_authorized",
                       "session '" + guest.details.authid + "' with role 'guest' may not use the console "
                       "(console.roles, console.operator_roles or the router's admins may)")

    overview = yield viewer.call("relayrouter.console.overview")
    assert [r["name"] for r in overview["realms"]] == ["lab", "other"]
    assert (yield viewer.call("relayrouter.console.sessions", realm="other"))["realm"] == "other"
    assert (yield viewer.call("relayrouter.denylist.list")) == {"entries": []}
    with pytest.raises(ApplicationError) as refused:
        yield viewer.call("relayrouter.denylist.add", claim="authid", value="x", ttl=60)
    assert_refused(refused.value, "wamp.error.not_authorized", "may not administer the deny list")
    added = yield operator.call("relayrouter.denylist.add", claim="authid", value="x", ttl=60)
    assert added["entry"]["value"] == "x"
    assert [e["value"] for e in (yield viewer.call("relayrouter.denylist.list"))["entries"]] == ["x"]
    yield operator.call("relayrouter.denylist.remove", claim="authid", value="x")
    # What the console shows of pairs and mailboxes, viewers see; kicking stays the admins'.
    assert (yield viewer.call("relayrouter.pairs.list")) == []
    assert (yield viewer.call("relayrouter.mailbox.stats")) == {"mailboxes": []}
    with pytest.raises(ApplicationError) as refused:
        yield operator.call("relayrouter.pairs.kick", "s", "b", "gateway")
    assert_refused(refused.value, "wamp.error.not_authorized", "may not administer pairs")
    with pytest.raises(ApplicationError) as refused:
        yield guest.call("relayrouter.pairs.list")
    assert_refused(refused.value, "wamp.error.not_authorized", "may not administer pairs")


@pytest_twisted.inlineCallbacks
def test_a_tenant_realm_gets_the_same_router_procedures(roles_router):
    ops = yield as_(roles_router, "ops", ADMIN_TICKET)
    yield ops.call("relayrouter.realm.create", "acme")
    realms = roles_router.router.realms
    management = {u for u in realms["lab"].procedures.uris() if u.startswith("relayrouter.realm.")}
    assert management == {"relayrouter.realm.create", "relayrouter.realm.delete", "relayrouter.realm.list"}
    assert set(realms["acme"].procedures.uris()) == set(realms["lab"].procedures.uris()) - management
    for uri in ("relayrouter.console.overview", "relayrouter.config.reload", "relayrouter.pairs.list",
                "relayrouter.denylist.list", "relayrouter.history.read", "relayrouter.mailbox.stats"):
        assert uri in realms["acme"].procedures.uris()

    viewer = yield as_(roles_router, "viewer", VIEWER_TICKET, realm="acme")
    assert (yield viewer.call("relayrouter.console.access"))["reach"] == "realm"
    # A tenant's console sees its own realm: no other realm's name, sessions or the router's deny list.
    overview = yield viewer.call("relayrouter.console.overview")
    assert overview["realms"] == [{"name": "acme", "sessions": 1}]
    assert [s["authid"] for s in (yield viewer.call("relayrouter.console.sessions"))["sessions"]] == ["viewer"]
    with pytest.raises(ApplicationError) as refused:
        yield viewer.call("relayrouter.console.sessions", realm="lab")
    assert_refused(refused.value, "wamp.error.not_authorized", "the console of realm 'acme' shows that realm only")
    with pytest.raises(ApplicationError) as refused:
        yield viewer.call("relayrouter.denylist.list")
    assert_refused(refused.value, "wamp.error.not_authorized", "may not administer the deny list")
    assert (yield viewer.call("relayrouter.pairs.list")) == []
    with pytest.raises(ApplicationError) as refused:
        yield viewer.call("relayrouter.config.reload")
    assert_refused(refused.value, "wamp.error.not_authorized", "may not reload the configuration")
    tenant_ops = yield as_(roles_router, "ops", ADMIN_TICKET, realm="acme")
    assert (yield tenant_ops.call("relayrouter.config.reload")) == {"changed": [], "restart_needed": []}
    # A configured realm's console user sees the tenant too.
    lab_viewer = yield as_(roles_router, "viewer", VIEWER_TICKET)
    listing = yield lab_viewer.call("relayrouter.console.sessions", realm="acme")
    assert sorted(s["authid"] for s in listing["sessions"]) == ["ops", "viewer"]


def test_the_message_rate_is_flat_under_steady_traffic_with_page_refreshes():
    """20 messages/s in and out, plus the page's own refresh (28 calls and results every
    2 s) and its poll each second, at slightly uneven moments: the rate the page draws
    stays flat (a difference between consecutive polls went 28 <-> 56)."""
    from relayrouter.console import RateMeter

    meter, received, sent, now = RateMeter(), 0, 0, 1000.0
    drawn, between_polls, last = [], [], None
    for second in range(40):
        received, sent = received + 20, sent + 20
        if second % 2 == 0:
            received, sent = received + 28, sent + 28  # the tables' refresh burst
        now = 1000.0 + second + (0.03 if second % 3 else 0.0)  # timers are not exact
        received, sent = received + 1, sent + 1  # this poll
        rate = meter.rate(now, received, sent)
        if last is not None:
            between_polls.append((received - last[1]) / (now - last[0]))
        last = (now, received, sent)
        if second >= 12:
            drawn.append(rate)
    assert max(between_polls[10:]) / min(between_polls[10:]) > 2  # the artefact, as it was
    for rate in drawn:
        assert rate["in"] == pytest.approx(35, rel=0.02) and rate["out"] == pytest.approx(35, rel=0.02)
        assert rate["seconds"] == pytest.approx(10, abs=0.1)


def test_the_first_overview_has_no_rate_yet():
    from relayrouter.console import RateMeter

    meter = RateMeter()
    assert meter.rate(5.0, 10, 10) == {"in": None, "out": None, "seconds": 0.0}
    assert meter.rate(6.0, 30, 20) == {"in": 20.0, "out": 10.0, "seconds": 1.0}
