"""``relayrouter token`` run as a real subprocess, its output checked with pyjwt."""

import os
import subprocess
import sys
from pathlib import Path

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from relayrouter.auth.jwt import JwtAuthenticator, JwtKey, JwtPolicy, StaticKeys
from relayrouter.core.auth import Accept

ROOT = Path(__file__).resolve().parents[2]
SECRET = "0123456789abcdef" * 4  # long enough for HS512


def cli(*args, env=None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYROUTER_")}
    full_env.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "relayrouter.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=60)


def mint(*args, env=None) -> str:
    result = cli("token", *args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_hs256_token_from_env_secret_carries_every_option():
    token = mint("--sub", "alice", "--aud", "relay", "--iss", "lab", "--lifetime", "600", "--scope", "read",
                 "--scope", "write", "--topic", "lab.cam1", "--bid", "B-42", "--claim", 'limits={"rate": 5}',
                 "--claim", "note=plain text", env={"RELAYROUTER_JWT_SECRET": SECRET})
    assert pyjwt.get_unverified_header(token)["alg"] == "HS256"
    claims = pyjwt.decode(token, SECRET, algorithms=["HS256"], audience="relay", issuer="lab")
    assert claims["sub"] == "alice" and claims["scopes"] == ["read", "write"]
    assert (claims["topic"], claims["bid"]) == ("lab.cam1", "B-42")
    assert claims["limits"] == {"rate": 5} and claims["note"] == "plain text"
    assert claims["exp"] - claims["iat"] == 600 and len(claims["jti"]) >= 16


def test_jti_is_random_unless_given():
    env = {"MY_SECRET": SECRET}
    first, second = (pyjwt.decode(mint("--sub", "a", "--secret-env", "MY_SECRET", env=env), SECRET,
                                  algorithms=["HS256"]) for _ in range(2))
    assert first["jti"] != second["jti"]
    fixed = pyjwt.decode(mint("--sub", "a", "--jti", "j-1", "--secret-env", "MY_SECRET", env=env), SECRET,
                         algorithms=["HS256"])
    assert fixed["jti"] == "j-1"


def test_options_from_env_vars_and_secret_file(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    token = mint("--secret-file", str(secret_file), "--alg", "HS512",
                 env={"RELAYROUTER_TOKEN_SUB": "bob", "RELAYROUTER_TOKEN_AUD": "relay"})
    claims = pyjwt.decode(token, SECRET, algorithms=["HS512"], audience="relay")
    assert claims["sub"] == "bob"


@pytest.mark.parametrize("private_key, alg", [
    (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
    (ed25519.Ed25519PrivateKey.generate(), "EdDSA"),
])
def test_private_key_file_signs_and_the_router_accepts(tmp_path, private_key, alg):
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    token = mint("--sub", "carol", "--kid", "k1", "--key-file", str(key_file))
    assert pyjwt.get_unverified_header(token) == {"alg": alg, "typ": "JWT", "kid": "k1"}
    public_pem = private_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    router_side = JwtAuthenticator(StaticKeys([JwtKey.from_pem(public_pem, kid="k1")]),
                                   JwtPolicy(algorithms=(alg,), authrole="user"))
    decision = router_side.check(token)
    assert isinstance(decision, Accept) and decision.authid == "carol"


def test_secret_is_never_accepted_as_an_argument_value():
    result = cli("token", "--sub", "a", "--secret", SECRET)
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_missing_secret_says_where_to_put_it():
    result = cli("token", "--sub", "a")
    assert result.returncode == 2 and "RELAYROUTER_JWT_SECRET is not set" in result.stderr


def test_short_secret_is_refused():
    result = cli("token", "--sub", "a", env={"RELAYROUTER_JWT_SECRET": "short"})
    assert result.returncode == 2 and "5 bytes" in result.stderr
    assert "short" not in result.stderr.replace("5 bytes", "")


def test_claim_with_its_own_option_is_refused():
    result = cli("token", "--claim", "exp=1", env={"RELAYROUTER_JWT_SECRET": SECRET})
    assert result.returncode == 2 and "--lifetime" in result.stderr


def test_asymmetric_alg_without_key_file_is_refused():
    result = cli("token", "--alg", "RS256", env={"RELAYROUTER_JWT_SECRET": SECRET})
    assert result.returncode == 2 and "--key-file" in result.stderr


def test_non_positive_lifetime_is_refused():
    result = cli("token", "--lifetime", "0", env={"RELAYROUTER_JWT_SECRET": SECRET})
    assert result.returncode == 2 and "--lifetime" in result.stderr


def test_help_lists_subcommands():
    result = cli("--help")
    assert result.returncode == 0 and "token" in result.stdout and "pki" in result.stdout
