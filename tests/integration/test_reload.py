"""Reloading the configuration of a running `twistd relayrouter`: SIGHUP and
relayrouter.config.reload change roles for live sessions; an invalid file
changes nothing and the log names its key."""

import re
import signal

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions

from ..refusals import assert_refused
from ..support import LeftBeforeJoining, connect_ws
from .test_twistd import Address, read_until, stop, twistd

LISTENING = re.compile(r"WebSocket at ws://127\.0\.0\.1:(\d+)/ws")
OPS_TICKET = "ops-ticket-secret-for-the-reload-test"
NEW_OPS_TICKET = "a-new-ops-ticket-secret"


def config(device_may: list[str], *, extra_rule: str = "", hello_timeout: int = 10,
           ops_ticket_env: str = "OPS_TICKET") -> str:
    allow = ", ".join(f'"{a}"' for a in device_may)
    return f"""
[revocation]
admin_roles = ["ops"]

[limits]
hello_timeout = {hello_timeout}

[[listeners]]
type = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"

[[realms]]
name = "lab"

[realms.auth.anonymous]
role = "device"

[[realms.auth.ticket.principals]]
authid = "ops"
role = "ops"
secret_env = "{ops_ticket_env}"

[[realms.roles]]
name = "device"
[[realms.roles.rules]]
uri = "com.example."
match = "prefix"
allow = [{allow}]
{extra_rule}
[[realms.roles.rules]]
uri = "relayrouter.config.reload"
allow = ["call"]

[[realms.roles]]
name = "ops"
[[realms.roles.rules]]
uri = "relayrouter."
match = "prefix"
allow = ["call"]
"""


@pytest.fixture
def router(tmp_path, monkeypatch):
    monkeypatch.setenv("OPS_TICKET", OPS_TICKET)
    monkeypatch.setenv("NEW_OPS_TICKET", NEW_OPS_TICKET)
    path = tmp_path / "router.toml"
    path.write_text(config(["subscribe"]))
    proc = twistd("--config", str(path), "--state-dir", str(tmp_path / "state"))
    match, _ = read_until(proc, LISTENING)
    proc.address = Address(int(match.group(1)))
    proc.config_path = path
    yield proc
    stop(proc)
    assert proc.returncode == 0


def publish(session):
    return session.publish("com.example.news", "hello", options=PublishOptions(acknowledge=True))


@pytest_twisted.inlineCallbacks
def test_sighup_applies_a_changed_role_to_a_live_session(router):
    device = yield connect_ws(router.address, realm="lab")
    with pytest.raises(ApplicationError) as refused:
        yield publish(device)
    assert_refused(refused.value, "wamp.error.not_authorized", "com.example.news")

    router.config_path.write_text(config(["subscribe", "publish"], hello_timeout=7))
    router.send_signal(signal.SIGHUP)
    _, log = read_until(router, re.compile(r"Configuration reload \(SIGHUP\): limits \(the listeners' factories "
                                           r"hold them\) changed in the file: needs a restart"))
    assert "Configuration reload (SIGHUP): realm lab: roles applied to every session's next action" in log
    yield publish(device)  # the same session, now allowed

    # An invalid file: refused with its key named; the running roles stay.
    router.config_path.write_text(config(["subscribe"], extra_rule='alow = ["call"]'))
    router.send_signal(signal.SIGHUP)
    _, log = read_until(router, re.compile(r"Configuration reload \(SIGHUP\) refused"))
    assert "realms[0].roles[0].rules[0].alow: unknown key" in log
    assert "the running configuration stays in force" in log
    yield publish(device)
    assert device.is_attached()


@pytest_twisted.inlineCallbacks
def test_the_reload_procedure_is_for_admins_and_reports_what_it_did(router):
    device = yield connect_ws(router.address, realm="lab")
    ops = yield connect_ws(router.address, realm="lab", authmethods=["ticket"], authid="ops",
                           ticket=OPS_TICKET)
    with pytest.raises(ApplicationError) as refused:
        yield device.call("relayrouter.config.reload")
    assert_refused(refused.value, "wamp.error.not_authorized", "may not reload the configuration")

    # The new file allows publishing and changes the ops principal's ticket.
    router.config_path.write_text(config(["subscribe", "publish"], ops_ticket_env="NEW_OPS_TICKET"))
    report = yield ops.call("relayrouter.config.reload")
    assert report == {"changed": [
        "realm lab: authentication (methods, principals, keys) applied to new logins",
        "realm lab: roles applied to every session's next action"], "restart_needed": []}
    yield publish(device)
    assert ops.is_attached()  # a changed credential does not end a session that joined with it
    with pytest.raises(LeftBeforeJoining):
        yield connect_ws(router.address, realm="lab", authmethods=["ticket"], authid="ops", ticket=OPS_TICKET)
    yield connect_ws(router.address, realm="lab", authmethods=["ticket"], authid="ops",
                     ticket=NEW_OPS_TICKET)

    router.config_path.write_text("[[realms]]\nname = 7\n")
    with pytest.raises(ApplicationError) as refused:
        yield ops.call("relayrouter.config.reload")
    assert refused.value.error == "relayrouter.error.invalid_config"
    assert "realms[0].name" in refused.value.args[0]
    yield publish(device)  # nothing changed


# ----------------------------------------------- in process: the other live parts


