"""WAMP identifiers in the three scopes the spec defines.

"IDs in the global scope MUST be drawn randomly from a uniform distribution
over the complete range [1, 2^53]"; router and session scope IDs may be
sequential, which is cheaper and still unique.
"""

import random

MAX_ID = 2**53

_rng = random.SystemRandom()


def global_id() -> int:
    """A random ID for the global scope (session and publication IDs)."""
    return _rng.randint(1, MAX_ID)


class SequentialIds:
    """Router- or session-scope IDs: 1, 2, 3, ... wrapping before 2^53."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        last = self._last + 1
        if last > MAX_ID:
            last = 1
        self._last = last
        return last
