"""WAMP identifiers in the three scopes the spec defines.

"IDs in the global scope MUST be drawn randomly from a uniform distribution
over the complete range [1, 2^53]"; router and session scope IDs may be
sequential, which is cheaper and still unique.
"""

import random

MAX_ID = 2**53

# Uniform, seeded from the OS; IDs are identifiers, not secrets, and a
# system call per publication would be a measurable cost.
_rng = random.Random()
_bits = _rng.getrandbits


def global_id() -> int:
    """A random ID for the global scope (session and publication IDs)."""
    value = _bits(53)
    while value == 0:
        value = _bits(53)
    return value


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
