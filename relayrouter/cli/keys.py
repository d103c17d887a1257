"""``relayrouter keys``: an organisation's end-to-end key pairs.

``new`` writes ``<org>.key`` (X25519 + Ed25519 private keys, created 0600)
and ``<org>.pub`` (the public parts) and prints the public parts as a TOML
snippet for the configuration of whoever sends to or receives from the
organisation.  An existing key file is never overwritten: losing a private
key loses every message encrypted for it.  ``show`` prints the public parts
of a ``.key`` (refused when group or others may read it) or ``.pub`` file.
"""

import argparse
import json
import re
from pathlib import Path

from ..e2e import keys as e2e_keys
from . import CliError

ORG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = actions.add_parser("new", allow_abbrev=False, help="create <org>.key (0600) and <org>.pub")
    new.add_argument("--org", required=True, help="the organisation's name, e.g. acme")
    new.add_argument("--out", required=True, metavar="DIR", help="directory for the two files")
    show = actions.add_parser("show", allow_abbrev=False, help="print the public parts of a .key or .pub file")
    show.add_argument("path", metavar="FILE")
    for sub in (new, show):
        sub.add_argument("--json", action="store_true", help="print JSON instead of TOML")


def run(args: argparse.Namespace) -> int:
    public = _new(args) if args.action == "new" else _show(Path(args.path))
    print(json.dumps(public.as_dict(), indent=2) if args.json else toml_snippet(public))
    return 0


def _new(args) -> e2e_keys.PublicKeys:
    if not ORG_NAME.match(args.org):
        raise CliError(f"--org '{args.org}': letters, digits, '.', '_', '-' (at most 64), starting with a "
                       "letter or digit")
    out = Path(args.out)
    key_path, pub_path = out / f"{args.org}.key", out / f"{args.org}.pub"
    existing = [str(p) for p in (key_path, pub_path) if p.exists()]
    if existing:
        raise CliError(f"{', '.join(existing)} exists already; key files are never overwritten "
                       "(move the old one away first if you really mean to replace it)")
    out.mkdir(parents=True, exist_ok=True)
    keys = e2e_keys.FileKeys.generate(args.org)
    try:
        e2e_keys.write_private(key_path, keys)
    except OSError as e:
        raise CliError(f"cannot write '{key_path}': {e.strerror}") from None
    pub_path.write_text(json.dumps(keys.public.as_dict(), indent=2) + "\n")
    return keys.public


def _show(path: Path) -> e2e_keys.PublicKeys:
    try:
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise CliError(f"cannot read '{path}': {e.strerror}") from None
    except ValueError:
        raise CliError(f"'{path}' is not a relayrouter key file (JSON expected)") from None
    try:
        if isinstance(data, dict) and "x25519_private" in data:
            return e2e_keys.load_private(path).public
        return e2e_keys.load_public(path)
    except e2e_keys.KeyFileError as e:
        raise CliError(str(e)) from None


def toml_snippet(public: e2e_keys.PublicKeys) -> str:
    return "\n".join([
        f"# {public.org}: public keys (safe to share)",
        "[[peers]]",
        f'org = "{public.org}"',
        f'encryption_key = "{e2e_keys.b64(public.encryption)}"  # X25519, key id {public.encryption_kid}',
        f'signing_key = "{e2e_keys.b64(public.signing)}"  # Ed25519, key id {public.signing_kid}',
        f"# signing key fingerprint, to pin in [[directory.pins]]: {public.signing_fingerprint}",
    ])
