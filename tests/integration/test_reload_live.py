"""SIGHUP on a running `twistd relayrouter` applies [auth_limits], [http],
mailbox patterns, pairing and [http_bridge] live, without dropping a session;
what cannot change live is logged as needing a restart, with why."""

import re
import signal

import pytest
import pytest_twisted
import treq
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, PublishOptions
from twisted.internet import defer

from ..refusals import assert_refused
from ..support import LeftBeforeJoining, connect_ws, eventually, within
from .test_twistd import Address, read_until, stop, twistd

LISTENING = re.compile(r"WebSocket at ws://127\.0\.0\.1:(\d+)/ws")
SECRETS = {"OPS_TICKET": "ops-ticket-0123456789abcdef", "GATEWAY_TICKET": "gateway-ticket-0123456789abcdef",
           "HOOK_TOKEN": "old-hook-token-0123456789abcdef", "NEW_HOOK_TOKEN": "new-hook-token-0123456789abcdef",
           "MAILBOX_SECRET": "mailbox-token-secret-0123456789abcdef"}


def config(*, burst=10, origins=("https://a.example",), public_url="wss://old.example/ws",
           mailboxes=("mailbox.{authid}",), on_conflict="refuse", hooks=(("first", "HOOK_TOKEN"),),
           max_body=1000, listener="tcp:0:interface=127.0.0.1") -> str:
    text = f"""
[revocation]
admin_roles = ["ops"]

[auth_limits]
burst = {burst}
per_minute = 0.5

[http]
allowed_origins = [{", ".join(f'"{o}"' for o in origins)}]
public_url = "{public_url}"

[http_bridge]
default_realm = "lab"
max_body = {max_body}

[[listeners]]
type = "websocket"
endpoint = "{listener}"

[[realms]]
name = "lab"

[realms.pairing]
on_conflict = "{on_conflict}"
micronets_path = ""

[[realms.auth.ticket.principals]]
authid = "ops"
role = "ops"
secret_env = "OPS_TICKET"

[[realms.auth.ticket.principals]]
authid = "gateway:s1:b1"
role = "gateway"
secret_env = "GATEWAY_TICKET"
"""
    for uri in mailboxes:
        text += f'\n[[realms.mailboxes]]\nuri = "{uri}"\ntoken_secret_env = "MAILBOX_SECRET"\n'
    for name, env in hooks:
        text += f'\n[[http_bridge.webhooks]]\nname = "{name}"\nrealm = "lab"\ntopic = "com.hooks.{name}"\n' \
                f'token_env = "{env}"\n'
    return text


