"""`twistd relayrouter --log-format json`: one JSON object per line, with who
each line is about, and no secret in it."""

import json
import os
import re
import subprocess
import sys

import pytest
import pytest_twisted

from ..support import LeftBeforeJoining, connect_ws
from .test_twistd import ROOT, Address, read_until, stop, twistd

SECRET = "alice-static-ticket-secret-0123456789"
LISTENING = re.compile(r'"event": "relayrouter listening: WebSocket at ws://127\.0\.0\.1:(\d+)/ws')
REFUSED = re.compile(r"Authentication refused")

CONFIG = """
[[listeners]]
type = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"

[[realms]]
name = "lab"

[[realms.auth.ticket.principals]]
authid = "alice"
role = "device"
secret_env = "ALICE_TICKET"
"""


def _records(output: str) -> list[dict]:
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not one JSON object per line: {line!r}") from None
    return records


@pytest_twisted.inlineCallbacks
def test_json_lines_name_realm_session_and_peer_and_hold_no_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("ALICE_TICKET", SECRET)
    config = tmp_path / "router.toml"
    config.write_text(CONFIG)
    proc = twistd("--config", str(config), "--state-dir", str(tmp_path / "state"), "--log-format", "json")
    try:
        match, _ = read_until(proc, LISTENING)
        address = Address(int(match.group(1)))
        with pytest.raises(LeftBeforeJoining):
            yield connect_ws(address, realm="lab", authmethods=["ticket"], authid="alice", ticket=SECRET + "x")
        session = yield connect_ws(address, realm="lab", authmethods=["ticket"], authid="alice", ticket=SECRET)
        assert session.details.authid == "alice"
        read_until(proc, REFUSED)
    finally:
        stop(proc)
    _, output = read_until(proc, re.compile("Server Shut Down"))
    assert proc.returncode == 0
    records = _records(output)
    for record in records:
        assert {"time", "level", "namespace", "event"} <= set(record), record
    refused = [r for r in records if r["event"].startswith("Authentication refused")]
    assert len(refused) == 1
    assert refused[0]["level"] == "info"
    assert refused[0]["realm"] == "lab"
    assert refused[0]["authid"] == "alice"
    assert refused[0]["peer"].startswith("tcp4:127.0.0.1:")
    assert any("Shutdown" in r["event"] for r in records)
    assert SECRET not in output


def test_the_environment_variable_chooses_the_format_and_a_bad_value_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("RELAYROUTER_LOG_FORMAT", "yaml")
    proc = twistd("--websocket", "tcp:0:interface=127.0.0.1", "--state-dir", str(tmp_path / "s"))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "RELAYROUTER_LOG_FORMAT: must be one of text, json, not 'yaml'" in out

    monkeypatch.setenv("RELAYROUTER_LOG_FORMAT", "json")
    proc = twistd("--websocket", "tcp:0:interface=127.0.0.1", "--state-dir", str(tmp_path / "s"))
    try:
        read_until(proc, LISTENING)
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert all(record["event"] for record in _records("".join(proc.seen)))


def test_json_with_twistd_syslog_is_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
         "--syslog", "relayrouter", "--log-format", "json"],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=30)
    assert proc.returncode != 0
    assert "--log-format json: not with --syslog" in proc.stdout + proc.stderr
