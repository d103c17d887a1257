"""What the router counts for metrics, kept so cheaply the hot path cannot tell.

Theory of operation
-------------------
Everything here is a plain integer or a list of integers, incremented in
place where a message passes anyway; nothing is formatted, locked or pushed.
A scrape (relayrouter/service/metrics.py) reads these at its own pace.  Refusals,
drops and disconnects are not here: they are in ``realm.counters`` and each
connection's ``counters`` already.

* ``received[t]`` / ``sent[t]``: messages by WAMP type ``t`` (HELLO = 1 ...
  YIELD = 70), counted as the core accepts one from a session and as a
  transport writes or queues one for its peer.
* ``bytes_in`` / ``bytes_out``: serialized WAMP messages read from and
  written or queued for the peers of connections that have closed; each open
  connection has its own (``rx_bytes`` / ``tx_bytes``).  Bytes read are the
  protocol's tally as it frames messages (Autobahn keeps one for WebSocket
  anyway), so the core adds nothing per message for them; bytes sent are one
  integer per message on the connection.  :func:`traffic` adds them up.
* ``publications``: publications routed; with ``sent[EVENT]`` it gives the
  mean fan-out.
* ``call_latency``: seconds from a CALL to its final RESULT or ERROR from the
  callee, as the router sees it, in fixed buckets.
"""

from bisect import bisect_left

MESSAGE_TYPES = 71  # WAMP message type codes are below this
LATENCY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """Counts per bucket (the last one is everything above the bounds) and the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple = LATENCY_BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, count)]`` as Prometheus wants them, ending with ``+Inf``."""
        out, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            running += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class RouterStats:
    __slots__ = ("received", "sent", "bytes_in", "bytes_out", "publications", "call_latency")

    def __init__(self) -> None:
        self.received = [0] * MESSAGE_TYPES
        self.sent = [0] * MESSAGE_TYPES
        self.bytes_in = 0  # WAMP message payloads read, by connections now closed
        self.bytes_out = 0  # ... and serialized for their peers (sent or queued)
        self.publications = 0
        self.call_latency = Histogram()


def traffic(stats: RouterStats, peers) -> tuple[int, int]:
    """(bytes in, bytes out) since start: closed connections' and those of ``peers``
    (the open connections: anything with ``rx_bytes`` and ``tx_bytes``)."""
    bytes_in, bytes_out = stats.bytes_in, stats.bytes_out
    for peer in peers:
        bytes_in += getattr(peer, "rx_bytes", 0)
        bytes_out += getattr(peer, "tx_bytes", 0)
    return bytes_in, bytes_out

