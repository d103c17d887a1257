"""What the transport holds its connections to, as plain data: read by the
configuration (``[limits]``, ``[realms.outbound]``) and applied by
``transport/``, which imports these records (never the reverse: the
configuration knows nothing of Twisted's side).

* :class:`ListenerSettings`: what a WebSocket or RawSocket listener applies
  to its connections, one frozen record (config.Limits is one), handed by
  the service to each listener factory and read there by its connections.
* :class:`OutboundLimits`: what may wait for a peer that is not reading, and
  the policy then (applied by transport/connection.py).
"""

from dataclasses import dataclass

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
# Nesting of a decoded message, the WAMP array being level 1 (transport/inbound.py).
DEFAULT_MAX_DEPTH = 100

DROP_OLDEST = "drop-oldest"
DROP_NEWEST = "drop-newest"
DISCONNECT = "disconnect"
SLOW_CONSUMER_POLICIES = (DROP_OLDEST, DROP_NEWEST, DISCONNECT)


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_depth: int = DEFAULT_MAX_DEPTH  # nesting of a decoded message (inbound.py)
    hello_timeout: float = 10.0  # from connecting to an established session
    # Liveness: a ping every heartbeat_interval seconds (0: off); no answer (or
    # nothing read by the peer) within heartbeat_timeout more and the connection is closed.
    heartbeat_interval: float = 20.0
    heartbeat_timeout: float = 20.0
    rawsocket_ping: bool = False  # ping every RawSocket peer, not only those that ping us

    @property
    def stall_timeout(self) -> float | None:
        """A peer that has read nothing for a ping interval and timeout is as dead
        as one that does not answer pings (its pings wait behind the queue)."""
        if not self.heartbeat_interval:
            return None
        return self.heartbeat_interval + self.heartbeat_timeout


@dataclass(frozen=True, slots=True)
class OutboundLimits:
    """How much may wait for a peer that is not reading, and what happens then."""

    max_messages: int = 10_000
    max_bytes: int = 4 * 1024 * 1024
    policy: str = DROP_OLDEST
