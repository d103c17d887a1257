"""The built distributions and a fresh virtualenv with the wheel (no extras), once for tests/packaging."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIRS = ("relayrouter", "connectors", "twisted/plugins")


def _run(argv, **kwargs):
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _clean_env() -> dict:
    """The environment of a user's shell: nothing that points into the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


# What a fresh clone does not have: build output and metadata left by earlier
# builds and editable installs.  A stale SOURCES.txt in relayrouter.egg-info
# makes setuptools ship modules that a clean build leaves out.
NOT_IN_A_CLONE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".tox",
                                        ".venv", "node_modules", "relayrouter-state", ".pytest_cache",
                                        ".hypothesis", "dropin.cache")


@pytest.fixture(scope="package")
def dists(tmp_path_factory) -> dict:
    clone = tmp_path_factory.mktemp("clone") / "relayrouter"
    shutil.copytree(ROOT, clone, ignore=NOT_IN_A_CLONE)
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(out), str(clone)], env=_clean_env())
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="package")
def venv(dists, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(home)])
    _run([str(home / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
          str(dists["wheel"])], env=_clean_env())
    return home
