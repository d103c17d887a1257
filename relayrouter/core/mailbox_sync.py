"""Mailboxes shared by the nodes of a cluster, through the store they share.

Theory of operation
-------------------
Every node of a cluster keeps its mailboxes in one PostgreSQL database (a
clustered node without ``[storage] dsn`` is refused at start), and holds in
memory what it knows of them, as a node alone does (core/mailbox.py).  The
database is the truth; what a node holds is kept close to it by notices the
nodes send each other (the ``peers`` interface, NATS in cluster/mailboxes.py):

* *put*: a message committed on a node (after its commit, never before) is
  told to every other node, which adds it to what it holds: it counts against
  the bounds there, and a take running there delivers it at once.
* *gone*: messages acknowledged, dropped or expired on a node are told to
  the others, which forget them (a take there never delivers them again).
* *take*: a take started on a node ends the take of the same mailbox on any
  other node (``mailbox_taken_over``), as a second take on one node does.

Notices are at most once (NATS core); nothing depends on them for safety:
a take reads its mailbox back from the database before it delivers anything
(:meth:`SharedMailboxes.resync`), and so does every mailbox of the realm when
the node reconnects to NATS.  The read queues behind this node's own writes,
so it sees every ack this node committed; what it finds is added, and what
the node held but the database no longer has (gone elsewhere, the notice
lost) is forgotten.  A message acknowledged here is remembered for a while
(``RECENT``), so that neither a late *put* notice nor a read that raced the
ack brings it back.

Order.  The database numbers each mailbox's messages at commit, one after
another, whichever node put them (store/sql.py).  A node holds a mailbox's
messages only in that order: ``high[uri]`` is the last ID up to which it
holds every message the database still has; a message that comes with a
higher ID than the next (its notice overtook another node's, or this node's
own commit came first) waits in ``waiting[uri]`` while the mailbox is read
back, which brings what was missing (or shows it gone).  So a take delivers
each mailbox's messages in ID order, which is commit order, as on a node
alone -- what the mediator proxy's pickup relies on (it never goes back
below an ID it finished).
"""

from collections import OrderedDict

from .records import COUNTERS, MailboxMessage, StoreError

TAKEN_OVER = "relayrouter.error.mailbox_taken_over"
RECENT = 100_000  # (mailbox, id) of messages gone, remembered to ignore late notices of them


