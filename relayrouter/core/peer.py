"""What the core knows of a connected peer: a way to send, a way to hang up,
and a frozen record of what the transport saw when the peer connected."""

from dataclasses import dataclass, field
from typing import Any, Protocol


class Peer(Protocol):
    """The only handle the core has on a connection.

    ``send`` never blocks and never raises into the core: a transport that
    cannot deliver applies its own backpressure policy (see
    :mod:`relayrouter.transport`).  ``close`` drops the connection after what
    was already sent has been flushed.
    """

    def send(self, message: Any) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TransportInfo:
    """What the transport knew when the peer connected."""

    kind: str = "memory"  # "websocket", "rawsocket" or "memory" (tests)
    peer: str = ""  # e.g. "tcp4:127.0.0.1:53120"
    serializer: str = ""  # "json", "msgpack", "cbor"
    is_secure: bool = False
    peer_cert: dict | None = None
    channel_id: dict = field(default_factory=dict)  # {"tls-unique": bytes}
    # WebSocket only: the upgrade request's host, origin, user-agent and
    # x-forwarded-for / x-real-ip headers, and its query parameters.
    http_headers: dict = field(default_factory=dict)
    http_query: dict = field(default_factory=dict)
