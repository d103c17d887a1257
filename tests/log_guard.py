"""A guard that fails any test during which this process logged an error.

Everything Twisted, Autobahn (through txaio) and the router log goes through
``twisted.logger.globalLogPublisher``.  The guard watches it for the length of
each test (fixture setup and teardown included) and keeps every event at level
error or critical, and every event carrying a failure (a traceback): an
internal error in the router, an HTTP resource that raised, an exception in a
client's handler, a listener that could not start.

A Deferred whose failure nobody handled is logged only when it is garbage
collected, so the guard collects garbage before it looks.  What is still alive
then is frozen (``gc.freeze``): the next test's collection looks only at what
that test made, instead of at everything every earlier test left alive (pytest's
reports of each test, module fixtures), which made each collection slower than
the last (2.7 ms at the start of tests/core, 35 ms two thousand tests later).
Once a module is done and its module-scoped fixtures are gone,
``finish_module`` unfreezes and collects everything, so what died meanwhile
(a fixture's failed Deferred) is still found, and fails the module's last test.

A test that means to provoke such a log says so, with a pattern the logged
text must match::

    def test_x(logged_errors):
        logged_errors.expect(r"Internal error handling a message")

Each declared pattern must then match at least one logged event (an expected
error that stops happening is a change worth knowing about), and every logged
event must match one of them.
"""

import gc
import re

from twisted.logger import LogLevel, formatEvent, globalLogPublisher

_SERIOUS = {LogLevel.error, LogLevel.critical}


class LoggedErrors:
    """A log observer keeping the serious events, and what the test expects."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.expected: list[re.Pattern] = []

    def __call__(self, event: dict) -> None:
        if event.get("log_level") in _SERIOUS or event.get("log_failure") is not None:
            self.events.append(event)

    def expect(self, pattern: str) -> None:
        """Declare that the test provokes a logged error matching ``pattern`` (re.search)."""
        self.expected.append(re.compile(pattern, re.S))

    def texts(self) -> list[str]:
        return [describe(event) for event in self.events]

    def problems(self) -> list[str]:
        texts = self.texts()
        unexpected = [t for t in texts if not any(p.search(t) for p in self.expected)]
        missing = [p.pattern for p in self.expected if not any(p.search(t) for t in texts)]
        found = [f"logged and not expected:\n{t}" for t in unexpected]
        return found + [f"expected a logged error matching {p!r}, none was logged" for p in missing]


def describe(event: dict) -> str:
    """The event's text, its namespace and the failure's traceback if it has one."""
    try:
        text = formatEvent(event)
    except Exception as error:  # a broken format string is itself worth showing
        text = f"{event.get('log_format')!r} (unformattable: {error})"
    where = event.get("log_namespace", "?")
    level = getattr(event.get("log_level"), "name", "?")
    failure = event.get("log_failure")
    if failure is not None:
        text += "\n" + failure.getTraceback()
    return f"[{level} {where}] {text}"


def watch():
    """Start watching; returns the observer (call ``finish`` on it at teardown)."""
    observer = LoggedErrors()
    globalLogPublisher.addObserver(observer)
    return observer


def finish(observer: LoggedErrors) -> list[str]:
    """Collect garbage (unhandled Deferred failures log then), freeze what is left
    alive, stop watching, return what is wrong."""
    gc.collect()
    gc.freeze()
    globalLogPublisher.removeObserver(observer)
    return observer.problems()


def finish_module() -> list[str]:
    """Everything frozen since the start looked at again (see the module's docstring):
    what is wrong in the garbage found."""
    observer = watch()
    gc.unfreeze()
    return finish(observer)


def freeze_the_old() -> None:
    """Move everything alive now out of the collector's sight (gc.freeze), so
    that the collection after each test only looks at what tests made."""
    gc.collect()
    gc.freeze()
