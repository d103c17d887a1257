"""The web console (/console) in headless Chromium against a real router:
an operator (a console role, not a router admin) logs in with a ticket,
watches a device's session appear, go and come back, denies its authid from
the page and watches the session end; a viewer sees but cannot change the
deny list; sessions that are no console users are refused with the reason
on the page. Screenshots are saved in the test's directory."""

import json
import sys

import pytest

from conftest import JS_DIR, REPO_ROOT, STARTUP_TIMEOUT, WS_LINE, ChildProcess

from tests.ports import free_port

ADMIN_TICKET = "console-admin-ticket-0123456789"
DEVICE_TICKET = "sensor-seven-ticket-0123456789"

VIEWER_TICKET = "auditor-ticket-0123456789abcdef"
INTERN_TICKET = "intern-ticket-0123456789abcdef"

CONFIG = """
[console]
roles = ["watcher"]
operator_roles = ["console"]

[revocation]
close_grace = 1

[[listeners]]
type = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"

[[realms]]
name = "lab"

[[realms.auth.ticket.principals]]
authid = "console-admin"
role = "console"
secret_env = "CONSOLE_TICKET"

[[realms.auth.ticket.principals]]
authid = "sensor-7"
role = "device"
secret_env = "DEVICE_TICKET"

[[realms.auth.ticket.principals]]
authid = "auditor"
role = "watcher"
secret_env = "VIEWER_TICKET"

[[realms.auth.ticket.principals]]
authid = "intern"
role = "staff"
secret_env = "INTERN_TICKET"
""" + "".join(f"""
[[realms.roles]]
name = "{role}"
[[realms.roles.rules]]
uri = "wamp."
match = "prefix"
allow = ["call", "subscribe"]
[[realms.roles.rules]]
uri = "relayrouter."
match = "prefix"
allow = ["call"]
""" for role in ("console", "watcher", "staff")) + """

[[realms.roles]]
name = "device"
[[realms.roles.rules]]
uri = "com.example."
match = "prefix"
allow = ["call", "register", "publish", "subscribe"]
"""


@pytest.fixture
def console_router(tmp_path):
    import os

    config = tmp_path / "router.toml"
    config.write_text(CONFIG)
    env = dict(os.environ, CONSOLE_TICKET=ADMIN_TICKET, DEVICE_TICKET=DEVICE_TICKET,
               VIEWER_TICKET=VIEWER_TICKET, INTERN_TICKET=INTERN_TICKET)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
            "relayrouter", "--config", config, "--state-dir", tmp_path / "state"]
    child = ChildProcess(argv, name="router", env=env, cwd=tmp_path, merge_stderr=True, keep=2000)
    try:
        child.ws_url = child.wait_for(lambda l: (m := WS_LINE.search(l)) and m.group(1), STARTUP_TIMEOUT,
                                      "'relayrouter listening' log line")
        yield child
    finally:
        child.stop()


def test_console_in_chromium(console_router, node_bin, chromium_bin, spawn, tmp_path):
    ws_url = console_router.ws_url
    http_url = ws_url.replace("ws://", "http://").rsplit("/", 1)[0]
    screenshot = tmp_path / "console.png"
    drive = spawn("console drive", [node_bin, JS_DIR / "browser" / "console_drive.js", json.dumps({
        "console_url": f"{http_url}/console", "chromium": chromium_bin,
        "user_data_dir": str(tmp_path / "chromium-profile"), "screenshot": str(screenshot),
        "realm": "lab", "authid": "console-admin", "ticket": ADMIN_TICKET, "watch": "sensor-7"})])
    device = json.dumps({"url": ws_url, "realm": "lab", "authid": "sensor-7", "ticket": DEVICE_TICKET})

    logged_in = drive.wait_event("logged_in", 60)
    assert logged_in["url"] == f"{http_url}/console/"  # /console redirects to the page

    first = spawn("device", [sys.executable, JS_DIR / "console_client.py", device])
    first.wait_event("joined")
    seen = drive.wait_event("seen", 60)
    assert [(s["uri"], s["count"]) for s in seen["subscriptions"]] == [("com.example.console.readings", 1)]
    assert [(r["uri"], r["count"]) for r in seen["registrations"]] == [("com.example.console.status", 1)]
    first.stop()
    drive.wait_event("gone", 60)

    second = spawn("device again", [sys.executable, JS_DIR / "console_client.py", device])
    joined = second.wait_event("joined")
    row = drive.wait_event("seen_again", 60)["session"]
    assert row["session"] == joined["session"]
    assert (row["authrole"], row["transport"], row["serializer"]) == ("device", "websocket", "json")
    assert row["peer"].startswith("tcp4:127.0.0.1:") and row["since"].endswith("Z")
    assert row["rx_bytes"] > 0 and row["tx_bytes"] > 0

    left = second.wait_event("left", 60)
    assert left["reason"] == "wamp.close.revoked"
    result = drive.result(120)
    state = result["state"]
    assert [(e["claim"], e["value"], e["reason"]) for e in state["denylist"]] == [
        ("authid", "sensor-7", "console test")]
    assert [s["authid"] for s in state["sessions"]] == ["console-admin"]
    assert [r["name"] for r in state["realms"]] == ["lab"]
    assert state["error"] is None, state["error"]
    assert result["page_errors"] == []
    assert result["rate_text"].startswith("now: ")
    assert screenshot.stat().st_size > 10_000


