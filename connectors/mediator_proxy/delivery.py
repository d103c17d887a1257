"""Delivery decisions for the mediator-proxy, free of I/O.

Theory of operation
-------------------
The router hands us the mailbox in order (progressive results of
``relayrouter.mailbox.take``), at most ``max_inflight`` unacknowledged at a
time, and hands the unacknowledged ones out again, with ``attempt + 1``, when
our session ends or their visibility timeout passes.  We deliver strictly one
at a time, head first, so the agent sees the mailbox's order:

    head = queue.head()  ->  POST  ->  verdict(status)
        "delivered"  -> ack (wait for the router's RESULT) -> pop -> next
        "retry"      -> same head again after backoff (agent down, 5xx, 408, 429)
        "refused"    -> counted; after max_attempts refusals -> dead letter
                        (kept on disk), then ack -> pop -> next

:class:`InboundQueue` keeps the order and drops what we already hold or
finished (a visibility-timeout redelivery of the head, say); :func:`verdict`
turns an HTTP status into one of the three; :func:`to_http` turns a stored
message back into the body and Content-Type it was put with.
"""

import bisect
import json
from dataclasses import dataclass

DELIVERED, RETRY, REFUSED = "delivered", "retry", "refused"
RETRYABLE_4XX = frozenset({408, 425, 429})
MESSAGE_ID_HEADER = "X-Message-Id"
ATTEMPT_HEADER = "X-Delivery-Attempt"
MAILBOX_HEADER = "X-Mailbox"
DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    attempt: int
    timestamp: float
    body: bytes
    content_type: str

    @classmethod
    def from_take(cls, item: dict) -> "Message":
        """One progressive result of ``relayrouter.mailbox.take``."""
        if not isinstance(item, dict) or not isinstance(item.get("id"), int):
            raise ValueError(f"not a mailbox message: {item!r:.200}")
        body, content_type = to_http(item.get("args") or [], item.get("kwargs") or {})
        return cls(item["id"], int(item.get("attempt", 1)), float(item.get("timestamp", 0.0)), body, content_type)


def to_http(args: list, kwargs: dict) -> tuple[bytes, str]:
    """The body and Content-Type a stored message is delivered with.

    ``POST /mailbox/{name}`` stores ``args=[body bytes]`` and
    ``kwargs={"content_type": ...}``: given back unchanged.  A WAMP put of one
    bytes argument is the same; anything else a WAMP client put is delivered as
    JSON ``{"args": [...], "kwargs": {...}}`` (bytes as WAMP's JSON does).
    """
    content_type = kwargs.get("content_type") if isinstance(kwargs.get("content_type"), str) else None
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)) and set(kwargs) <= {"content_type"}:
        return bytes(args[0]), content_type or DEFAULT_CONTENT_TYPE
    if len(args) == 1 and isinstance(args[0], str) and set(kwargs) <= {"content_type"}:
        return args[0].encode("utf-8"), content_type or "text/plain; charset=utf-8"
    payload = {"args": args, "kwargs": kwargs}
    return json.dumps(payload, default=_json_bytes, sort_keys=True).encode(), "application/json"


def _json_bytes(value):
    if isinstance(value, (bytes, bytearray)):
        import base64

        return "\x00" + base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot deliver a {type(value).__name__} as JSON")


def verdict(status: int | None) -> str:
    """``None`` is no answer at all (connection refused, reset, timeout)."""
    if status is None or status >= 500 or status in RETRYABLE_4XX:
        return RETRY
    if 200 <= status < 300:
        return DELIVERED
    return REFUSED


def retry_after(value: str | None, maximum: float) -> float | None:
    """Seconds from a ``Retry-After: <seconds>`` header, capped; None if absent or a date."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, min(seconds, maximum))


class InboundQueue:
    """Messages taken and not yet finished, lowest id (mailbox order) first, each once."""

    def __init__(self) -> None:
        self._ids: list[int] = []  # sorted
        self._by_id: dict[int, Message] = {}
        self.finished_upto = 0  # highest id delivered or dead-lettered in this session

    def offer(self, message: Message) -> bool:
        """Queue it unless we hold it or finished it already; True if queued."""
        if message.id <= self.finished_upto or message.id in self._by_id:
            return False
        self._by_id[message.id] = message
        bisect.insort(self._ids, message.id)
        return True

    def head(self) -> Message | None:
        return self._by_id[self._ids[0]] if self._ids else None

    def finish(self, message_id: int) -> None:
        if self._by_id.pop(message_id, None) is not None:
            self._ids.remove(message_id)
        self.finished_upto = max(self.finished_upto, message_id)

    def clear(self) -> None:
        """The session ended: the router will hand everything out again."""
        self._ids.clear()
        self._by_id.clear()
        self.finished_upto = 0

    def __len__(self) -> int:
        return len(self._ids)


# Outbound: how a failed put into another mailbox is treated.
TRANSIENT_PUT_ERRORS = frozenset({
    "relayrouter.error.mailbox_full",
    "relayrouter.error.mailbox_sender_quota",
    "relayrouter.error.store_failed",
    "relayrouter.error.limit_exceeded",
    "wamp.error.canceled",
    "wamp.error.timeout",
})


def put_verdict(error_uri: str | None) -> str:
    """``None`` (no answer: the session went away) and transient errors are retried."""
    if error_uri is None or error_uri in TRANSIENT_PUT_ERRORS:
        return RETRY
    return REFUSED