@pytest.fixture
def router(tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "router.toml"
    path.write_text(config())
    proc = twistd("--config", str(path), "--state-dir", str(tmp_path / "state"))
    match, _ = read_until(proc, LISTENING)
    proc.address = Address(int(match.group(1)))
    proc.config_path = path
    yield proc
    stop(proc)
    assert proc.returncode == 0


def reload(router, expected: str, **changes) -> str:
    """Writes the file with ``changes``, sends SIGHUP, waits for the line saying ``expected``."""
    router.config_path.write_text(config(**changes))
    router.send_signal(signal.SIGHUP)
    _, log = read_until(router, re.compile(r"Configuration reload \(SIGHUP\): " + re.escape(expected)))
    return log


def ops(router):
    return connect_ws(router.address, realm="lab", authmethods=["ticket"], authid="ops",
                      ticket=SECRETS["OPS_TICKET"])


@defer.inlineCallbacks
def refused_login(router, ticket="wrong-ticket") -> str:
    with pytest.raises(LeftBeforeJoining) as refused:
        yield connect_ws(router.address, realm="lab", authmethods=["ticket"], authid="ops", ticket=ticket)
    return refused.value.message


@pytest_twisted.inlineCallbacks
def test_auth_limits_apply_live(router):
    session = yield ops(router)
    for _ in range(2):
        assert "too many" not in (yield refused_login(router))
    reload(router, "auth_limits: failed-login budgets applied", burst=2)
    # The bucket held 8 of 10; capped at the new burst of 2: two more failures, then refused.
    for _ in range(2):
        assert "too many" not in (yield refused_login(router))
    message = yield refused_login(router)
    assert message.startswith("too many failed authentication attempts for this authid from your address")
    assert session.is_attached()


def origin_allowed(router, origin: str):
    d = treq.request("OPTIONS", f"http://127.0.0.1:{router.address.ws_port}/denylist",
                     headers={"Origin": origin})
    return d.addCallback(lambda response: response.code)


@pytest_twisted.inlineCallbacks
def test_http_origins_and_public_url_apply_live(router):
    session = yield ops(router)
    assert (yield origin_allowed(router, "https://a.example")) == 204
    assert (yield origin_allowed(router, "https://b.example")) == 403
    endpoint = yield session.call("relayrouter.mailbox.endpoint", "mailbox.ops")
    assert endpoint["url"].startswith("https://old.example/mailbox/")

    reload(router, "http: allowed origins", origins=("https://b.example",), public_url="wss://new.example/ws")
    assert (yield origin_allowed(router, "https://a.example")) == 403
    assert (yield origin_allowed(router, "https://b.example")) == 204
    endpoint = yield session.call("relayrouter.mailbox.endpoint", "mailbox.ops")
    assert endpoint["url"].startswith("https://new.example/mailbox/")
    assert session.is_attached()


@pytest_twisted.inlineCallbacks
def test_mailbox_patterns_added_and_removed_live(router):
    session = yield ops(router)
    yield session.publish("mailbox.ops", "one", options=PublishOptions(acknowledge=True))
    with pytest.raises(ApplicationError):  # not a mailbox yet: no such procedure's mailbox
        yield session.call("relayrouter.mailbox.stats", "inbox.ops")

    reload(router, "realm lab: mailbox rules applied (patterns added inbox.{authid})",
           mailboxes=("mailbox.{authid}", "inbox.{authid}"))
    yield session.publish("inbox.ops", "two", options=PublishOptions(acknowledge=True))
    assert (yield session.call("relayrouter.mailbox.stats", "inbox.ops"))["depth"] == 1

    # A take runs on mailbox.ops; its pattern goes: the take ends, saying why.
    taken = []
    take = session.call("relayrouter.mailbox.take", "mailbox.ops",
                        options=CallOptions(on_progress=lambda *a, **kw: taken.append(a)))
    yield eventually(lambda: taken)
    reload(router, "realm lab: mailbox rules applied (patterns removed mailbox.{authid})",
           mailboxes=("inbox.{authid}",))
    with pytest.raises(ApplicationError) as ended:
        yield within(take)
    assert_refused(ended.value, "relayrouter.error.no_such_mailbox", "its pattern was removed by a configuration reload")
    boxes = yield session.call("relayrouter.mailbox.stats")
    assert [b["mailbox"] for b in boxes["mailboxes"]] == ["inbox.ops"]

    # Named again: what it held is back.
    reload(router, "realm lab: mailbox rules applied (patterns added mailbox.{authid})",
           mailboxes=("inbox.{authid}", "mailbox.{authid}"))
    assert (yield session.call("relayrouter.mailbox.stats", "mailbox.ops"))["depth"] == 1
    assert session.is_attached()


def gateway(router):
    return connect_ws(router.address, realm="lab", authmethods=["ticket"], authid="gateway:s1:b1",
                      ticket=SECRETS["GATEWAY_TICKET"])


@pytest_twisted.inlineCallbacks
def test_pairing_applies_live(router):
    first = yield gateway(router)
    with pytest.raises(LeftBeforeJoining) as refused:
        yield gateway(router)
    assert refused.value.reason == "relayrouter.error.pair_occupied"

    reload(router, "realm lab: pairing applied to the next joins", on_conflict="replace")
    second = yield gateway(router)
    details = yield within(first.left)
    assert details.reason == "relayrouter.close.replaced"
    assert second.is_attached()


@defer.inlineCallbacks
def webhook(router, name: str, token: str, body: bytes = b"{}"):
    response = yield treq.post(f"http://127.0.0.1:{router.address.ws_port}/webhook/{name}", data=body,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    yield response.content()
    return response.code


@pytest_twisted.inlineCallbacks
def test_http_bridge_keys_webhooks_and_limits_apply_live(router):
    old, new = SECRETS["HOOK_TOKEN"], SECRETS["NEW_HOOK_TOKEN"]
    assert (yield webhook(router, "first", old)) == 202
    assert (yield webhook(router, "second", new)) == 404
    assert (yield webhook(router, "first", old, b'"' + b"x" * 1200 + b'"')) == 413

    log = reload(router, "http_bridge: keys, webhooks and limits applied",
                 hooks=(("first", "NEW_HOOK_TOKEN"), ("second", "NEW_HOOK_TOKEN")), max_body=4000)
    # The bridge's own sessions end cleanly: no protocol violation of its own making.
    assert "Protocol violation" not in log, log
    assert (yield webhook(router, "first", old)) == 401
    assert (yield webhook(router, "first", new)) == 202
    assert (yield webhook(router, "second", new)) == 202
    assert (yield webhook(router, "first", new, b'"' + b"x" * 1200 + b'"')) == 202


@pytest_twisted.inlineCallbacks
def test_what_needs_a_restart_is_logged_with_why(router):
    session = yield ops(router)
    log = reload(router, "listeners (the router binds its listeners at start) changed in the file: "
                         "needs a restart", listener="tcp:0:interface=127.0.0.2")
    assert "needs a restart" in log
    assert session.is_attached()
    result = yield session.call("relayrouter.config.reload")
    assert result["restart_needed"] == ["listeners (the router binds its listeners at start)"]
