"""What may wait for a peer that is not reading, and the policy then: plain
data, read by the configuration and applied by transport/connection.py."""

from dataclasses import dataclass

DROP_OLDEST = "drop-oldest"
DROP_NEWEST = "drop-newest"
DISCONNECT = "disconnect"
SLOW_CONSUMER_POLICIES = (DROP_OLDEST, DROP_NEWEST, DISCONNECT)


@dataclass(frozen=True, slots=True)
class OutboundLimits:
    """How much may wait for a peer that is not reading, and what happens then."""

    max_messages: int = 10_000
    max_bytes: int = 4 * 1024 * 1024
    policy: str = DROP_OLDEST
