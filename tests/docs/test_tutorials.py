"""Every tutorial, run as written (tests/docs/tutorial.py says how) from the built wheel.

Each runs in a fresh directory and a fresh virtualenv, inside a network
namespace of its own, against the real router and connectors it starts.
"""

from pathlib import Path

import pytest

from . import tutorial

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(p for p in (DOCS / "tutorials").glob("*.md") if p.name != "index.md")

pytestmark = pytest.mark.timeout(1200)


def test_every_tutorial_is_listed():
    assert [p.stem for p in PAGES] and all(tutorial.steps(p) for p in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_tutorial_runs_as_written(page, wheelhouse, tmp_path):
    workdir = tmp_path / "reader"
    workdir.mkdir()
    tutorial.run(page, workdir, wheelhouse)