@pytest_twisted.inlineCallbacks
def test_limits_revocation_and_history_apply_live(tmp_path):
    from twisted.internet import reactor

    from relayrouter import config as cfg
    from relayrouter.service import RouterService

    from ..support import RunningRouter

    def data(max_subscriptions, history_topics, claims):
        return {
            "state_dir": str(tmp_path / "state"),
            "listeners": [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1"}],
            "revocation": {"claims": claims},
            "realms": [{"name": "lab", "limits": {"max_subscriptions": max_subscriptions},
                        "history": [{"uri": t, "limit": 10} for t in history_topics]}],
        }

    current = {"data": data(1, ["com.a"], ["jti"])}
    service = RouterService(cfg.parse(current["data"]).with_defaults(), reactor,
                            reload_config=lambda: cfg.parse(current["data"]).with_defaults())
    service.startService()
    running = RunningRouter(service, (yield service.when_listening()))
    try:
        session = yield connect_ws(running, realm="lab")
        yield session.subscribe(lambda *a: None, "com.one")
        with pytest.raises(ApplicationError) as refused:
            yield session.subscribe(lambda *a: None, "com.two")
        assert_refused(refused.value, "relayrouter.error.limit_exceeded", "max_subscriptions")
        with pytest.raises(ApplicationError):
            yield session.call("relayrouter.history.read", "com.b")

        current["data"] = data(5, ["com.a", "com.b"], ["jti", "bid"])
        report = service.reload("test")
        assert report == {"changed": ["revocation: deny-list settings applied", "realm lab: limits applied",
                                      "realm lab: history rules applied"], "restart_needed": []}
        yield session.subscribe(lambda *a: None, "com.two")  # the live session's limit moved
        yield session.publish("com.b", 1, options=PublishOptions(acknowledge=True))
        page = yield session.call("relayrouter.history.read", "com.b")
        assert [e["args"] for e in page["events"]] == [[1]]
        assert service.security.denylist.claims == ("jti", "bid", "authid")

        # Nothing new: nothing done, and a second reload says so.
        assert service.reload("test") == {"changed": [], "restart_needed": []}
        current["data"]["realms"][0]["max_retained_events"] = 5
        assert service.reload("test") == {"changed": ["realm lab: max_retained_events applied"],
                                          "restart_needed": []}
        assert service.router.realms["lab"].policy.max_retained_events == 5
        # A new listener needs a restart: reported, not applied.
        current["data"]["listeners"].append({"type": "rawsocket", "endpoint": "tcp:0:interface=127.0.0.1"})
        assert service.reload("test") == {"changed": [], "restart_needed": [
            "listeners (the router binds its listeners at start)"]}
        assert len(service.listeners) == 1
    finally:
        yield service.stopService()


@pytest_twisted.inlineCallbacks
def test_console_roles_and_a_realms_first_pairing_apply_live(tmp_path, monkeypatch):
    from twisted.internet import reactor

    from relayrouter import config as cfg
    from relayrouter.service import RouterService

    from ..support import RunningRouter

    monkeypatch.setenv("GW_TICKET", "gateway-ticket-0123456789abcdef")
    monkeypatch.setenv("STAFF_TICKET", "staff-ticket-0123456789abcdef")
    realm = {"name": "lab", "auth": {"ticket": {"principals": [
        {"authid": "gateway:s1:b1", "role": "device", "secret_env": "GW_TICKET"},
        {"authid": "staff", "role": "staff", "secret_env": "STAFF_TICKET"}]}},
        "roles": [{"name": "device", "rules": [{"uri": "relayrouter.pairs.peer", "allow": ["call"]}]},
                  {"name": "staff", "rules": [{"uri": "relayrouter.", "match": "prefix", "allow": ["call"]}]}]}
    current = {"data": {"state_dir": str(tmp_path / "state"),
                        "listeners": [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1"}],
                        "realms": [realm]}}
    service = RouterService(cfg.parse(current["data"]).with_defaults(), reactor,
                            reload_config=lambda: cfg.parse(current["data"]).with_defaults())
    service.startService()
    running = RunningRouter(service, (yield service.when_listening()))
    try:
        staff = yield connect_ws(running, realm="lab", authmethods=["ticket"], authid="staff",
                                 ticket="staff-ticket-0123456789abcdef")
        with pytest.raises(ApplicationError) as refused:
            yield staff.call("relayrouter.console.access")
        assert_refused(refused.value, "wamp.error.not_authorized", "may not use the console")
        with pytest.raises(ApplicationError) as refused:
            yield staff.call("relayrouter.pairs.list")
        assert refused.value.error == "wamp.error.no_such_procedure"

        current["data"]["console"] = {"roles": ["staff"]}
        realm["pairing"] = {"micronets_path": ""}
        report = service.reload("test")
        assert report == {"changed": ["console: console roles applied to every session's next console call",
                                      "realm lab: pairing applied to the next joins (the realm pairs from now on)"],
                          "restart_needed": []}
        assert (yield staff.call("relayrouter.console.access"))["access"] == "view"  # the same session
        gateway = yield connect_ws(running, realm="lab", authmethods=["ticket"], authid="gateway:s1:b1",
                                   ticket="gateway-ticket-0123456789abcdef")
        assert (yield gateway.call("relayrouter.pairs.peer"))["subscriber"] == "s1"
        [pair] = yield staff.call("relayrouter.pairs.list")
        assert (pair["subscriber"], pair["box"], pair["gateway"]["authid"]) == ("s1", "b1", "gateway:s1:b1")

        del realm["pairing"]
        assert service.reload("test")["restart_needed"] == [
            "realm lab: pairing (removed: its peers are connected as pairs)"]
    finally:
        yield service.stopService()
