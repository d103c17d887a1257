"""The README's relay commands are the ones the relay tutorial runs (tests/docs/test_tutorials.py
runs docs/tutorials/relay.md as written), against the same configuration, so neither drifts."""

from pathlib import Path

from ..docs import tutorial
from .readme import blocks, commands

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "relay.md"


def _tutorial_commands() -> list[str]:
    return [" ".join(step.text.replace("\\\n", " ").split()) for step in tutorial.steps(TUTORIAL)
            if isinstance(step, tutorial.Command)]


def _saved(name: str) -> str:
    (content,) = [s.content for s in tutorial.steps(TUTORIAL) if isinstance(s, tutorial.SaveFile) and s.name == name]
    return content


def test_the_tutorial_runs_the_readmes_relay_configuration():
    assert _saved("relay.toml") == blocks("toml")[0]


def test_every_concrete_relay_command_of_the_readme_is_run_by_the_tutorial():
    ran = _tutorial_commands()
    readme = commands("twistd relayrouter --config relay.toml")
    readme += [c for c in commands("relayrouter host --session URL --tcp") if "URL" not in c]
    readme += [c for c in commands("relayrouter file --session URL --log") if "URL" not in c and "--check" not in c]
    assert len(readme) == 7, readme
    for command in readme:
        command = command.split(" # ")[0].strip()
        assert any(r.startswith(command) or command.startswith(r) for r in ran), command
