"""The relay tutorial (tests/docs/test_tutorials.py runs docs/tutorials/relay.md as written) saves
the configuration of docs/reference/relay.md (whose commands tests/docs/test_reference_commands.py
runs as written), so neither drifts."""

from pathlib import Path

from ..docs import tutorial
from .readme import blocks

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "relay.md"


def _saved(name: str) -> str:
    (content,) = [s.content for s in tutorial.steps(TUTORIAL) if isinstance(s, tutorial.SaveFile) and s.name == name]
    return content


def test_the_tutorial_runs_the_reference_relay_configuration():
    assert _saved("relay.toml") == blocks("toml")[0]
