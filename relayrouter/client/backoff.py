"""Jittered exponential backoff, as a value you ask for the next delay.

The n-th consecutive failure waits ``min(maximum, initial * factor**n)``
scaled by a random factor in ``[1 - jitter, 1]``, so a crowd of connectors
that lost the same router does not come back in lockstep.  ``reset()`` after
a success starts over.  No clock, no reactor: the caller schedules.
"""

import random
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 60.0
    factor: float = 2.0
    jitter: float = 0.5
    rng: Callable[[], float] = field(default=random.random, repr=False)
    failures: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(f"backoff: need 0 < initial ({self.initial}) <= maximum ({self.maximum})")
        if self.factor < 1:
            raise ValueError(f"backoff: factor must be at least 1, not {self.factor}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff: jitter must be in [0, 1), not {self.jitter}")

    def next(self) -> float:
        """The delay before the next attempt, counting one more failure."""
        ceiling = min(self.maximum, self.initial * self.factor ** min(self.failures, 64))
        self.failures += 1
        return ceiling * (1 - self.jitter * self.rng())

    def reset(self) -> None:
        self.failures = 0
