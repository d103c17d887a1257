"""The directory the documentation's configuration examples are checked in: the files they
name, made as the pages say to make them (tests/docs/test_examples.py, and the configuration
reference's build, docs/_ext/config_keys.py)."""

import os
import secrets
import subprocess
import sys
import tomllib
from pathlib import Path

from relayrouter import config as router_config

from .tutorial import FILE_COMMENT


def make_sandbox(home: Path) -> Path:
    """The files the examples name, made in ``home`` as the pages say to make them."""
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


def file_name(source: str) -> str | None:
    match = FILE_COMMENT.match(source.split("\n", 1)[0])
    return match["name"] if match else None


def is_decrypt_search(name: str | None) -> bool:
    """``decrypt-search.toml``, one of several organisations' (``acme-decrypt-search.toml``), or their listing."""
    return bool(name) and (name.endswith("decrypt-search.toml") or name == "decrypt-search-organisations.toml")


def _env_names(value) -> set[str]:
    """Every environment variable a ``*_env`` key of the TOML names."""
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k.endswith("_env") and isinstance(v, str)}
        return found.union(*(_env_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_env_names(v) for v in value))
    return set()


def save(source: str, sandbox: Path) -> tuple[str, Path]:
    """A TOML example written in ``sandbox`` under the name its first line gives (router.toml
    if none), its absolute paths made the sandbox's own: (the text written, its path)."""
    for directory in ("/etc/relayrouter/", "/run/secrets/"):
        source = source.replace(directory, f"{sandbox}{directory}")
    path = sandbox / (file_name(source) or "router.toml")
    path.write_text(source)
    return source, path


def check_config(source: str, sandbox: Path) -> None:
    """A TOML example through the checker of what it configures, in ``sandbox`` (ConfigError if invalid)."""
    source, path = save(source, sandbox)
    data = tomllib.loads(source)
    name = path.name
    for variable in _env_names(data):
        os.environ.setdefault(variable, secrets.token_urlsafe(48))
    if name == "decrypt-search-organisations.toml":  # a listing of organisations' files, checked before
        from connectors.decrypt_search import organisations

        organisations.load(str(path))
        return
    if is_decrypt_search(name):
        from connectors.decrypt_search import config as ds_config

        sys.path.insert(0, str(sandbox))  # the validators' and hooks' package (mypackage)
        try:
            ds_config.load(str(path))
        finally:
            sys.path.remove(str(sandbox))
        return
    router_config.parse(as_whole_file(data)).with_defaults()


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
