"""The store in memory: for core tests, and routers that keep nothing.

Completions are called at once, or, with ``hold=True``, only when the test
calls :meth:`MemoryStore.flush` -- the way to see what a caller does
between submitting work and its being durable.
"""

from dataclasses import replace

from ..core.matching import EXACT
from ..core.records import (HistoryPage, HistoryQuery, MailboxMessage, MailboxRead, MailboxState, StoredEvent,
                            UnknownPublication, wanted)


class MemoryStore:
    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.events: list[StoredEvent] = []
        self.messages: dict[tuple, MailboxMessage] = {}
        self.next_id = 1
        self.counters: dict[tuple, dict] = {}
        self.held: list = []
        self.shared = False
        self.numbers: dict[tuple, int] = {}  # (realm, mailbox) -> its last ID, when shared
        self._seq = 0
        self.started = False

    def describe(self) -> str:
        return "memory"

    def start(self) -> None:
        self.started = True

    def close(self) -> None:
        self.flush()

    def after_fork(self) -> None:
        pass

    def flush(self) -> None:
        held, self.held = self.held, []
        for done, outcome in held:
            done(outcome)

    def _complete(self, done, outcome) -> None:
        if done is None:
            return
        if self.hold:
            self.held.append((done, outcome))
        else:
            done(outcome)

    # --------------------------------------------------------------- history

    def history_append(self, event: StoredEvent, keep: int) -> None:
        self._seq += 1
        self.events.append(replace(event, seq=self._seq))
        same = [e for e in self.events if e.realm == event.realm and e.topic == event.topic]
        for old in same[:max(0, len(same) - keep)]:
            self.events.remove(old)

    def history_expire(self, realm: str, rule: str, before: float, done=None) -> None:
        kept = [e for e in self.events if not (e.realm == realm and e.rule == rule and e.timestamp < before)]
        removed = len(self.events) - len(kept)
        self.events = kept
        self._complete(done, removed)

    def history_read(self, query: HistoryQuery, done) -> None:
        try:
            self._complete(done, self._read(query))
        except UnknownPublication as e:
            self._complete(done, e)

    def _seq_of(self, realm: str, publication: int) -> int:
        for event in reversed(self.events):
            if event.realm == realm and event.publication == publication:
                return event.seq
        raise UnknownPublication(publication)

    def _read(self, query: HistoryQuery) -> HistoryPage:
        bounds = [(query.after, lambda s, b: s > b), (query.from_, lambda s, b: s >= b),
                  (query.before, lambda s, b: s < b), (query.until, lambda s, b: s <= b)]
        checks = [(self._seq_of(query.realm, p), test) for p, test in bounds if p is not None]
        topic = query.topic if query.match == EXACT else query.only_topic
        found = []
        for event in (reversed(self.events) if query.reverse else self.events):
            if event.realm != query.realm or (topic is not None and event.topic != topic):
                continue
            if not all(test(event.seq, bound) for bound, test in checks):
                continue
            if not _in_time(query, event.timestamp) or not wanted(query, event):
                continue
            found.append(event)
            if len(found) > query.limit:
                break
        return HistoryPage(found[:query.limit], len(found) > query.limit)

    # ------------------------------------------------------------- mailboxes

    def mailbox_load(self) -> MailboxState:
        messages = sorted(self.messages.values(), key=lambda m: (m.realm, m.mailbox, m.id))
        next_id = max([self.next_id] + [m.id + 1 for m in messages])
        return MailboxState([replace(m) for m in messages], next_id,
                            {key: dict(values) for key, values in self.counters.items()})

    def mailbox_reserve(self, upto: int) -> None:
        self.next_id = max(self.next_id, upto)

    def mailbox_read(self, realm: str, mailbox: str | None, done) -> None:
        found = sorted((m for m in self.messages.values()
                        if m.realm == realm and (mailbox is None or m.mailbox == mailbox)),
                       key=lambda m: (m.mailbox, m.id))
        numbers = {uri: last for (r, uri), last in self.numbers.items()
                   if r == realm and (mailbox is None or uri == mailbox)}
        counters = {uri: dict(values) for (r, uri), values in self.counters.items()
                    if r == realm and (mailbox is None or uri == mailbox)}
        self._complete(done, MailboxRead([replace(m) for m in found], numbers, counters, self.next_id))

    def mailbox_put(self, message: MailboxMessage, done) -> None:
        number = None
        if self.shared:  # numbered in its mailbox, as a database shared by nodes does
            key = (message.realm, message.mailbox)
            number = self.numbers[key] = self.numbers.get(key, self.next_id - 1) + 1
        kept = replace(message, id=number) if number is not None else replace(message)
        self.messages[(kept.realm, kept.mailbox, kept.id)] = kept
        self._complete(done, number)

    def mailbox_delete(self, realm: str, mailbox: str, ids: list, done=None) -> None:
        for message_id in ids:
            self.messages.pop((realm, mailbox, message_id), None)
        self._complete(done, None)

    def mailbox_attempts(self, realm: str, mailbox: str, attempts: list) -> None:
        for message_id, count in attempts:
            message = self.messages.get((realm, mailbox, message_id))
            if message is not None:
                message.attempts = count

    def mailbox_counters(self, realm: str, mailbox: str, counters: dict) -> None:
        if self.shared:  # each node's increments, added up
            before = self.counters.get((realm, mailbox), {})
            counters = {name: before.get(name, 0) + value for name, value in counters.items()}
        self.counters[(realm, mailbox)] = dict(counters)

    # ---------------------------------------------------------------- realms

    def realm_purge(self, realm: str, done=None) -> None:
        self.events = [e for e in self.events if e.realm != realm]
        self.messages = {k: m for k, m in self.messages.items() if m.realm != realm}
        self.counters = {k: c for k, c in self.counters.items() if k[0] != realm}
        self._complete(done, None)


def _in_time(query: HistoryQuery, timestamp: float) -> bool:
    if query.time_min is not None:
        if timestamp < query.time_min or (not query.time_min_inclusive and timestamp == query.time_min):
            return False
    if query.time_max is not None:
        if timestamp > query.time_max or (not query.time_max_inclusive and timestamp == query.time_max):
            return False
    return True
