"""Every example block of README.md and docs/ checked with Sybil, as written.

* ``toml``: parsed, then passed through the configuration checker of the
  component it configures (the router's start-time check, or
  decrypt-search's when its first line is ``# decrypt-search.toml``), in a
  directory holding what the examples name (``relayrouter pki``'s
  certificates in ``pki/``, ``relayrouter keys``' key files in ``keys/``, a
  JWT public key ``keys/local-1.pem``; ``/etc/relayrouter/`` and
  ``/run/secrets/`` are that directory's own), with every environment variable a
  ``*_env`` key names set, and decrypt-search's example validators and
  hooks importable (``mypackage``). A router fragment is checked as part of a whole
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
import secrets
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.parsers.markdown import CodeBlockParser

from relayrouter import config as router_config

from .tutorial import FILE_COMMENT

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md"]
               + [p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts])


def _file_name(source: str) -> str | None:
    match = FILE_COMMENT.match(source.split("\n", 1)[0])
    return match["name"] if match else None


def _env_names(value) -> set[str]:
    """Every environment variable a ``*_env`` key of the TOML names."""
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k.endswith("_env") and isinstance(v, str)}
        return found.union(*(_env_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_env_names(v) for v in value))
    return set()


def check_toml(example) -> None:
    sandbox: Path = example.namespace["sandbox"]
    source = example.parsed
    for directory in ("/etc/relayrouter/", "/run/secrets/"):
        source = source.replace(directory, f"{sandbox}{directory}")
    data = tomllib.loads(source)
    name = _file_name(source) or "router.toml"
    path = sandbox / name
    path.write_text(source)
    for variable in _env_names(data):
        os.environ.setdefault(variable, secrets.token_urlsafe(48))
    if name == "decrypt-search.toml":
        from connectors.decrypt_search import config as ds_config

        sys.path.insert(0, str(sandbox))  # the validators' and hooks' package (mypackage)
        try:
            ds_config.load(str(path))
        finally:
            sys.path.remove(str(sandbox))
        return
    try:
        router_config.parse(as_whole_file(data)).with_defaults()
    except router_config.ConfigError as e:
        raise AssertionError(f"configuration error: {e}") from None


def as_whole_file(data: dict) -> dict:
    """A router fragment as part of a whole file (see the module's docstring)."""
    listeners = data.get("listeners")
    if isinstance(listeners, dict) and "endpoint" not in listeners:
        data = {**data, "listeners": [{"type": "websocket", "endpoint": "tcp:8443", **listeners}]}
    realms = data.get("realms")
    if isinstance(realms, dict) and "name" not in realms:
        return {**data, "realms": [{"name": "realm1", **realms}]}
    if realms is None:
        return {**data, "realms": [{"name": "realm1"}]}
    return data


def run_python(example) -> None:
    """In a process of its own (an example may run a reactor), in the sandbox, within a minute."""
    source = example.parsed
    if _file_name(source) and ("tutorials" in Path(example.path).parts or Path(example.path).name == "README.md"):
        return  # saved and run by the tutorial (test_tutorials.py) or, README's, by tests/packaging
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


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """The files the examples name, made as the pages say to make them."""
    home = tmp_path_factory.mktemp("examples")
    cli = [sys.executable, "-m", "relayrouter.cli"]
    for args in (["pki", "ca", "--out", "pki/ca"],
                 ["pki", "server", "--ca", "pki/ca", "--name", "localhost", "--san", "DNS:localhost", "--out",
                  "pki/server"],
                 ["pki", "client", "--ca", "pki/ca", "--cn", "device-7", "--out", "pki/device-7"],
                 ["keys", "new", "--org", "acme", "--out", "keys"],
                 ["keys", "new", "--org", "supplier", "--out", "keys"],
                 ["keys", "new", "--org", "globex", "--out", "keys"]):
        result = subprocess.run(cli + args, cwd=home, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    _jwt_public_key(home / "keys" / "local-1.pem")
    etc = home / "etc" / "relayrouter"
    etc.mkdir(parents=True)
    # decrypt-search's validators and hooks as docs/reference/decrypt-search.md describes them
    (home / "mypackage").mkdir()
    (home / "mypackage" / "__init__.py").write_text("")
    (home / "mypackage" / "checks.py").write_text(
        "def credit_limit(record):\n    return None if record['document'].get('amount', 0) < 10000 else 'over the limit'\n")
    (home / "mypackage" / "hooks.py").write_text("def on_record(record, context):\n    context.log.info('stored')\n")
    (home / "jwt.secret").write_text(secrets.token_urlsafe(48))
    (home / "jwt.secret").chmod(0o600)
    (home / "schemas").mkdir()
    (home / "schemas" / "order.json").write_text('{"type": "object"}')
    (home / "lib").mkdir()
    (home / "run" / "secrets").mkdir(parents=True)
    (home / "run" / "secrets" / "alice").write_text(secrets.token_urlsafe(32))
    for name, source in {"etc/relayrouter/nats-ca.pem": "pki/ca/ca.crt",
                         "etc/relayrouter/node.pem": "pki/server/server.crt",
                         "etc/relayrouter/node.key": "pki/server/server.key",
                         # Micronets' own file names (docs/reference/pairs.md)
                         "lib/micronets-ws-proxy.cert.pem": "pki/server/server.crt",
                         "lib/micronets-ws-proxy.key.pem": "pki/server/server.key",
                         "lib/micronets-ws-root.cert.pem": "pki/ca/ca.crt"}.items():
        (home / name).write_bytes((home / source).read_bytes())
        (home / name).chmod(0o600)
    return home


def _jwt_public_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


@pytest.mark.parametrize("example", _examples())
def test_example(example, sandbox, monkeypatch):
    monkeypatch.chdir(sandbox)
    for name in [n for n in os.environ if n.endswith(("_SECRET", "_TICKET", "_TOKEN"))]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(os, "environ", os.environ.copy())  # what an example sets stays in it
    example.namespace["sandbox"] = sandbox
    example.evaluate()


def test_every_page_is_read():
    assert len(PAGES) > 20 and _examples()
