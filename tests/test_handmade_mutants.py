"""The hand-made mutants (scripts/handmade-mutants.toml) follow the code: each
one's text is found exactly once in its module and the mutated module
compiles, so the mutation run measures what the list says it does."""

import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = tomllib.loads((ROOT / "scripts" / "handmade-mutants.toml").read_text())["module"]


def _runner():
    spec = importlib.util.spec_from_file_location("handmade_mutants", ROOT / "scripts" / "handmade_mutants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("module", MODULES, ids=[m["name"] for m in MODULES])
def test_every_hand_made_mutant_applies_once_and_compiles(module):
    _runner().check(module)
    for test in module["tests"]:
        assert (ROOT / test).is_file(), test


def test_a_mutant_whose_text_is_not_in_its_module_stops_the_run():
    module = {"name": "x", "file": "relayrouter/relay/scope.py", "tests": [],
              "mutant": [{"old": "no such line in scope.py", "new": ""}]}
    with pytest.raises(SystemExit, match="occurs 0 times"):
        _runner().check(module)
