"""A peer for benchmarks: counts what the router sends and keeps only the last message.

``relayrouter.testing.MemoryPeer`` stores every message, which is right for
tests and wrong for a loop of a million publications (the list grows, and
appending to it is part of what gets timed).  This peer does O(1) work per send.
"""

from relayrouter.core.peer import TransportInfo
from relayrouter.testing import ALL_ROLES


class CountingPeer:
    __slots__ = ("count", "last", "closed", "session", "_serializer")

    def __init__(self, serializer=None) -> None:
        self.count = 0
        self.last = None
        self.closed = False
        self.session = None
        self._serializer = serializer  # an object serializer: make the bytes, as a transport would

    def send(self, message) -> None:
        self.count += 1
        self.last = message
        if self._serializer is not None:
            message.serialize(self._serializer)

    def close(self) -> None:
        self.closed = True

    def receive(self, raw: list) -> None:
        self.session.receive(raw)


def join_counting(router, realm: str = "realm1", serializer=None) -> CountingPeer:
    """An established anonymous session on ``realm`` whose peer counts; its count starts at 0."""
    peer = CountingPeer(serializer)
    peer.session = router.session(peer, TransportInfo())
    peer.receive([1, realm, {"roles": ALL_ROLES}])
    if type(peer.last).__name__ != "Welcome":
        raise RuntimeError(f"joining {realm!r} failed: {peer.last!r}")
    peer.count = 0
    return peer
