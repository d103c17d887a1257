"""The sdist and wheel built from a clean copy of the tree, once per test run (tests/packaging, tests/docs),
and shared by the run's pytest-xdist workers: the first to need them builds them, the others wait for it."""

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
# makes setuptools ship modules that a clean build leaves out.  Twisted rewrites
# twisted/plugins/dropin.cache through a <random>dropin.cache.new that a twistd started
# meanwhile by another test renames away: copying it could fail, FileNotFoundError.
NOT_IN_A_CLONE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".tox",
                                        ".venv", "node_modules", "relayrouter-state", ".pytest_cache",
                                        ".hypothesis", "*dropin.cache*", "_build")


@contextlib.contextmanager
def made_once(tmp_path_factory, name: str):
    """A directory for ``name``, and whether it is still to be made (then the caller makes it).

    Under pytest-xdist it lies in the run's directory, which every worker's own
    temporary directory is in: the first worker makes it while holding a lock, the
    others wait on the lock and find it made.  In a serial run it is the run's own."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield tmp_path_factory.mktemp(name), True
        return
    path = tmp_path_factory.getbasetemp().parent / name
    done = path / ".made"
    with open(path.with_name(f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            yield path, False
            return
        shutil.rmtree(path, ignore_errors=True)  # a worker that failed half-way
        path.mkdir()
        yield path, True
        done.touch()


@pytest.fixture(scope="session")
def dists(tmp_path_factory) -> dict:
    with made_once(tmp_path_factory, "dist") as (out, to_make):
        if to_make:
            clone = out / "clone" / "relayrouter"
            shutil.copytree(ROOT, clone, ignore=NOT_IN_A_CLONE)
            _run([sys.executable, "-m", "build", "--outdir", str(out), str(clone)], env=_clean_env())
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="session")
def wheelhouse(dists, tmp_path_factory) -> Path:
    """The wheel and a wheel of every package it and its extras need: what
    ``pip install --no-index --find-links`` installs from, without a network."""
    with made_once(tmp_path_factory, "wheelhouse") as (house, to_make):
        if to_make:
            _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir",
                  str(house), f"relayrouter[all] @ {dists['wheel'].as_uri()}"], env=_clean_env(), timeout=900)
    return house

