"""``relayrouter keys`` run as a real subprocess."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from relayrouter import e2e

ROOT = Path(__file__).resolve().parents[2]


def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "relayrouter.cli", "keys", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


def test_new_writes_a_private_file_0600_and_prints_only_public_parts(tmp_path):
    result = cli("new", "--org", "acme", "--out", tmp_path / "k")
    assert result.returncode == 0, result.stderr
    key_file, pub_file = tmp_path / "k" / "acme.key", tmp_path / "k" / "acme.pub"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = e2e.load_private(key_file)
    public = e2e.load_public(pub_file)
    assert public == keys.public and public.org == "acme"
    secret = json.loads(key_file.read_text())
    for value in (secret["x25519_private"], secret["ed25519_seed"]):
        assert value not in result.stdout and value not in pub_file.read_text()
    assert f'encryption_key = "{public.as_dict()["encryption_key"]}"' in result.stdout
    assert public.signing_kid in result.stdout and public.encryption_kid in result.stdout
    # the keys work: seal for acme, open with the file's keys
    envelope = e2e.seal({"hello": 1}, "t", keys, [public])
    assert e2e.open_envelope(envelope, keys, {public.signing_kid: public}).document == {"hello": 1}


def test_show_prints_the_same_public_parts_from_key_or_pub(tmp_path):
    assert cli("new", "--org", "globex", "--out", tmp_path).returncode == 0
    from_key = cli("show", "--json", tmp_path / "globex.key")
    from_pub = cli("show", "--json", tmp_path / "globex.pub")
    assert from_key.returncode == from_pub.returncode == 0, from_key.stderr + from_pub.stderr
    assert json.loads(from_key.stdout) == json.loads(from_pub.stdout) == e2e.load_public(
        tmp_path / "globex.pub").as_dict()


def test_existing_key_file_is_never_overwritten(tmp_path):
    assert cli("new", "--org", "acme", "--out", tmp_path).returncode == 0
    before = (tmp_path / "acme.key").read_bytes()
    again = cli("new", "--org", "acme", "--out", tmp_path)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    assert (tmp_path / "acme.key").read_bytes() == before


def test_loose_permissions_are_refused_with_the_fix(tmp_path):
    assert cli("new", "--org", "acme", "--out", tmp_path).returncode == 0
    key_file = tmp_path / "acme.key"
    for mode in (0o640, 0o604, 0o660):
        key_file.chmod(mode)
        result = cli("show", key_file)
        assert result.returncode == 2
        assert f"loose permissions {mode:04o}" in result.stderr and "chmod 600" in result.stderr
        assert json.loads(key_file.read_text())["ed25519_seed"] not in result.stderr


def test_bad_input_is_named(tmp_path):
    assert "--org" in cli("new", "--org", "../evil", "--out", tmp_path).stderr
    (tmp_path / "junk.key").write_text("hello")
    (tmp_path / "junk.key").chmod(0o600)
    result = cli("show", tmp_path / "junk.key")
    assert result.returncode == 2 and "not a relayrouter key file" in result.stderr
    assert "No such file" in cli("show", tmp_path / "missing.key").stderr
