"""A fresh virtualenv with the wheel (no extras), once for tests/packaging."""

import sys
from pathlib import Path

import pytest

from ..dists import ROOT, _clean_env, _run

PACKAGE_DIRS = ("relayrouter", "connectors", "twisted/plugins")
__all__ = ["PACKAGE_DIRS", "ROOT", "_clean_env", "_run"]


@pytest.fixture(scope="package")
def venv(dists, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", str(home)])
    _run([str(home / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "--no-compile",
          str(dists["wheel"])], env=_clean_env())  # compiled when imported (see tests/docs/tutorial.py)
    return home
