"""What a WebSocket or RawSocket listener applies to its connections: one
frozen record, read from ``[limits]`` (config.Limits is one), handed by the
service to each listener factory and read there by its connections.
Plain data: no Twisted."""

from dataclasses import dataclass

from .inbound import DEFAULT_MAX_DEPTH

DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024


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
