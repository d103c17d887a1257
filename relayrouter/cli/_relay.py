"""What ``relayrouter host``, ``file`` and ``tunnel`` share: the token options
(never a token on the command line), logging to stderr, and running the reactor
until the tool says it is done."""

import os
import signal
import sys

from . import CliError

DEFAULT_TOKEN_ENV = "RELAYROUTER_TOKEN"


def add_token_arguments(parser, env_prefix: str) -> None:
    parser.add_argument("--token-env", metavar="VAR", default=None,
                        help=f"read the JWT from this environment variable (default {DEFAULT_TOKEN_ENV})")
    parser.add_argument("--token-file", metavar="PATH",
                        default=os.environ.get(f"{env_prefix}_TOKEN_FILE"),
                        help=f"read the JWT from this file, again at each reconnection [env {env_prefix}_TOKEN_FILE]")


def token_source(args):
    """A function returning the current token (a file is re-read on every call)."""
    if args.token_file:
        from relayrouter.client.credentials import check_private_file
        from relayrouter.client.errors import ConfigError

        path = args.token_file
        try:
            check_private_file(path, "--token-file")  # a token is a credential: 0600 or refused
        except ConfigError as e:
            raise CliError(str(e)) from None

        def from_file() -> str:
            with open(path, encoding="utf8") as f:
                return f.read().strip()
        from_file()
        return from_file
    name = args.token_env or DEFAULT_TOKEN_ENV
    token = os.environ.get(name, "").strip()
    if not token:
        raise CliError(f"no token: set {name} (or give --token-env VAR / --token-file PATH)")
    return lambda: token


def env(prefix: str, name: str, default=None):
    return os.environ.get(f"{prefix}_{name}", default)


def start_logging(verbose: bool) -> None:
    from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                                globalLogBeginner, textFileLogObserver)
    import txaio

    txaio.use_twisted()
    txaio.set_global_log_level("warn")
    predicate = LogLevelFilterPredicate(LogLevel.debug if verbose else LogLevel.info)
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])],
                                     redirectStandardIO=False)


class Exit:
    """The exit status a tool sets before stopping the reactor."""

    def __init__(self) -> None:
        self.status = 0

    def stop(self, status: int = 0) -> None:
        from twisted.internet import reactor

        self.status = status
        if reactor.running:
            reactor.stop()


def run_reactor(start, sighup=None) -> int:
    """Run ``start(exit)`` in the reactor until it (or SIGINT/SIGTERM) stops it."""
    from twisted.internet import reactor

    done = Exit()
    if sighup is not None:
        signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(sighup))
    reactor.callWhenRunning(start, done)
    reactor.run()
    return done.status
