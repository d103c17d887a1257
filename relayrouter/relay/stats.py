"""Traffic counters of raw relay connections and relay topics, and the reports made of them.

Counting is a few integer additions per frame.  Rates are computed at
report time over the window since the previous periodic report (the
``relayrouter.stats`` publication, every ``relay.stats_interval`` seconds),
or since the counter started when there was none yet.
"""

import datetime


class Direction:
    """Messages and bytes one way, the last time one passed, and a rate window."""

    __slots__ = ("messages", "bytes", "last", "_mark_messages", "_mark_bytes", "_mark_time")

    def __init__(self, now: float) -> None:
        self.messages = 0
        self.bytes = 0
        self.last: float | None = None
        self._mark_messages = 0
        self._mark_bytes = 0
        self._mark_time = now

    def count(self, size: int, now: float) -> None:
        self.messages += 1
        self.bytes += size
        self.last = now

    def mark(self, now: float) -> None:
        """Start a new rate window."""
        self._mark_messages, self._mark_bytes, self._mark_time = self.messages, self.bytes, now

    def report(self, now: float) -> dict:
        window = max(now - self._mark_time, 1e-9)
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "rate": round((self.messages - self._mark_messages) / window, 3),
            "byte_rate": round((self.bytes - self._mark_bytes) / window, 1),
            "last": iso(self.last) if self.last is not None else None,
            "last_age": round(now - self.last, 3) if self.last is not None else None,
        }

    def practable(self, now: float) -> dict:
        """The seed's status-client statistics: seconds since the last, mean size, frames per second."""
        window = max(now - self._mark_time, 1e-9)
        return {
            "last": round(now - self.last, 3) if self.last is not None else None,
            "size": round(self.bytes / self.messages, 1) if self.messages else 0.0,
            "fps": round((self.messages - self._mark_messages) / window, 3),
            "never": self.last is None,
        }


class TopicCounters:
    """What was published on one relay topic (from any writer, raw or WAMP)."""

    __slots__ = ("topic", "published")

    def __init__(self, topic: str, now: float) -> None:
        self.topic = topic
        self.published = Direction(now)


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    stamp = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_seconds(t: float | None) -> str:
    """RFC 3339 to the second, as the seed's reports have it."""
    if t is None:
        return "0001-01-01T00:00:00Z"
    stamp = datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