def drive_console(spawn, node_bin, chromium_bin, router, tmp_path, name, **cfg):
    http_url = router.ws_url.replace("ws://", "http://").rsplit("/", 1)[0]
    return spawn(f"console {name}", [node_bin, JS_DIR / "browser" / "console_drive.js", json.dumps({
        "console_url": f"{http_url}/console", "chromium": chromium_bin, "realm": "lab",
        "user_data_dir": str(tmp_path / f"chromium-{name}"), "screenshot": str(tmp_path / f"{name}.png"),
        **cfg})])


def test_a_console_viewer_sees_but_changes_nothing(console_router, node_bin, chromium_bin, spawn, tmp_path):
    ws_url = console_router.ws_url
    operator = spawn("operator", [sys.executable, JS_DIR / "console_client.py", json.dumps({
        "url": ws_url, "realm": "lab", "authid": "console-admin", "ticket": ADMIN_TICKET,
        "call": {"procedure": "relayrouter.denylist.add",
                 "kwargs": {"claim": "authid", "value": "someone-else", "ttl": 600, "reason": "viewer test"}}})])
    assert operator.wait_event("called")["result"]["entry"]["value"] == "someone-else"
    device = spawn("device", [sys.executable, JS_DIR / "console_client.py", json.dumps(
        {"url": ws_url, "realm": "lab", "authid": "sensor-7", "ticket": DEVICE_TICKET})])
    device.wait_event("joined")

    result = drive_console(spawn, node_bin, chromium_bin, console_router, tmp_path, "viewer", mode="viewer",
                           authid="auditor", ticket=VIEWER_TICKET, watch="sensor-7").result(120)
    state = result["state"]
    assert (state["access"], state["reach"], state["authrole"]) == ("view", "router", "watcher")
    assert result["status"] == "auditor (watcher, read-only) in realm lab"
    assert [(e["value"], e["reason"]) for e in state["denylist"]] == [("someone-else", "viewer test")]
    assert result["denylist_visible"] and not result["deny_form_visible"]
    assert result["buttons"] == []  # no deny, no remove
    assert result["add_refused"]["error"] == "wamp.error.not_authorized"
    assert "may not administer the deny list" in result["add_refused"]["args"][0]
    assert result["page_errors"] == []
    device.stop()


@pytest.mark.parametrize("authid, ticket, message", [
    # a role with rules for every router procedure, but no console role
    ("intern", INTERN_TICKET, "login refused: session 'intern' with role 'staff' may not use the console "
                              "(console.roles, console.operator_roles or the router's admins may)"),
    # a plain device role: the realm's rules refuse the call first
    ("sensor-7", DEVICE_TICKET, "login refused: "),
])
def test_a_session_that_is_no_console_user_is_refused(console_router, node_bin, chromium_bin, spawn, tmp_path,
                                                      authid, ticket, message):
    result = drive_console(spawn, node_bin, chromium_bin, console_router, tmp_path, authid, mode="refused",
                           authid=authid, ticket=ticket, watch="-").result(120)
    assert result["login_error"].startswith(message), result["login_error"]
    if authid == "sensor-7":
        assert "relayrouter.console.access" in result["login_error"]
    assert result["login_visible"] and not result["main_visible"]
    assert result["state"]["loggedIn"] is False and result["state"]["access"] is None
    assert result["page_errors"] == []


@pytest.fixture
def console_cluster(tmp_path):
    """A NATS server and two clustered routers (a, b) with the console configuration."""
    import os
    import shutil

    children = []
    try:
        port = free_port()
        nats = ChildProcess([shutil.which("nats-server") or "/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", port,
                             "-js", "-sd", tmp_path / "nats"], name="nats-server", merge_stderr=True)
        children.append(nats)
        nats.wait_for(lambda line: "Server is ready" in line, STARTUP_TIMEOUT, "nats-server ready")
        env = dict(os.environ, CONSOLE_TICKET=ADMIN_TICKET, DEVICE_TICKET=DEVICE_TICKET,
                   VIEWER_TICKET=VIEWER_TICKET, INTERN_TICKET=INTERN_TICKET)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        routers = []
        for name in ("a", "b"):
            home = tmp_path / name
            home.mkdir()
            (home / "router.toml").write_text(CONFIG + f"""
[cluster]
nats = ["nats://127.0.0.1:{port}"]
node = "{name}"
heartbeat_interval = 0.25
heartbeat_ttl = 1.0
""")
            argv = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
                    "relayrouter", "--config", home / "router.toml", "--state-dir", home / "state"]
            child = ChildProcess(argv, name=f"router {name}", env=env, cwd=home, merge_stderr=True, keep=2000)
            children.append(child)
            child.ws_url = child.wait_for(lambda l: (m := WS_LINE.search(l)) and m.group(1), STARTUP_TIMEOUT,
                                          "'relayrouter listening' log line")
            routers.append(child)
        yield routers
    finally:
        for child in reversed(children):
            child.stop()


def test_the_console_shows_the_clusters_nodes(console_cluster, node_bin, chromium_bin, spawn, tmp_path):
    """The Cluster table of node a's console lists both nodes from their heartbeats."""
    a, b = console_cluster
    result = drive_console(spawn, node_bin, chromium_bin, a, tmp_path, "cluster", mode="cluster", nodes=2,
                           authid="auditor", ticket=VIEWER_TICKET, watch="-").result(120)
    assert result["panel_visible"] and result["page_errors"] == []
    rows = result["rows"]
    assert [r[0] for r in rows] == ["a (this node)", "b"]
    from relayrouter import __version__

    b_port = b.ws_url.split(":")[2].split("/")[0]
    assert rows[1][1] == __version__ and rows[1][2] == f"127.0.0.1:{b_port}"
    assert rows[1][6].endswith("Z") and rows[0][5].endswith("Z")
    assert [n["name"] for n in result["state"]["nodes"]] == ["a", "b"]