class SharedMailboxes:
    """One realm's :class:`~relayrouter.core.mailbox.Mailboxes`, kept in step
    with the other nodes'.  ``peers`` sends notices to the other nodes:
    ``put(realm, message)``, ``gone(realm, uri, ids)``, ``took(realm, uri)``."""

    def __init__(self, mailboxes, peers) -> None:
        self.mailboxes = mailboxes
        self.peers = peers
        self.realm = mailboxes.realm.name
        self.recent: OrderedDict = OrderedDict()  # (mailbox URI, id) -> None, oldest first
        self.high: dict[str, int] = {}  # mailbox URI -> every message up to this ID held (or gone)
        self.first: int | None = None  # the first ID of a mailbox the store has not numbered yet
        self.waiting: dict[str, dict] = {}  # mailbox URI -> {id: (message, sender counted)}
        self.reading: set = set()  # mailbox URIs read back for a gap now
        self.resyncs = 0
        self.notices_in = 0
        # mailbox URI -> its counters as the store has them with this node's increments (the others' come
        # in when the mailbox is read back); what changed since is what the next record adds.
        self.recorded: dict[str, dict] = {uri: _counters(mailbox) for uri, mailbox in mailboxes.mailboxes.items()}
        mailboxes.sync = self

    # ------------------------------------------------------ this node's changes

    def stored(self, mailbox, message: MailboxMessage) -> None:
        """This node's put committed (its sender counted already)."""
        self.peers.put(self.realm, message)
        self._admit(mailbox, message, counted=True)

    def gone(self, uri: str, ids: list) -> None:
        self._remember(uri, ids)
        self.peers.gone(self.realm, uri, ids)

    def record_counters(self, mailbox, counters: dict) -> None:
        """This node's increments since the last record, which the shared store adds up."""
        before = self.recorded.get(mailbox.uri, {})
        self.recorded[mailbox.uri] = counters
        self.mailboxes.store.mailbox_counters(self.realm, mailbox.uri,
                                              {name: counters[name] - before.get(name, 0) for name in COUNTERS})

    def taking(self, mailbox) -> None:
        """A take started here: the other nodes' takes of it end; it delivers once read back."""
        self.peers.took(self.realm, mailbox.uri)
        self.resync(mailbox.uri, mailbox.pump)

    # ------------------------------------------------------ the other nodes' notices

    def heard_put(self, message: MailboxMessage, complete: bool) -> None:
        """``complete``: the notice carried the payload; else it is read from the store."""
        self.notices_in += 1
        mailbox = self.mailboxes.mailbox(message.mailbox)
        if mailbox is None:
            return
        if complete:
            self._admit(mailbox, message, counted=False)
        elif message.id not in mailbox.messages and (message.mailbox, message.id) not in self.recent:
            self.resync(message.mailbox)

    def heard_gone(self, uri: str, ids: list) -> None:
        self.notices_in += 1
        self._remember(uri, ids)
        mailbox = self.mailboxes.mailboxes.get(uri)
        if mailbox is not None:
            for message_id in ids:
                mailbox.forget(message_id)

    def heard_take(self, uri: str) -> None:
        self.notices_in += 1
        mailbox = self.mailboxes.mailboxes.get(uri)
        taker = mailbox.taker if mailbox is not None else None
        if taker is not None:
            mailbox.release(taker)
            taker.call.error(TAKEN_OVER, f"another take of '{uri}' started on another node; this one ended")

    # ------------------------------------------------------ in ID order

    def _admit(self, mailbox, message: MailboxMessage, counted: bool) -> None:
        uri, message_id = mailbox.uri, message.id
        if message_id in mailbox.messages or (uri, message_id) in self.recent:
            return
        high = self._high(uri)
        if high is not None and message_id <= high:
            self._discard(mailbox, message, counted)  # the mailbox was read back since: gone meanwhile
        elif high is not None and message_id == high + 1:
            self._hold(mailbox, message, counted)
            self.high[uri] = message_id
            self._drain(mailbox)
        else:
            self.waiting.setdefault(uri, {})[message_id] = (message, counted)
            if uri not in self.reading:
                self.reading.add(uri)
                self.resync(uri)

    def _high(self, uri: str) -> int | None:
        """The last ID up to which ``uri``'s messages are all held or gone; None: not known yet.
        A mailbox this node never read back starts where the store numbers new mailboxes."""
        high = self.high.get(uri)
        if high is None and self.first is not None:
            high = self.high[uri] = self.first - 1
        return high

    def _hold(self, mailbox, message: MailboxMessage, counted: bool) -> None:
        if not counted:
            mailbox.count_sender(message.sender, message.size)
        mailbox.committed(message)

    def _discard(self, mailbox, message: MailboxMessage, counted: bool) -> None:
        if counted:
            mailbox.count_sender(message.sender, message.size, -1)

    def _drain(self, mailbox) -> None:
        waiting = self.waiting.get(mailbox.uri)
        while waiting:
            entry = waiting.pop(self._high(mailbox.uri) + 1, None)
            if entry is None:
                break
            self.high[mailbox.uri] += 1
            self._hold(mailbox, *entry)
        if not waiting:
            self.waiting.pop(mailbox.uri, None)

    # ------------------------------------------------------ reading back

    def resync(self, uri: str | None = None, then=None) -> None:
        """Reads mailbox ``uri`` (every mailbox of the realm: None) back from the
        store and holds what it holds, in ID order; then ``then()``."""
        scope = [uri] if uri is not None else list(self.mailboxes.mailboxes)
        held = {u: set(self.mailboxes.mailboxes[u].messages) for u in scope if u in self.mailboxes.mailboxes}
        counted = {u: _counters(self.mailboxes.mailboxes[u]) for u in held}
        self.resyncs += 1

        def read(outcome) -> None:
            if uri is not None:
                self.reading.discard(uri)
            if isinstance(outcome, StoreError):
                self.mailboxes._store_failed(outcome)
            else:
                if outcome.first is not None:
                    self.first = outcome.first
                self._apply(held, outcome.messages, outcome.last)
                self._count(counted, outcome.counters)
            if then is not None:
                then()

        self.mailboxes.store.mailbox_read(self.realm, uri, read)

    def _apply(self, held: dict, rows: list, last: dict) -> None:
        stored: dict[str, list] = {u: [] for u in held}
        for row in rows:
            stored.setdefault(row.mailbox, []).append(row)
        for uri in last:
            stored.setdefault(uri, [])
        for uri, messages in stored.items():
            mailbox = self.mailboxes.mailbox(uri)
            if mailbox is not None:
                self._apply_one(mailbox, held.get(uri, ()), messages, last.get(uri))

    def _apply_one(self, mailbox, held, messages: list, last: int | None) -> None:
        uri = mailbox.uri
        present = {message.id for message in messages}
        for message_id in held:  # held before the read, gone from the store since
            if message_id not in present:
                mailbox.forget(message_id)
        waiting = self.waiting.get(uri, {})
        for message in messages:
            known = mailbox.messages.get(message.id)
            if known is not None:
                known.attempts = max(known.attempts, message.attempts)
            elif (uri, message.id) not in self.recent:
                entry = waiting.pop(message.id, None)
                self._hold(mailbox, message, entry is not None and entry[1])
            else:
                waiting.pop(message.id, None)
        top = max([self._high(uri) or 0, last or 0] + [message.id for message in messages])
        if top:
            self.high[uri] = top
            for message_id in [i for i in waiting if i <= top]:  # committed, then gone before the read
                self._discard(mailbox, *waiting.pop(message_id))
            self._drain(mailbox)
        if self.waiting.get(uri) and uri not in self.reading:
            self.reading.add(uri)
            self.resync(uri)

    def _count(self, counted: dict, stored: dict) -> None:
        """Every node's increments, as stored, plus this node's since the read was asked for."""
        for uri, values in stored.items():
            mailbox = self.mailboxes.mailboxes.get(uri)
            if mailbox is None:
                continue
            before = counted.get(uri, self.recorded.get(uri, {}))
            total = {name: int(values.get(name, 0)) + getattr(mailbox, name) - before.get(name, 0)
                     for name in COUNTERS}
            for name, value in total.items():
                setattr(mailbox, name, value)
            self.recorded[uri] = total

    def _remember(self, uri: str, ids: list) -> None:
        recent = self.recent
        for message_id in ids:
            recent[(uri, message_id)] = None
        while len(recent) > RECENT:
            recent.popitem(last=False)


def _counters(mailbox) -> dict:
    return {name: getattr(mailbox, name) for name in COUNTERS}
