"""A state directory written by the previous release opens with this one, nothing lost, schema recorded.

No release has been tagged yet: the previous one is the tree of PREVIOUS (tests/previous_release.py)
(0.1.0, the last commit before the upgrade notes and the schema versions of
the small SQLite files existed), taken out of this repository's history with
``git archive``. Its router (``twistd relayrouter`` from that tree) writes
every kind of state the router keeps, through its HTTP endpoints: a deny-list
entry, a tenant, a mailbox message and a stored event. This release's router
then starts on the same directory and must give each back, with each file's
schema version recorded.
"""

import sqlite3
import subprocess
import time
from pathlib import Path

import jwt as pyjwt
import pytest

from ..connectors.processes import STARTED, RouterProcess, http_json
from ..previous_release import previous_tree  # noqa: F401 (a fixture)

SECRET = "upgrade-test-jwt-secret-0123456789abcdef-0123456789"

CONFIG = """
state_dir = "{state}"

[[listeners]]
type = "websocket"
endpoint = "tcp:{port}:interface=127.0.0.1"

[[realms]]
name = "r1"
[realms.auth.jwt]
algorithms = ["HS256"]
as_ticket = true
authrole_claim = "role"
keys = [{secret_env = "UPGRADE_JWT_SECRET"}]

[[realms.history]]
uri = "com.upgrade."
match = "prefix"
limit = 100

[[realms.mailboxes]]
uri = "mailbox.{authid}"
http = "open"

[[realm_templates]]
name = "tenant"

[tenants]
admin_roles = ["admin"]
management_realms = ["r1"]

[revocation]
claims = ["bid"]
admin_roles = ["admin"]
admin_realm = "r1"

[http_bridge]
default_realm = "r1"
"""


def _token(**claims) -> str:
    now = int(time.time())
    return pyjwt.encode({"iat": now, "exp": now + 3600, "role": "user", **claims}, SECRET, algorithm="HS256")


def _call(router, procedure, *args, sub="x"):
    return http_json("POST", f"{router.http_url}/call", json_body({"procedure": procedure, "args": list(args)}),
                     {"Authorization": f"Bearer {_token(sub=sub)}", "Content-Type": "application/json"})


def json_body(value) -> bytes:
    import json

    return json.dumps(value).encode()


def _router(tmp_path, tree: Path | None) -> RouterProcess:
    router = RouterProcess(tmp_path, CONFIG, env={"UPGRADE_JWT_SECRET": SECRET})
    if tree is not None:
        router.env["PYTHONPATH"] = str(tree)  # the previous release's packages and twistd plugins
        router.cwd = tree  # python -c puts the working directory first on the path
    router.start()
    return router


def _write_with_previous(tmp_path, tree) -> None:
    router = _router(tmp_path, tree)
    admin = {"Authorization": f"Bearer {_token(sub='ops', role='admin')}", "Content-Type": "application/json"}
    try:
        assert "relayrouter 0.1.0 starting" in router.output(), router.output()
        code, body, _ = http_json("POST", f"{router.http_url}/denylist", json_body(
            {"claim": "bid", "value": "booking-7", "ttl": 86400, "reason": "refund"}), admin)
        assert code == 200, body
        code, body, _ = http_json("POST", f"{router.http_url}/realms", json_body({"name": "acme"}), admin)
        assert code == 200, body
        code, body, _ = http_json("POST", f"{router.http_url}/mailbox/mailbox.x?realm=r1", b"kept across",
                                  {"Content-Type": "text/plain"})
        assert code == 202, body
        code, body, _ = http_json("POST", f"{router.http_url}/publish", json_body(
            {"topic": "com.upgrade.t", "args": ["event from 0.1.0"]}),
            {"Authorization": f"Bearer {_token(sub='x')}", "Content-Type": "application/json"})
        assert code == 200, body
    finally:
        assert router.stop() == 0
        STARTED.remove(router)  # its output is the previous release's, not this one's to check


def test_state_written_by_the_previous_release_opens_unchanged(tmp_path, previous_tree):
    _write_with_previous(tmp_path, previous_tree)
    state = tmp_path / "router" / "state"
    with sqlite3.connect(state / "denylist.sqlite3") as db:
        assert db.execute("PRAGMA user_version").fetchone() == (0,)  # 0.1.0 recorded none

    router = _router(tmp_path, None)
    try:
        assert "relayrouter 0.2.0" in router.output(), router.output()
        admin = {"Authorization": f"Bearer {_token(sub='ops', role='admin')}"}
        code, body, _ = http_json("GET", f"{router.http_url}/denylist", None, admin)
        assert code == 200 and [(e["claim"], e["value"], e["reason"]) for e in body["entries"]] == [
            ("bid", "booking-7", "refund")]
        code, body, _ = http_json("GET", f"{router.http_url}/realms", None, admin)
        assert code == 200 and "acme" in str(body), body
        code, body, _ = _call(router, "relayrouter.mailbox.stats", "mailbox.x")
        assert code == 200 and body["args"][0]["depth"] == 1, body
        code, body, _ = _call(router, "relayrouter.history.read", "com.upgrade.t")
        assert code == 200 and "event from 0.1.0" in str(body), body
    finally:
        assert router.stop() == 0
    # Each file records its schema version now.
    for name in ("denylist.sqlite3", "tenants.sqlite3"):
        with sqlite3.connect(state / name) as db:
            assert db.execute("PRAGMA user_version").fetchone() == (1,), name
    with sqlite3.connect(state / "relayrouter.sqlite3") as db:
        assert db.execute("SELECT version FROM relayrouter_schema").fetchone()[0] >= 3


def test_a_file_of_a_newer_schema_is_refused_naming_it(tmp_path):
    from relayrouter.store import StoreError
    from relayrouter.store.denylist import SqliteDenyListStore

    path = tmp_path / "denylist.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    store = SqliteDenyListStore(path)
    with pytest.raises(StoreError, match=r"denylist\.sqlite3: schema version 99 is newer than this relayrouter"):
        store.open()
    store.close()


def test_the_iot_agents_store_written_by_the_previous_release_opens_unchanged(tmp_path, previous_tree):
    """The IoT agent's SQLite store (iot-agent-state/iot-agent.sqlite3), made by 0.1.0's registry code."""
    import json
    import sys

    path = tmp_path / "iot-agent.sqlite3"
    write = ("import sys; from connectors.iot_agent.registry import Tables, connect\n"
             "db, dialect = connect(sys.argv[1]); tables = Tables(db, dialect)\n"
             "tables.create_device('acme', {'id': 'thermo1', 'label': 'thermometer',"
             " 'attrs': [{'label': 'temperature', 'type': 'float'}]}); tables.commit(); db.close()\n")
    result = subprocess.run([sys.executable, "-c", write, str(path)], cwd=previous_tree, capture_output=True,
                            text=True, timeout=60, env={"PYTHONPATH": str(previous_tree), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    from connectors.iot_agent.registry import SCHEMA_VERSION, Tables, connect

    db, dialect = connect(str(path))
    try:
        assert db.execute("PRAGMA user_version").fetchone() == (0,)
        tables = Tables(db, dialect)
        device = tables.get_device("acme", "thermo1")
        assert device["label"] == "thermometer" and json.dumps(device["attrs"]).count("temperature") == 1
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        db.close()
