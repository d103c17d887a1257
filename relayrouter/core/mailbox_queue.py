"""One mailbox: its messages in ID order, what each sender holds in it, the
bounds, and the take that delivers it (:class:`Taker`); and the store-wide
message IDs.  :mod:`.mailbox` says how they work and runs them for a realm."""

import heapq
from collections import deque
from typing import TYPE_CHECKING

from .mailbox_rules import DROP_OLDEST, MailboxRule
from .records import COUNTERS, MailboxMessage

if TYPE_CHECKING:
    from .mailbox import Mailboxes

_ID_BLOCK = 1000  # message IDs reserved in the store at a time


class Taker:
    """One running ``take`` call."""

    __slots__ = ("call", "mailbox", "max_inflight", "inflight", "timer")

    def __init__(self, call, mailbox: "Mailbox", max_inflight: int) -> None:
        self.call = call
        self.mailbox = mailbox
        self.max_inflight = max_inflight
        self.inflight: dict[int, float] = {}  # id -> visibility deadline, in delivery order
        self.timer = None


class Mailbox:
    def __init__(self, owner: "Mailboxes", uri: str, rule: MailboxRule, owner_value: str) -> None:
        self.owner = owner
        self.uri = uri
        self.rule = rule
        self.owner_value = owner_value
        self.messages: dict[int, MailboxMessage] = {}
        self.bytes = 0
        self.fresh: deque = deque()
        self.returned: list = []
        self.pending = 0  # puts given to the store, not committed yet
        self.pending_bytes = 0
        self.taker: Taker | None = None
        self.senders: dict[str | None, list[int]] = {}  # sender -> [messages, bytes]
        self.redeliveries = 0
        self.drops = 0
        self.expired = 0

    # ------------------------------------------------------------------- put

    def room_for(self, size: int, sender: str | None = None) -> str | None:
        """None when a message of ``size`` bytes fits (dropping the oldest if
        the policy says so), else the refusal."""
        rule = self.rule
        if size > rule.max_message_bytes:
            return f"{size} bytes is more than this mailbox's max_message_bytes ({rule.max_message_bytes})"
        if rule.overflow != DROP_OLDEST and self._over(size):
            return self._full()
        share = self.sender_refusal(size, sender)
        while share is not None:  # drop-oldest: the sender's own oldest make room for its newest
            own = next((i for i, message in self.messages.items() if message.sender == sender), None)
            if rule.overflow != DROP_OLDEST or own is None:
                return share
            self.drop(own, "drops")
            share = self.sender_refusal(size, sender)
        while self._over(size):
            if not self.messages:
                return self._full()
            self.drop(next(iter(self.messages)), "drops")
        return None

    def _full(self) -> str:
        rule = self.rule
        return (f"mailbox '{self.uri}' is full ({len(self.messages) + self.pending} messages, "
                f"{self.bytes + self.pending_bytes} bytes; max_messages {rule.max_messages}, "
                f"max_bytes {rule.max_bytes})")

    def sender_refusal(self, size: int, sender: str | None) -> str | None:
        """Why ``sender`` may not put ``size`` more bytes here (its share is
        used up until the owner takes some), or None."""
        if sender is None:
            return None
        held, held_bytes = self.senders.get(sender, (0, 0))
        rule = self.rule
        if held + 1 > rule.max_messages_per_sender or held_bytes + size > rule.max_bytes_per_sender:
            return (f"{_sender_name(sender)} holds {held} messages ({held_bytes} bytes) in mailbox '{self.uri}',"
                    f" its share (max_messages_per_sender {rule.max_messages_per_sender}, max_bytes_per_sender"
                    f" {rule.max_bytes_per_sender}); try again once the owner has taken some")
        return None

    def count_sender(self, sender: str | None, size: int, sign: int = 1) -> None:
        held = self.senders.setdefault(sender, [0, 0])
        held[0] += sign
        held[1] += sign * size
        if held[0] <= 0:
            del self.senders[sender]

    def _over(self, size: int) -> bool:
        return (len(self.messages) + self.pending + 1 > self.rule.max_messages
                or self.bytes + self.pending_bytes + size > self.rule.max_bytes)

    def committed(self, message: MailboxMessage) -> None:
        self.messages[message.id] = message
        self.bytes += message.size
        self.fresh.append(message.id)
        self.pump()

    def drop(self, message_id: int, counter: str) -> None:
        message = self.forget(message_id)
        if message is not None:
            setattr(self, counter, getattr(self, counter) + 1)
            self.owner.store.mailbox_delete(self.owner.realm.name, self.uri, [message_id])
            if self.owner.sync is not None:
                self.owner.sync.gone(self.uri, [message_id])
            self.record_counters()

    def record_counters(self) -> None:
        """Counters are kept across restarts: the store gets them at each change
        (a store the nodes share, this node's increments: core/mailbox_sync.py)."""
        counters = {name: getattr(self, name) for name in COUNTERS}
        if self.owner.sync is not None:
            self.owner.sync.record_counters(self, counters)
        else:
            self.owner.store.mailbox_counters(self.owner.realm.name, self.uri, counters)

    def forget(self, message_id: int) -> MailboxMessage | None:
        message = self.messages.pop(message_id, None)
        if message is not None:
            self.bytes -= message.size
            self.count_sender(message.sender, message.size, -1)
            if self.taker is not None:
                self.taker.inflight.pop(message_id, None)
        return message

    # --------------------------------------------------------------- delivery

    def next_available(self) -> int | None:
        messages, fresh, returned = self.messages, self.fresh, self.returned
        while returned and returned[0] not in messages:
            heapq.heappop(returned)
        while fresh and fresh[0] not in messages:
            fresh.popleft()
        if returned and (not fresh or returned[0] < fresh[0]):
            return heapq.heappop(returned)
        return fresh.popleft() if fresh else None

    def pump(self) -> None:
        taker = self.taker
        if taker is None:
            return
        now = self.owner.realm.now()
        deadline = now + self.rule.visibility_timeout
        attempts = []
        redelivered = False
        while len(taker.inflight) < taker.max_inflight:
            message_id = self.next_available()
            if message_id is None:
                break
            message = self.messages[message_id]
            message.attempts += 1
            if message.attempts > 1:
                self.redeliveries += 1
                redelivered = True
            taker.inflight[message_id] = deadline
            attempts.append((message_id, message.attempts))
            taker.call.progress({"id": message_id, "attempt": message.attempts,
                                 "timestamp": message.timestamp, "args": list(message.args or ()),
                                 "kwargs": dict(message.kwargs or {})})
        if attempts:
            self.owner.store.mailbox_attempts(self.owner.realm.name, self.uri, attempts)
            self._arm(taker)
        if redelivered:
            self.record_counters()

    def _arm(self, taker: Taker) -> None:
        if taker.timer is not None or not taker.inflight:
            return
        first_deadline = next(iter(taker.inflight.values()))
        delay = max(0.0, first_deadline - self.owner.realm.now())
        taker.timer = self.owner.realm.router.clock.callLater(delay, self._visibility, taker)

    def _visibility(self, taker: Taker) -> None:
        taker.timer = None
        if self.taker is not taker:
            return
        now = self.owner.realm.now()
        for message_id, deadline in list(taker.inflight.items()):
            if deadline > now:
                break
            del taker.inflight[message_id]
            heapq.heappush(self.returned, message_id)
        self.pump()
        self._arm(taker)

    def release(self, taker: Taker) -> None:
        """The taker ended: what it held comes back, ahead of newer messages."""
        if taker.timer is not None:
            taker.timer.cancel()
            taker.timer = None
        for message_id in taker.inflight:
            if message_id in self.messages:
                heapq.heappush(self.returned, message_id)
        taker.inflight.clear()
        if self.taker is taker:
            self.taker = None

    def ack(self, ids: list[int]) -> list[int]:
        acked = [i for i in ids if i in self.messages and self.messages[i].attempts > 0]
        for message_id in acked:
            self.forget(message_id)
        return acked

    def delivered_upto(self, upto: int) -> list[int]:
        return [i for i, message in self.messages.items() if i <= upto and message.attempts > 0]

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict:
        now = self.owner.realm.now()
        oldest = next(iter(self.messages.values()), None)
        return {"mailbox": self.uri, "depth": len(self.messages), "bytes": self.bytes,
                "oldest_age": round(now - oldest.timestamp, 3) if oldest is not None else 0.0,
                "inflight": len(self.taker.inflight) if self.taker is not None else 0,
                "taking": self.taker is not None, "pending": self.pending,
                "redeliveries": self.redeliveries, "drops": self.drops, "expired": self.expired}


class MessageIds:
    """Message IDs for a whole store: increasing, never handed out twice, even
    across restarts (a block is reserved in the store before it is used)."""

    def __init__(self, store, next_id: int) -> None:
        self.store = store
        self.next_id = next_id
        self.reserved = next_id

    def allocate(self) -> int:
        message_id = self.next_id
        self.next_id += 1
        if self.next_id > self.reserved:
            self.reserved = message_id + _ID_BLOCK
            self.store.mailbox_reserve(self.reserved)
        return message_id


def _sender_name(sender: str) -> str:
    kind, _, name = sender.partition(":")
    return {"wamp": f"sender '{name}'", "http": f"HTTP sender {name}"}.get(kind, f"sender {sender!r}")
