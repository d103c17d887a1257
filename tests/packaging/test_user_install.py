"""What a new user does first, done the way they do it.

README's first command is ``pip install . && twistd -n relayrouter`` and its example client.py.  The
rest of the suite imports the checkout, so it cannot notice a module that
the built distribution leaves out; these tests build the sdist and the wheel
(the wheel from the sdist, as pip does), install the wheel into a fresh
virtualenv with nothing of the checkout on its path, and run the router from
an empty directory with a real client.
"""

import re
import signal
import subprocess
import tarfile
import zipfile

import pytest

from relayrouter import __version__

from ..integration.test_twistd import read_until
from ..ports import is_free
from .conftest import PACKAGE_DIRS, ROOT, _clean_env, _run

LISTENING = re.compile(r"WebSocket at (ws://127\.0\.0\.1:\d+/ws)")

pytestmark = pytest.mark.timeout(900)


def _sources() -> set[str]:
    """Every module of ours in the checkout, as a path relative to the root."""
    found = set()
    for top in PACKAGE_DIRS:
        for path in (ROOT / top).rglob("*.py"):
            if "__pycache__" not in path.parts:
                found.add(path.relative_to(ROOT).as_posix())
    return found


def test_the_wheel_holds_every_module(dists):
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    missing = sorted(_sources() - names)
    assert not missing, f"the wheel leaves out {missing}"
    assert "twisted/plugins/relayrouter_plugin.py" in names
    # Static files the router serves (package_data): the console and the relay's video page.
    for static in ("relayrouter/console/static/index.html", "relayrouter/console/static/console.js",
                   "relayrouter/console/static/console.css", "relayrouter/console/static/autobahn.min.js",
                   "relayrouter/console/static/AUTOBAHN-LICENSE.txt", "relayrouter/relay/static/video.html"):
        assert static in names, f"the wheel leaves out {static}"
    # The plugin directory must stay a namespace: an __init__.py there would
    # shadow Twisted's own twisted.plugins package.
    assert "twisted/plugins/__init__.py" not in names and "twisted/__init__.py" not in names


def test_the_sdist_holds_every_module(dists):
    with tarfile.open(dists["sdist"]) as tar:
        prefix = tar.getnames()[0].split("/")[0]
        names = {n[len(prefix) + 1:] for n in tar.getnames()}
    missing = sorted(_sources() - names)
    assert not missing, f"the sdist leaves out {missing}"
    assert {"setup.cfg", "README.md", "pyproject.toml"} <= names


def test_version_command(venv):
    result = _run([str(venv / "bin" / "relayrouter"), "--version"], env=_clean_env(), cwd=venv)
    assert result.stdout.strip() == f"relayrouter {__version__}"


@pytest.mark.xdist_group("port-8080")  # one user of the default port at a time (tests/parallel.py)
def test_readme_first_command_runs_a_router_a_client_can_use(venv, tmp_path):
    # The test runs what README says; if README changes, so must this test.
    readme = (ROOT / "README.md").read_text()
    assert "pip install . && twistd -n relayrouter\n" in readme

    workdir = tmp_path / "empty"
    workdir.mkdir()
    argv = [str(venv / "bin" / "twistd"), "-n", "relayrouter"]
    if not is_free(8080):
        # Another program has the default port: the same router, on a port of ours.
        argv += ["--websocket", "tcp:0:interface=127.0.0.1"]
    proc = subprocess.Popen(argv, cwd=workdir, env=_clean_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        started, _ = read_until(proc, re.compile(rf"relayrouter {re.escape(__version__)} starting"), 60)
        match, _ = read_until(proc, LISTENING, 30)
        url = match.group(1)
        if "--websocket" not in argv:
            assert url == "ws://127.0.0.1:8080/ws"
        # README's example, as written (on the router's port when 8080 was taken).
        (workdir / "client.py").write_text(readme_client().replace("ws://127.0.0.1:8080/ws", url))
        client = _run([str(venv / "bin" / "python"), "client.py"], cwd=workdir, env=_clean_env(), timeout=120)
        assert client.stdout.splitlines() == ["called: 5", "event: hello"]
        assert "`python client.py` prints `called: 5` and `event: hello`" in readme
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rest = proc.stdout.read()
    assert "Traceback" not in rest, rest
    # The router kept its state where README says, inside the working directory.
    assert (workdir / "relayrouter-state").is_dir()


def readme_client() -> str:
    """README's ``# client.py`` block."""
    text = (ROOT / "README.md").read_text()
    return re.search(r"```python\n(# client\.py\n.*?)```", text, re.S).group(1)

