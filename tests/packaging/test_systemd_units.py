"""contrib/systemd/: the units for the router and each connector, checked by ``systemd-analyze verify``.

``verify`` also checks that each ExecStart program exists; the units name
/opt/relayrouter/bin/twistd (the documented virtualenv), which this machine
has no reason to have, so the copy verified names this interpreter's twistd
instead and nothing else is changed.  Any warning (an unknown key, a bad
value) fails the test: ``verify`` prints it but still exits 0.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

UNITS = ROOT / "contrib" / "systemd"
INSTALLED_TWISTD = "/opt/relayrouter/bin/twistd"
PLUGINS = ("relayrouter", "iot-agent", "mediator-proxy", "pairing-agent", "decrypt-search")


@pytest.fixture(scope="module")
def systemd_analyze():
    found = shutil.which("systemd-analyze")
    if found:
        return found
    message = "systemd-analyze is required (Debian's systemd; scripts/test.sh installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: a missing install is an error)", pytrace=False)
    pytest.skip(message)


def test_a_unit_for_the_router_and_each_connector():
    names = sorted(p.name for p in UNITS.glob("*.service"))
    assert names == sorted(["relayrouter.service"] + [f"relayrouter-{p}.service" for p in PLUGINS[1:]])
    for plugin in PLUGINS:
        unit = (UNITS / ("relayrouter.service" if plugin == "relayrouter" else f"relayrouter-{plugin}.service"))
        text = unit.read_text()
        # Foreground, logging to the journal, no pid file; started side by side from one directory.
        assert f"ExecStart={INSTALLED_TWISTD} --nodaemon --pidfile= {plugin}" in text
        assert "WorkingDirectory=/var/lib/relayrouter" in text and "User=relayrouter" in text


def test_systemd_analyze_verify_accepts_every_unit(systemd_analyze, tmp_path):
    twistd = Path(sys.executable).with_name("twistd")
    assert twistd.exists()
    for unit in UNITS.glob("*.service"):
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED_TWISTD, str(twistd)))
    result = subprocess.run([systemd_analyze, "verify", "--man=no", *sorted(map(str, tmp_path.glob("*")))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_verify_is_not_blind(systemd_analyze, tmp_path):
    """The check above can fail: an unknown key is reported."""
    unit = tmp_path / "relayrouter.service"
    unit.write_text((UNITS / "relayrouter.service").read_text().replace(INSTALLED_TWISTD, sys.executable)
                    + "Restartt=always\n")
    result = subprocess.run([systemd_analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                            timeout=120)
    assert "Unknown key 'Restartt'" in result.stdout + result.stderr
