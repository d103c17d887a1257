"""The ``relayrouter`` command: a dispatch table of subcommands.

Each subcommand module offers ``add_arguments(parser)`` and ``run(args) ->
int``; adding one (``host``, ``file``, ``tunnel``) is a line in ``COMMANDS``.
A :class:`CliError` is a mistake of the user's: printed, exit status 2.
Abbreviated options are off: ``--secret`` must never quietly mean
``--secret-file``.
"""

import argparse
import sys
from importlib import import_module

from .. import __version__

# name -> (module under relayrouter.cli, one-line help)
COMMANDS = {
    "token": ("token", "mint a JWT for a client"),
    "pki": ("pki", "create a development CA, server and client certificates"),
    "host": ("host", "stream a command, TCP port, WebSocket, device or video to a relay topic"),
    "file": ("file", "log a relay stream with timestamps; play .play scripts to it"),
    "tunnel": ("tunnel", "TCP over the router: ssh to a machine behind NAT"),
    "keys": ("keys", "an organisation's end-to-end key pairs (X25519 + Ed25519)"),
}


class CliError(Exception):
    """The user asked for something we cannot do; the message says what."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relayrouter", description="relayrouter tools",
                                     allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"relayrouter {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = import_module(f"{__name__}.{module_name}")
        sub = commands.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except CliError as e:
        print(f"relayrouter {args.command}: error: {e}", file=sys.stderr)
        return 2
