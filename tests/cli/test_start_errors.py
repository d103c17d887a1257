"""A configuration error stops every plugin at start with one line naming the
program and the key, exit status 1: not after twistd's whole --help (over a
hundred lines), which stays for what really is a usage error (an unknown option)."""

import subprocess
import sys

import pytest

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n"]


def run(tmp_path, *args, env=None):
    done = subprocess.run([*TWISTD, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **(env or {})})
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("args, line", [
    (["relayrouter", "--config", "missing.toml"], "relayrouter: configuration error: config file missing.toml does not exist"),
    (["iot-agent", "--mqtt-port", "nope"],
     "iot-agent: configuration error: --mqtt-port (IOT_AGENT_MQTT_PORT): 'nope' is not a valid int"),
    (["pairing-agent"], "pairing-agent: configuration error: --local-service (PAIRING_AGENT_LOCAL_SERVICE): required"),
    (["mediator-proxy", "--router", "ws://127.0.0.1:9/ws", "--realm", "lab", "--authid", "agent"],
     "mediator-proxy: configuration error: --agent-endpoint (MEDIATOR_PROXY_AGENT_ENDPOINT): required"),
    (["decrypt-search"], "decrypt-search: configuration error: --config (DECRYPT_SEARCH_CONFIG): required"),
], ids=["relayrouter", "iot-agent", "pairing-agent", "mediator-proxy", "decrypt-search"])
def test_a_configuration_error_is_one_line(tmp_path, args, line):
    code, out, err = run(tmp_path, *args)
    assert code == 1, (out, err)
    assert out == "" and "Usage:" not in err and "Traceback" not in err, (out, err)
    assert err.strip().startswith(line), err


def test_an_unknown_option_still_shows_the_usage(tmp_path):
    code, out, err = run(tmp_path, "iot-agent", "--no-such-option")
    assert code == 1
    assert "Usage:" in out + err and "option --no-such-option not recognized" in out + err
