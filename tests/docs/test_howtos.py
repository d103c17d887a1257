"""Every how-to guide with commands, run as written (tests/docs/tutorial.py says how) from the built wheel.

A guide's commands run after the set-up docs/howto/index.md shows (a virtualenv with relayrouter
installed and active), in a fresh directory, inside a network namespace of its own. A guide whose
commands cannot run here says why on its page (docs/explanation/tested-docs.md lists them).
"""

import shutil
import tempfile
from pathlib import Path

import pytest

from . import tutorial

HOWTO = Path(__file__).resolve().parents[2] / "docs" / "howto"
PAGES = sorted(p for p in HOWTO.glob("*.md") if p.name != "index.md" and tutorial.steps(p)
               and any(isinstance(s, tutorial.Command) for s in tutorial.steps(p)))
# Guides with commands shown for reading only; each says why on its page.
NOT_RUN = {"systemd.md"}

pytestmark = pytest.mark.timeout(1200)


def test_every_guide_with_commands_runs_or_says_why():
    shown = {p.name for p in HOWTO.glob("*.md") if "```text" in p.read_text() or "```console" in p.read_text()}
    assert {p.name for p in PAGES} | NOT_RUN == shown - {"index.md"}
    for name in NOT_RUN:
        assert "not run by the documentation's tests" in (HOWTO / name).read_text(), name
        assert f"/howto/{name[:-3]}" in (HOWTO.parent / "explanation" / "tested-docs.md").read_text(), name


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
@pytest.mark.scenario  # a whole guide, from pip install on
def test_guide_runs_as_written(page, wheelhouse):
    base = Path(tempfile.mkdtemp(prefix="howto-"))  # under /tmp: a normal user can reach it
    try:
        tutorial.run(page, base, wheelhouse, before=HOWTO / "index.md")
    finally:
        shutil.rmtree(base, ignore_errors=True)
