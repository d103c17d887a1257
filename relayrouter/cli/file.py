"""``relayrouter file``: log what arrives on a relay stream, and play scripts to it.

Connects the way the seed's browser pages do (``POST`` the token to the
access URL, open the WebSocket it answers with) and reconnects forever with
backoff.  Text mode writes one line per frame, ``<RFC 3339 time> <text>``
(a binary frame as ``<time> [binary N bytes] <base64>``); binary mode writes
frames as they came, without timestamps.  SIGHUP reopens the log file (for
logrotate).  ``--play`` runs a ``.play`` script (relay/play.py) once
connected and then exits (``--stay`` keeps logging).
"""

import argparse
import base64
import datetime
import sys

from ..relay import play as playfile
from . import CliError
from ._relay import add_token_arguments, env, run_reactor, start_logging, token_source

ENV = "RELAYROUTER_FILE"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", default=env(ENV, "SESSION"), metavar="URL",
                        help=f"access URL, e.g. https://relay.example.org/session/pend00 [env {ENV}_SESSION]")
    add_token_arguments(parser, ENV)
    parser.add_argument("--log", default=env(ENV, "LOG", "-"), metavar="PATH",
                        help=f"where received frames go; - for stdout (default) [env {ENV}_LOG]")
    parser.add_argument("--mode", choices=("text", "binary"), default=env(ENV, "MODE", "text"),
                        help="text: timestamped lines (default); binary: frames as received")
    parser.add_argument("--play", metavar="FILE", help="a .play script to send once connected")
    parser.add_argument("--stay", action="store_true", help="keep logging after the script ends")
    parser.add_argument("--check", action="store_true", help="only parse --play and report; do not connect")
    parser.add_argument("--verbose", action="store_true", help="debug logging on stderr")


def run(args: argparse.Namespace) -> int:
    steps = _script(args.play) if args.play else None
    if args.check:
        if steps is None:
            raise CliError("--check needs --play FILE")
        print(f"{args.play}: {len(steps)} steps")
        return 0
    if not args.session:
        raise CliError(f"--session URL is required (or {ENV}_SESSION)")
    token = token_source(args)
    start_logging(args.verbose)
    log = FrameLog(args.log, binary=args.mode == "binary")
    return run_reactor(lambda done: FileClient(args.session, token, log, steps, args.stay, done).start(),
                       sighup=log.reopen)


def _script(path: str) -> list:
    try:
        with open(path, encoding="utf8") as f:
            return playfile.parse(f.read())
    except OSError as e:
        raise CliError(f"--play {path}: {e.strerror}") from None
    except playfile.PlayError as e:
        raise CliError(f"--play {path}: {e}") from None


class FrameLog:
    """Received frames to a file (reopened on SIGHUP) or stdout."""

    def __init__(self, path: str, binary: bool) -> None:
        self.path = path
        self.binary = binary
        self.filter = playfile.LogFilter()
        self._file = None
        self.reopen()

    def reopen(self) -> None:
        if self.path == "-":
            self._file = sys.stdout.buffer
            return
        if self._file is not None:
            self._file.close()
        self._file = open(self.path, "ab")

    def frame(self, payload: bytes, is_binary: bool) -> None:
        if self.binary:
            self._file.write(payload)
        else:
            text = (f"[binary {len(payload)} bytes] {base64.b64encode(payload).decode('ascii')}"
                    if is_binary else payload.decode("utf8", "replace"))
            if not self.filter.passes(text):
                return
            self._line(text)
        self._file.flush()

    def echo(self, text: str) -> None:
        if not self.binary:
            self._line(text)
            self._file.flush()

    def _line(self, text: str) -> None:
        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        self._file.write(f"{stamp.replace('+00:00', 'Z')} {text}\n".encode("utf8"))


class FileClient:
    def __init__(self, session_url, token, log: FrameLog, steps, stay: bool, done) -> None:
        from twisted.internet import reactor

        from ..relay.client import Reconnecting

        self.reactor = reactor
        self.log = log
        self.steps = steps
        self.stay = stay
        self.done = done
        self.waits: list = []  # [Wait, seen, Deferred]
        self.connection = Reconnecting(reactor, session_url, token, self._frame, on_open=self._opened)
        self._played = False

    def start(self) -> None:
        self.connection.start()

    def _frame(self, payload: bytes, is_binary: bool) -> None:
        self.log.frame(payload, is_binary)
        if is_binary or not self.waits:
            return
        text = payload.decode("utf8", "replace")
        for waiting in list(self.waits):
            step, seen, d = waiting
            if step.pattern.search(text):
                waiting[1] = seen + 1
                if waiting[1] >= step.count and not d.called:
                    d.callback(True)

    def _opened(self) -> None:
        if self.steps is not None and not self._played:
            self._played = True
            from twisted.internet import defer

            defer.ensureDeferred(self._play()).addErrback(self._failed)

    async def _play(self) -> None:
        from twisted.internet import task

        for step in self.steps:
            if isinstance(step, playfile.Send):
                if step.delay:
                    await task.deferLater(self.reactor, step.delay, lambda: None)
                if step.text is not None:
                    self.connection.send(step.text.encode("utf8"), False)
            elif isinstance(step, playfile.Wait):
                await self._wait(step)
                if step.text is not None:
                    self.connection.send(step.text.encode("utf8"), False)
            elif isinstance(step, playfile.Echo):
                self.log.echo(step.text)
            elif isinstance(step, playfile.SetFilter):
                self.log.filter.apply(step)
        if not self.stay:
            # Let the last frames leave before closing.
            await task.deferLater(self.reactor, 0.05, lambda: None)
            self.connection.stop()
            self.reactor.callLater(0.2, self.done.stop, 0)

    def _wait(self, step):
        from twisted.internet import defer

        d = defer.Deferred()
        entry = [step, 0, d]
        self.waits.append(entry)
        timer = self.reactor.callLater(step.timeout, lambda: d.called or d.callback(False))
        d.addBoth(lambda met: (self.waits.remove(entry), timer.active() and timer.cancel(), met)[2])
        return d

    def _failed(self, failure) -> None:
        print(f"relayrouter file: {failure.getErrorMessage()}", file=sys.stderr)
        self.done.stop(1)
