"""Tenants end to end: realms made from a template over HTTP and WAMP, their
sessions ended on delete, events with sequence numbers, restored at restart."""

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer

from ..security_support import HS_SECRET, ISSUER, http, start, stop, token
from ..support import LeftBeforeJoining, connect_ws, eventually, within

JWT = {"algorithms": ["HS256"], "audience": "relayrouter", "issuer": ISSUER, "as_ticket": True,
       "authrole_claim": "role", "authrole": "user", "keys": [{"secret_env": "JWT_SECRET"}]}
# A template's JWT must say which claim names a token's tenant (its tenants share its keys).
TEMPLATE_JWT = dict(JWT, realm_claim="service")


def config(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", HS_SECRET)
    return {
        "realms": [{
            "name": "management",
            "auth": {"jwt": JWT},
            "roles": [{"name": "admin", "rules": [
                {"uri": "relayrouter.realm.", "match": "prefix", "allow": ["call", "subscribe"]}]},
                {"name": "user", "rules": [{"uri": "relayrouter.realm.on_change", "allow": ["subscribe"]}]}],
        }],
        "realm_templates": [{
            "name": "tenant",
            "auth": {"jwt": TEMPLATE_JWT},
            "roles": [{"name": "user", "rules": [
                {"uri": "app.", "match": "prefix", "allow": ["publish", "subscribe", "call", "register"]},
                {"uri": "relayrouter.history.read", "allow": ["call"]}]}],
            "history": [{"uri": "app.", "match": "prefix", "limit": 10}],
        }],
        "tenants": {"admin_roles": ["admin"]},
        "revocation": {"admin_realm": "management"},
    }


ADMIN = dict(role="admin", sub="ops")


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


@pytest.fixture
def router(monkeypatch, state):
    running = pytest_twisted.blockon(start(config(monkeypatch), state))
    yield running
    pytest_twisted.blockon(stop(running))


def join(router, realm, **claims):
    """Join ``realm`` with a token whose ``service`` claim names it, unless the claims say otherwise."""
    claims.setdefault("service", realm)
    return connect_ws(router, realm=realm, authmethods=["ticket"], authid="x", ticket=token(**claims))


@pytest_twisted.inlineCallbacks
def test_http_create_list_delete(router):
    url = f"{router.http_url}/realms"
    code, _, body = yield http("POST", url, bearer=token(**ADMIN), body={"name": "acme"})
    assert code == 200 and body == {"tenant": "acme", "template": "tenant", "seq": 1}
    code, _, body = yield http("GET", url, bearer=token(**ADMIN))
    assert code == 200 and body["tenants"] == ["acme"] and body["seq"] == 1
    user = yield join(router, "acme")
    yield user.subscribe(lambda *a: None, "app.data")
    code, _, body = yield http("DELETE", f"{url}/acme?reason=closed", bearer=token(**ADMIN))
    assert code == 200 and body == {"tenant": "acme", "seq": 2, "sessions_closed": 1}
    details = yield within(user.left)
    assert details.reason == "wamp.close.close_realm"
    assert details.message == "realm 'acme' was deleted: closed"
    with pytest.raises(LeftBeforeJoining) as caught:
        yield join(router, "acme")
    assert caught.value.reason == "wamp.error.no_such_realm"


@pytest_twisted.inlineCallbacks
def test_http_refusals(router):
    url = f"{router.http_url}/realms"
    code, _, body = yield http("POST", url, body={"name": "acme"})
    assert code == 401
    code, _, body = yield http("POST", url, bearer=token(role="user"), body={"name": "acme"})
    assert code == 403 and "may not administer tenants" in body["message"]
    code, _, body = yield http("POST", url, bearer=token(**ADMIN), body={"name": "Acme!"})
    assert code == 400 and body["error"] == "wamp.error.invalid_argument"
    code, _, body = yield http("POST", url, bearer=token(**ADMIN), body={"name": "x", "template": "gold"})
    assert code == 400 and body["error"] == "relayrouter.error.no_such_template"
    code, _, body = yield http("POST", url, bearer=token(**ADMIN), body={"name": "management"})
    assert code == 409 and body["error"] == "relayrouter.error.realm_exists"
    code, _, body = yield http("DELETE", f"{url}/nobody", bearer=token(**ADMIN))
    assert code == 404 and body["error"] == "wamp.error.no_such_realm"


@pytest_twisted.inlineCallbacks
def test_wamp_procedures_events_and_bootstrap_without_race(router):
    admin = yield join(router, "management", **ADMIN)
    seen = []
    got = defer.Deferred()

    def on_change(event):
        seen.append(event)
        if len(seen) == 2:
            got.callback(None)

    yield admin.subscribe(on_change, "relayrouter.realm.on_change")  # subscribe first, then list
    listed = yield admin.call("relayrouter.realm.list")
    assert listed["tenants"] == [] and listed["seq"] == 0
    created = yield admin.call("relayrouter.realm.create", "globex")
    assert created["seq"] == 1
    yield admin.call("relayrouter.realm.delete", "globex")
    yield within(got)
    assert seen == [{"type": "CREATE", "tenant": "globex", "seq": 1},
                    {"type": "DELETE", "tenant": "globex", "seq": 2}]
    user = yield join(router, "management", role="user")
    with pytest.raises(ApplicationError) as caught:
        yield user.call("relayrouter.realm.create", "evil")
    assert caught.value.error == "wamp.error.not_authorized"


@pytest_twisted.inlineCallbacks
def test_tenants_survive_a_restart(monkeypatch, state):
    first = yield start(config(monkeypatch), state)
    try:
        admin = yield join(first, "management", **ADMIN)
        yield admin.call("relayrouter.realm.create", "acme")
        yield admin.call("relayrouter.realm.create", "initech")
        yield admin.call("relayrouter.realm.delete", "initech")
    finally:
        yield stop(first)
    again = yield start(config(monkeypatch), state)
    try:
        admin = yield join(again, "management", **ADMIN)
        listed = yield admin.call("relayrouter.realm.list")
        assert listed["tenants"] == ["acme"] and listed["seq"] == 3
        user = yield join(again, "acme")  # the template's JWT auth and roles came back with it
        yield user.publish("app.hello", 1)
        with pytest.raises(ApplicationError) as caught:
            yield user.call("relayrouter.realm.list")
        assert caught.value.error == "wamp.error.not_authorized"  # tenants get no management procedures
    finally:
        yield stop(again)


@pytest_twisted.inlineCallbacks
def test_a_tenant_inherits_the_templates_event_history(router):
    code, _, _ = yield http("POST", f"{router.http_url}/realms", bearer=token(**ADMIN), body={"name": "hist"})
    assert code == 200
    user = yield join(router, "hist")
    for n in range(3):
        yield user.publish("app.temp", n, options=PublishOptions(acknowledge=True))
    got = yield user.call("relayrouter.history.read", "app.temp")
    assert [e["args"] for e in got["events"]] == [[0], [1], [2]]


@pytest_twisted.inlineCallbacks
def test_two_tenants_never_cross_on_the_same_uris_and_the_same_identity(router):
    """The tenant boundary: the same topic, procedure and authid in two tenants are two
    different things; nothing published, registered or kept in one is seen from the other."""
    for name in ("acme", "globex"):
        code, _, body = yield http("POST", f"{router.http_url}/realms", bearer=token(**ADMIN), body={"name": name})
        assert code == 200, body
    acme = yield join(router, "acme", sub="same-person")
    globex = yield join(router, "globex", sub="same-person")
    heard = {"acme": [], "globex": []}
    yield acme.subscribe(lambda v: heard["acme"].append(v), "app.t")
    yield globex.subscribe(lambda v: heard["globex"].append(v), "app.t")
    yield globex.register(lambda: "globex's answer", "app.p")
    yield acme.publish("app.t", "for acme", options=PublishOptions(acknowledge=True, exclude_me=False))
    yield eventually(lambda: heard["acme"] == ["for acme"])
    with pytest.raises(ApplicationError) as e:
        yield acme.call("app.p")
    assert e.value.error == "wamp.error.no_such_procedure"
    assert (yield globex.call("app.p")) == "globex's answer"
    kept = yield globex.call("relayrouter.history.read", "app.t")
    assert kept["events"] == [] and heard["globex"] == []


@pytest_twisted.inlineCallbacks
def test_without_their_own_admins_tenants_follow_the_routers(monkeypatch, tmp_path):
    data = config(monkeypatch)
    data["tenants"] = {}
    data["revocation"] = {"admin_realm": "management", "admin_roles": ["admin"]}
    running = yield start(data, tmp_path / "other-state")
    try:
        url = f"{running.http_url}/realms"
        code, _, body = yield http("POST", url, bearer=token(role="user"), body={"name": "x1"})
        assert code == 403
        code, _, body = yield http("POST", url, bearer=token(**ADMIN), body={"name": "x1"})
        assert code == 200 and body["tenant"] == "x1"
    finally:
        yield stop(running)


def purge_config(monkeypatch):
    data = config(monkeypatch)
    template = data["realm_templates"][0]
    template["roles"][0]["rules"] += [{"uri": "mailbox.", "match": "prefix", "allow": ["publish"]},
                                      {"uri": "relayrouter.mailbox.stats", "allow": ["call"]}]
    template["mailboxes"] = [{"uri": "mailbox.{authid}", "http": "off"}]
    return data


@defer.inlineCallbacks
def fill(router, name):
    """A tenant made over WAMP, with two events kept and one mailbox message."""
    admin = yield join(router, "management", **ADMIN)
    yield admin.call("relayrouter.realm.create", name)
    user = yield join(router, name)
    for n in range(2):
        yield user.publish("app.temp", n, options=PublishOptions(acknowledge=True))
    yield user.publish("mailbox.device-7", "kept", options=PublishOptions(acknowledge=True))
    return admin, user


@defer.inlineCallbacks
def stored(router, name):
    """(history args, mailbox depth) a new session of the tenant sees."""
    user = yield join(router, name)
    events = yield user.call("relayrouter.history.read", "app.temp")
    boxes = yield user.call("relayrouter.mailbox.stats")
    depth = {b["mailbox"]: b["depth"] for b in boxes["mailboxes"]}.get("mailbox.device-7", 0)
    return [e["args"] for e in events["events"]], depth


@pytest_twisted.inlineCallbacks
def test_a_deleted_tenants_stored_data_is_purged(monkeypatch, state):
    running = yield start(purge_config(monkeypatch), state)
    try:
        admin, _ = yield fill(running, "recycled")
        assert (yield stored(running, "recycled")) == ([[0], [1]], 1)
        yield admin.call("relayrouter.realm.delete", "recycled")
        yield admin.call("relayrouter.realm.create", "recycled")  # at once: the purge was queued first
        assert (yield stored(running, "recycled")) == ([], 0)
        user = yield join(running, "recycled")
        yield user.publish("app.temp", "new", options=PublishOptions(acknowledge=True))
        tenants = running.service.tenancy.store
        yield eventually(lambda: not tenants.purges())
    finally:
        yield stop(running)
    again = yield start(purge_config(monkeypatch), state)  # what was purged is gone from the files too
    try:
        assert (yield stored(again, "recycled")) == ([["new"]], 0)
    finally:
        yield stop(again)


@pytest_twisted.inlineCallbacks
def test_a_purge_cut_short_is_done_at_the_next_start(monkeypatch, state):
    import sqlite3

    running = yield start(purge_config(monkeypatch), state)
    try:
        yield fill(running, "crashed")
    finally:
        yield stop(running)
    # As if the router died right after the delete committed, before the purge did.
    with sqlite3.connect(state / "tenants.sqlite3") as db:
        db.execute("DELETE FROM tenants WHERE name = 'crashed'")
        db.execute("INSERT INTO purges (name) VALUES ('crashed')")
    again = yield start(purge_config(monkeypatch), state)
    try:
        tenants = again.service.tenancy.store
        yield eventually(lambda: not tenants.purges())
        admin = yield join(again, "management", **ADMIN)
        yield admin.call("relayrouter.realm.create", "crashed")
        assert (yield stored(again, "crashed")) == ([], 0)
    finally:
        yield stop(again)


@pytest_twisted.inlineCallbacks
def test_with_a_realm_claim_a_token_joins_only_the_tenants_it_names(monkeypatch, tmp_path):
    """Tenants made from one template share its signing key, so a template's JWT needs its
    realm_claim: a token joins, and buys a one-time ticket for, only the realms its claim names."""
    data = config(monkeypatch)
    data["realm_templates"][0]["auth"] = {"jwt": TEMPLATE_JWT,
                                          "one_time_tickets": {"lifetime": 30}}
    running = yield start(data, tmp_path / "state")
    try:
        for name in ("acme", "globex"):
            code, _, body = yield http("POST", f"{running.http_url}/realms", bearer=token(**ADMIN),
                                       body={"name": name})
            assert code == 200, body
        acme_user = dict(sub="alice", service="acme")
        session = yield join(running, "acme", **acme_user)
        assert session.details.realm == "acme"
        session.leave()
        for claims in (acme_user, dict(sub="alice"), dict(sub="alice", service=["acme"]),
                       dict(sub="alice", service={"globex": True}), dict(sub="alice", service="GLOBEX")):
            with pytest.raises(LeftBeforeJoining) as e:
                yield connect_ws(running, realm="globex", authmethods=["ticket"], authid="x", ticket=token(**claims))
            assert e.value.reason == "wamp.error.authentication_failed", claims
            assert e.value.message == "token is not for realm 'globex' (its 'service' claim does not name it)"
            code, _, body = yield http("POST", f"{running.http_url}/ticket?realm=globex", bearer=token(**claims))
            assert code == 401 and "not for realm 'globex'" in body["message"], (claims, body)
        both = dict(sub="ops-service", service=["acme", "globex"])
        for name in ("acme", "globex"):
            session = yield join(running, name, **both)
            assert session.details.realm == name
            session.leave()
        code, _, body = yield http("POST", f"{running.http_url}/ticket?realm=acme", bearer=token(**acme_user))
        assert code == 200 and body["ticket"].startswith("rrt_"), body
        admin = yield join(running, "management", **ADMIN)  # a realm without realm_claim: as before
        admin.leave()
    finally:
        yield stop(running)
