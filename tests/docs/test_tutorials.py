"""Every tutorial, run as written (tests/docs/tutorial.py says how) from the built wheel.

Each runs in a fresh directory and a fresh virtualenv, inside a network
namespace of its own, against the real router and connectors it starts.
"""

import shutil
import tempfile
from pathlib import Path

import pytest

from . import tutorial

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(p for p in (DOCS / "tutorials").glob("*.md") if p.name != "index.md")

pytestmark = pytest.mark.timeout(1200)


def test_every_tutorial_is_listed():
    assert [p.stem for p in PAGES] and all(tutorial.steps(p) for p in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
@pytest.mark.scenario  # a whole tutorial, from pip install on
def test_tutorial_runs_as_written(page, wheelhouse):
    base = Path(tempfile.mkdtemp(prefix="tutorial-"))  # under /tmp: a normal user can reach it
    try:
        tutorial.run(page, base, wheelhouse)
    finally:
        shutil.rmtree(base, ignore_errors=True)
