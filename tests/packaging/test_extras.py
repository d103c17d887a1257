"""A plugin or a configured feature whose extra is missing: one line naming it, exit 1, no traceback.

Run in the fresh virtualenv of conftest.py, which has the wheel without any
extra, from an empty directory, as a user who typed ``pip install relayrouter``.
"""

import configparser
import subprocess

import pytest

from relayrouter import extras

from .conftest import ROOT, _clean_env

pytestmark = pytest.mark.timeout(900)


def _twistd(venv, tmp_path, *args):
    return subprocess.run([str(venv / "bin" / "twistd"), "-n", *args], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("plugin, extra", [("iot-agent", "iot"), ("decrypt-search", "decrypt-search")])
@pytest.mark.parametrize("args", [["--help"], []])
def test_a_connector_without_its_extra_says_which_in_one_line(venv, tmp_path, plugin, extra, args):
    result = _twistd(venv, tmp_path, plugin, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"the {plugin} needs the '{extra}' extra: pip install 'relayrouter[{extra}]'\n"


@pytest.mark.parametrize("toml, line", [
    ('[cluster]\nnats = ["nats://127.0.0.1:4222"]\n',
     "[cluster] needs the 'cluster' extra: pip install 'relayrouter[cluster]'"),
    ('[storage]\ndsn = "postgresql://relayrouter@127.0.0.1/relayrouter"\n',
     "[storage] dsn (PostgreSQL) needs the 'postgresql' extra: pip install 'relayrouter[postgresql]'"),
])
def test_a_router_feature_without_its_extra_says_which_in_one_line(venv, tmp_path, toml, line):
    (tmp_path / "router.toml").write_text(toml)
    result = _twistd(venv, tmp_path, "relayrouter", "--config", "router.toml")
    assert result.returncode == 1
    assert result.stderr == line + "\n"
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "relayrouter-state").exists()  # stopped before anything started


def test_plugins_without_extras_still_start_their_help(venv, tmp_path):
    for plugin in ("relayrouter", "mediator-proxy", "pairing-agent"):
        result = _twistd(venv, tmp_path, plugin, "--help")
        assert result.returncode == 0, result.stderr
        assert "--state-dir" in result.stdout


def test_the_all_extra_is_every_feature_extra():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    declared = {name: set(filter(None, value.split("\n")))
                for name, value in parser["options.extras_require"].items()}
    features = set().union(*(declared[name] for name in extras.EXTRAS))
    assert declared["all"] == features
    assert set(extras.EXTRAS) < set(declared)
