"""Every example block of README.md and docs/ checked with Sybil, as written.

* ``toml``: parsed, then passed through the configuration checker of the
  component it configures (the router's start-time check, or
  decrypt-search's when its first line is ``# decrypt-search.toml`` or ``# <org>-decrypt-search.toml``,
  its listing of organisations' when ``# decrypt-search-organisations.toml``), in a
  directory holding what the examples name (``relayrouter pki``'s
  certificates in ``pki/``, ``relayrouter keys``' key files in ``keys/``, a
  JWT public key ``keys/local-1.pem``; ``/etc/relayrouter/`` and
  ``/run/secrets/`` are that directory's own), with every environment variable a
  ``*_env`` key names set, and decrypt-search's example validators and
  hooks importable (``mypackage``), and the files the page's earlier examples name
  (``# acme-decrypt-search.toml``), so that each example also passes alone. A router fragment is checked as part of a whole
  file: tables of one realm without the realm (``[[realms.mailboxes]]``
  alone) as the realm ``realm1``'s, a listener's tables without the
  listener (``[listeners.tls]``) as a WebSocket listener's, and a fragment naming no realm with
  ``realm1`` added, the realm a router without a file has;
* ``python``: run, each block in a fresh namespace (a block a tutorial saves
  as a file runs as the tutorial's step instead, tests/docs/test_tutorials.py);
* ``json``: parsed.

Shell steps (``console`` blocks) run in tests/docs/test_tutorials.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.parsers.markdown import CodeBlockParser

from relayrouter import config as router_config

from .sandbox import check_config, file_name as _file_name, make_sandbox, save
from .tutorial import FILE_COMMENT

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md"]
               + [p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts])


def check_toml(example) -> None:
    try:
        check_config(example.parsed, example.namespace["sandbox"])
    except router_config.ConfigError as e:
        raise AssertionError(f"configuration error: {e}") from None


def run_python(example) -> None:
    """In a process of its own (an example may run a reactor), in the sandbox, within a minute."""
    source = example.parsed
    parts = Path(example.path).parts
    if _file_name(source) and ("tutorials" in parts or "howto" in parts or Path(example.path).name == "README.md"):
        return  # saved and run by its tutorial or guide (test_tutorials.py, test_howtos.py); README's: tests/packaging
    sandbox: Path = example.namespace["sandbox"]
    script = sandbox / f"example_{example.line}.py"
    script.write_text(source)
    result = subprocess.run([sys.executable, str(script)], cwd=sandbox, capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, f"{example.path}:{example.line} exited {result.returncode}:\n" \
                                   f"{result.stdout}{result.stderr}"


def check_json(example) -> None:
    json.loads(example.parsed)


SYBIL = Sybil(parsers=[CodeBlockParser("toml", check_toml), CodeBlockParser("python", run_python),
                       CodeBlockParser("json", check_json)])


def _examples() -> list:
    return [pytest.param(example, id=f"{page.relative_to(ROOT)}:{example.line}")
            for page in PAGES for example in SYBIL.parse(page).examples()]


def files_before(example) -> list[str]:
    """The TOML examples of ``example``'s page above it that name their file (an example may name
    them: decrypt-search's listing of organisations names each organisation's file)."""
    return [str(other.parsed) for other in example.document.examples()
            if other.line < example.line and other.region.evaluator is check_toml and _file_name(str(other.parsed))]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    return make_sandbox(tmp_path_factory.mktemp("examples"))


@pytest.mark.parametrize("example", _examples())
def test_example(example, sandbox, monkeypatch):
    monkeypatch.chdir(sandbox)
    for name in [n for n in os.environ if n.endswith(("_SECRET", "_TICKET", "_TOKEN"))]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(os, "environ", os.environ.copy())  # what an example sets stays in it
    example.namespace["sandbox"] = sandbox
    for source in files_before(example):  # as the reader has them, whichever example ran before
        save(source, sandbox)
    example.evaluate()


def test_every_page_is_read():
    assert len(PAGES) > 20 and _examples()
