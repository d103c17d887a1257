"""What the core keeps in the durable store, as plain values, and the
interface (:class:`Store`) it needs from it: the core owns both, the
backends in :mod:`relayrouter.store` implement the interface and import this
module, never the reverse.

Theory of operation
-------------------
The core never waits for a disk.  It hands the store a value and, where it
must know the outcome (a PUBLISHED that promises durability, an ack's
RESULT, a history read), a ``done`` callback.  The store runs the work
elsewhere (a writer thread for SQLite and PostgreSQL, at once for the
in-memory store) and calls ``done(outcome)`` back on the thread that owns the
core: ``outcome`` is the result, or a :class:`StoreError` instance when the
work failed.  Calls with no ``done`` are fire-and-forget: a failure is
counted and logged by the backend, never raised at the caller.

Completions arrive in the order the work was submitted: a put submitted
before an ack is durable before it.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .matching import EXACT, pattern_matches

Done = Callable[[Any], None]


COUNTERS = ("redeliveries", "drops", "expired")  # per mailbox, kept across restarts


class StoreError(Exception):
    """The store could not do what was asked (disk full, database gone...)."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One publication kept in a topic's history."""

    realm: str
    rule: str  # the history rule that kept it ("<match>:<uri>"), for expiry
    topic: str
    publication: int
    timestamp: float  # seconds since the epoch, when the router received it
    args: list | None
    kwargs: dict | None
    details: dict  # EVENT.Details as a subscriber got them (publisher, ppt_* ...)
    # Who may read it back: the publication's authid/authrole black- and
    # whitelists (session-id lists are never stored: see core/history.py).
    audience: dict | None = None
    seq: int = 0  # storage order, set by the store


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Events of ``realm`` whose topic matches ``topic`` under ``match``.

    Publication bounds are positions in storage order of the event with that
    publication ID (``after``/``before`` exclusive, ``from_``/``until``
    inclusive); a bound naming a publication the store does not hold makes
    the read fail with :class:`UnknownPublication`.  Time bounds are seconds
    since the epoch.  ``limit`` events at most, oldest first unless
    ``reverse``; the result says whether more would have matched.
    """

    realm: str
    topic: str
    match: str = "exact"
    limit: int = 100
    reverse: bool = False
    after: int | None = None
    from_: int | None = None
    before: int | None = None
    until: int | None = None
    time_min: float | None = None
    time_min_inclusive: bool = True
    time_max: float | None = None
    time_max_inclusive: bool = True
    only_topic: str | None = None  # within a pattern, this topic only
    # (authid, authrole) of the reader, for the stored audience; None: no check
    reader: tuple | None = None


class UnknownPublication(StoreError):
    def __init__(self, publication: int) -> None:
        super().__init__(f"publication {publication} is not in this topic's history "
                         "(never kept, or expired): read by time instead")
        self.publication = publication


@dataclass(frozen=True, slots=True)
class HistoryPage:
    events: list
    more: bool


@dataclass(slots=True)
class MailboxMessage:
    """One message in a mailbox; ``attempts`` counts deliveries so far."""

    realm: str
    mailbox: str
    id: int
    timestamp: float
    args: list | None
    kwargs: dict | None
    size: int
    attempts: int = 0
    sender: str | None = None  # who put it, for the per-sender bounds (None: unknown, before they existed)


@dataclass(frozen=True, slots=True)
class MailboxRead:
    """Mailboxes read back from a store (``mailbox_read``)."""

    messages: list  # MailboxMessage, by mailbox and ID
    last: dict  # mailbox URI -> its last message ID, where the store numbers them (shared)
    counters: dict  # mailbox URI -> {"redeliveries", "drops", "expired"}
    first: int | None = None  # the ID a mailbox not numbered yet gets first (shared), else None


@dataclass(frozen=True, slots=True)
class MailboxState:
    """What the store holds for mailboxes at start."""

    messages: list = field(default_factory=list)  # MailboxMessage, by (realm, mailbox, id)
    next_id: int = 1  # no message ID below this was ever handed out
    # (realm, mailbox) -> {"redeliveries", "drops", "expired"}, as last recorded
    counters: dict = field(default_factory=dict)


class Store(Protocol):
    """The narrow interface every backend implements (see the module doc)."""

    def start(self) -> None:
        """Open, create or upgrade the schema. Blocking: called once at start."""

    def close(self) -> None:
        """Finish what was submitted, then release everything. Blocking."""

    def after_fork(self) -> None:
        """Go on in a process forked since :meth:`start` (twistd daemonizes after
        making the service, and threads do not survive a fork)."""

    # history
    def history_append(self, event: StoredEvent, keep: int) -> None:
        """Keep ``event``; then at most ``keep`` events of its topic (oldest go)."""

    def history_expire(self, realm: str, rule: str, before: float, done: Done | None = None) -> None:
        """Forget the rule's events received before ``before``."""

    def history_read(self, query: HistoryQuery, done: Done) -> None:
        """``done(HistoryPage)``."""

    # mailboxes
    def mailbox_load(self) -> MailboxState:
        """Everything kept for mailboxes. Blocking: called once at start."""

    def mailbox_reserve(self, upto: int) -> None:
        """Message IDs below ``upto`` are taken, even after a restart."""

    def mailbox_read(self, realm: str, mailbox: str | None, done: Done) -> None:
        """``done(MailboxRead)``: what the store holds now for one mailbox of
        ``realm`` (every mailbox of it when ``mailbox`` is None); it sees
        everything this node submitted before."""

    def mailbox_put(self, message: MailboxMessage, done: Done | None) -> None:
        """``done(None)`` once committed; where :attr:`shared` is true, the store
        numbers the message in its mailbox at commit: ``done(its ID)``."""

    # True: the nodes of a cluster share this store (core/mailbox_sync.py), set before use.
    shared: bool

    def mailbox_delete(self, realm: str, mailbox: str, ids: list, done: Done | None = None) -> None: ...

    def mailbox_attempts(self, realm: str, mailbox: str, attempts: list) -> None:
        """``attempts``: (id, attempts) pairs to record; fire-and-forget."""

    def mailbox_counters(self, realm: str, mailbox: str, counters: dict) -> None:
        """Records a mailbox's counters as they are now (``COUNTERS``, kept
        across restarts); fire-and-forget, the last one submitted wins.  Where
        :attr:`shared`, ``counters`` are one node's increments, added up."""

    # realms
    def realm_purge(self, realm: str, done: Done | None = None) -> None:
        """Forget everything kept for ``realm``: history, mailbox messages and
        counters (a deleted tenant's); ``done(None)`` once committed."""


def wanted(query: HistoryQuery, event: StoredEvent) -> bool:
    """Whether a stored event answers the query (topic pattern, audience)."""
    if query.match != EXACT and not pattern_matches(query.topic, query.match, event.topic):
        return False
    return query.reader is None or audience_admits(event.audience, *query.reader)


def audience_admits(audience: dict | None, authid: str | None, authrole: str | None) -> bool:
    """Whether a reader passes a stored publication's authid/authrole lists."""
    if not audience:
        return True
    eligible_authid = audience.get("eligible_authid")
    if eligible_authid is not None and authid not in eligible_authid:
        return False
    eligible_authrole = audience.get("eligible_authrole")
    if eligible_authrole is not None and authrole not in eligible_authrole:
        return False
    return (authid not in audience.get("exclude_authid", ())
            and authrole not in audience.get("exclude_authrole", ()))
