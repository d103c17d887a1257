"""The seed's ``.play`` script format, parsed into steps (no I/O), and the log filter.

One step per line::

    {"some":"msg"}                 send the line as a text frame, now
    [10ms]                         wait 10 ms
    [0.1s] {"an":"other"}          wait, then send what follows ("]" then optional spaces)
    <'^foo\\s*',5,10ms> {"send":1}  wait until 5 frames received since this line matched
                                   the regex (or 10 ms passed), then send (the message is optional)
    #+ echo comment                written to the log
    # comment, #- comment          ignored
    |+> [a-h]   |accept> [a-h]     log only frames matching an accept pattern (any of them) ...
    |-> [0-9]   |deny> [#!&%]      ... and none of the deny patterns
    |reset>                        no filters again

Durations are Go's: a decimal number and a unit ``ns``, ``us`` (``µs``),
``ms``, ``s``, ``m``, ``h``.  Regexes are Python's ``re``, searched anywhere
in the frame's text.  A bad line is an error naming its number.
"""

import re
from dataclasses import dataclass, field

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ns|us|µs|ms|s|m|h)\s*$")
_DELAY = re.compile(r"^\[([^\]]*)\](.*)$", re.S)
_WAIT = re.compile(r"^<'(.*)'\s*,\s*([0-9]+)\s*,\s*([^>]+)>(.*)$", re.S)
_FILTER = re.compile(r"^\|(\+|-|accept|deny|reset)>(.*)$", re.S)


class PlayError(ValueError):
    """A script line that is not in the format; the message names the line."""


@dataclass(frozen=True, slots=True)
class Send:
    delay: float  # seconds to wait first
    text: str | None  # None: only wait


@dataclass(frozen=True, slots=True)
class Wait:
    pattern: re.Pattern
    count: int
    timeout: float
    text: str | None  # sent once the wait is over (met or timed out)


@dataclass(frozen=True, slots=True)
class Echo:
    text: str


@dataclass(frozen=True, slots=True)
class SetFilter:
    kind: str  # "accept", "deny" or "reset"
    pattern: re.Pattern | None = None


def duration(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not a duration like 10ms, 0.5s or 1m")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(script: str) -> list:
    steps = []
    for number, line in enumerate(script.splitlines(), 1):
        try:
            step = _line(line.rstrip("\r"))
        except (ValueError, re.error) as e:
            raise PlayError(f"line {number}: {e}") from None
        if step is not None:
            steps.append(step)
    return steps


def _line(line: str):
    if not line.strip():
        return None
    if line.startswith("#"):
        return Echo(line[2:].strip()) if line.startswith("#+") else None
    match = _DELAY.match(line)
    if match:
        return Send(duration(match.group(1)), match.group(2).lstrip() or None)
    match = _WAIT.match(line)
    if match:
        count = int(match.group(2))
        if count < 1:
            raise ValueError("a wait needs a count of at least 1")
        return Wait(re.compile(match.group(1)), count, duration(match.group(3)), match.group(4).lstrip() or None)
    if line.startswith("<"):
        raise ValueError("a wait is <'regex',count,timeout> followed by an optional message")
    match = _FILTER.match(line)
    if match:
        kind = {"+": "accept", "-": "deny"}.get(match.group(1), match.group(1))
        if kind == "reset":
            return SetFilter("reset")
        pattern = match.group(2).strip()
        if not pattern:
            raise ValueError(f"|{match.group(1)}> needs a regex")
        return SetFilter(kind, re.compile(pattern))
    return Send(0.0, line)


@dataclass
class LogFilter:
    """Which received frames are logged: any accept pattern (if there are any) and no deny pattern."""

    accept: list = field(default_factory=list)
    deny: list = field(default_factory=list)

    def apply(self, step: SetFilter) -> None:
        if step.kind == "reset":
            self.accept.clear()
            self.deny.clear()
        else:
            (self.accept if step.kind == "accept" else self.deny).append(step.pattern)

    def passes(self, text: str) -> bool:
        if self.accept and not any(p.search(text) for p in self.accept):
            return False
        return not any(p.search(text) for p in self.deny)
