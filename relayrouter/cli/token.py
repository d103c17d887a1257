"""``relayrouter token``: mint a JWT.

The signing secret comes from an environment variable or a file, never from
an argument value (which would land in shell history and ``ps``); a private
key comes from a file.  Options fall back to ``RELAYROUTER_TOKEN_*``
environment variables, the secret to ``RELAYROUTER_JWT_SECRET``.
"""

import argparse
import json
import os
import secrets
import time
from pathlib import Path

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from . import CliError

DEFAULT_SECRET_ENV = "RELAYROUTER_JWT_SECRET"
# RFC 7518 3.2: an HMAC key at least as long as the hash output
MIN_SECRET = {"HS256": 32, "HS384": 48, "HS512": 64}
# claims that have their own option
OWN_OPTION = {"sub": "--sub", "aud": "--aud", "iss": "--iss", "exp": "--lifetime", "iat": "--lifetime",
              "jti": "--jti", "scopes": "--scope", "topic": "--topic", "bid": "--bid"}


def _env(name: str, default=None):
    return os.environ.get(f"RELAYROUTER_TOKEN_{name}", default)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sub", default=_env("SUB"), help="subject: the session's authid")
    parser.add_argument("--aud", default=_env("AUD"), help="audience")
    parser.add_argument("--iss", default=_env("ISS"), help="issuer")
    parser.add_argument("--lifetime", type=int, default=_env("LIFETIME", "3600"), help="seconds (default 3600)")
    parser.add_argument("--scope", action="append", default=[], help="a scope, e.g. read (repeatable)")
    parser.add_argument("--topic", default=_env("TOPIC"), help="the topic the token is for")
    parser.add_argument("--bid", default=_env("BID"), help="booking id")
    parser.add_argument("--jti", default=None, help="token id (default: random)")
    parser.add_argument("--kid", default=_env("KID"), help="key id for the header")
    parser.add_argument("--claim", action="append", default=[], metavar="KEY=VALUE",
                        help="another claim; VALUE is JSON if it parses, else a string (repeatable)")
    parser.add_argument("--alg", default=_env("ALG"), help="HS256 (default with a secret), RS256, ES256, EdDSA, ...")
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--secret-env", metavar="VAR", help=f"HMAC secret from this env var (default {DEFAULT_SECRET_ENV})")
    key.add_argument("--secret-file", metavar="PATH", help="HMAC secret from this file")
    key.add_argument("--key-file", metavar="PATH", help="PEM private key (RSA, EC, Ed25519)")


def run(args: argparse.Namespace) -> int:
    key, alg = signing_key(args)
    headers = {"kid": args.kid} if args.kid else None
    print(pyjwt.encode(claims(args, time.time()), key, algorithm=alg, headers=headers))
    return 0


def claims(args: argparse.Namespace, now: float) -> dict:
    if args.lifetime <= 0:
        raise CliError(f"--lifetime must be a positive number of seconds, not {args.lifetime}")
    result = _extra_claims(args.claim)
    optional = {"sub": args.sub, "aud": args.aud, "iss": args.iss, "topic": args.topic, "bid": args.bid}
    result.update({k: v for k, v in optional.items() if v})
    if args.scope:
        result["scopes"] = list(args.scope)
    result.update(iat=int(now), exp=int(now) + args.lifetime, jti=args.jti or secrets.token_urlsafe(16))
    return result


def _extra_claims(pairs: list[str]) -> dict:
    result = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise CliError(f"--claim '{pair}' is not KEY=VALUE")
        if name in OWN_OPTION:
            raise CliError(f"--claim '{name}' has its own option: use {OWN_OPTION[name]}")
        try:
            result[name] = json.loads(text)
        except ValueError:
            result[name] = text
    return result


def signing_key(args: argparse.Namespace):
    """(key, algorithm) from --key-file, or the secret from --secret-file / --secret-env."""
    if args.key_file:
        key = _private_key(args.key_file)
        alg = args.alg or _default_alg(key)
        if alg.startswith("HS"):
            raise CliError(f"--alg {alg} needs a secret (--secret-env / --secret-file), not --key-file")
        return key, alg
    alg = args.alg or "HS256"
    if alg not in MIN_SECRET:
        raise CliError(f"--alg {alg} needs a private key (--key-file)")
    return _secret(args, MIN_SECRET[alg]), alg


def _secret(args: argparse.Namespace, min_length: int) -> bytes:
    if args.secret_file:
        secret = _read(args.secret_file).rstrip(b"\r\n")
        where = f"file '{args.secret_file}'"
    else:
        var = args.secret_env or DEFAULT_SECRET_ENV
        if var not in os.environ:
            raise CliError(f"environment variable {var} is not set; give the secret there, or use --secret-file "
                           "or --key-file")
        secret, where = os.environ[var].encode("utf8"), f"environment variable {var}"
    if len(secret) < min_length:
        raise CliError(f"the secret in {where} is {len(secret)} bytes; {args.alg or 'HS256'} needs "
                       f"at least {min_length}")
    return secret


def _private_key(path: str):
    try:
        return serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as e:
        raise CliError(f"'{path}' is not an unencrypted PEM private key: {e}") from None


def _default_alg(key) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: "ES256", 384: "ES384", 521: "ES512"}.get(key.curve.key_size, "ES256")
    raise CliError(f"cannot sign JWTs with a {type(key).__name__}")


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CliError(f"cannot read '{path}': {e.strerror}") from None
