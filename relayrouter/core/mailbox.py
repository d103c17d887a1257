"""Mailboxes: durable, ordered, at-least-once queues, each owned by one identity.

Theory of operation
-------------------
A ``[[realms.mailboxes]]`` rule names mailboxes by a URI pattern with one
placeholder, ``{authid}`` or ``{<claim>}`` (one URI component): the session
whose authid (or credential claim) fills it owns that mailbox.  A mailbox
exists from its first message.

*Put* (a PUBLISH to a mailbox URI, or ``POST /mailbox/{name}``): checked
against the bounds (``max_messages``, ``max_bytes`` including puts not yet
committed, ``max_message_bytes``) and against the sender's share of them
(``max_messages_per_sender``, ``max_bytes_per_sender``: what one sender put
and the owner has not taken yet, so nobody fills another's mailbox), given
the next message ID, and handed to the store.  Only the store's completion makes the message visible to takers
and answers the sender (PUBLISHED, HTTP 202): what was acknowledged is
durable.  At the bound, ``overflow = refuse`` answers
``relayrouter.error.mailbox_full`` (``mailbox_sender_quota`` at the sender's
share); ``drop-oldest`` deletes the oldest messages (counted in ``drops``) to
make room, the sender's own first when its share is used up: one sender's
puts never push out another's until the mailbox itself is full.

*Take* (``relayrouter.mailbox.take``, a pending router procedure): each
message goes to the owner as one progressive RESULT, lowest ID first, at
most ``max_inflight`` unacknowledged at a time.  The messages a taker holds
come back (and are delivered again, ``attempt`` + 1, ahead of newer ones)
when it ends -- CANCEL, its session leaving, another take of the same
mailbox -- or when one has waited ``visibility_timeout`` seconds unacked.

*Ack* (``relayrouter.mailbox.ack``, by ``id`` or ``upto``): the messages
leave memory at once (never delivered again) and the RESULT waits for the
store's delete: an acked message does not come back after a crash.

Indexes and who owns them: ``Mailboxes.mailboxes[uri]`` (this module);
``Mailbox.messages[id]`` (committed, unacked, in ID order); ``Mailbox.senders[sender]``
(messages and bytes each sender has in it, puts not yet committed included); ``Mailbox.fresh``
(IDs never delivered, in order) and ``Mailbox.returned`` (a heap of IDs to
deliver again); ``Taker.inflight[id]`` (delivered, unacked, with deadline).
A message is in exactly one of fresh / returned / some taker's inflight.
"""

import hashlib
import heapq
import hmac
import re
from collections import deque
from dataclasses import dataclass, field

from autobahn.wamp import message as m

from . import errors
from .procedures import PENDING, AdminPolicy, ProcedureError
from .records import COUNTERS, MailboxMessage, StoreError

TAKE = "relayrouter.mailbox.take"
ACK = "relayrouter.mailbox.ack"
STATS = "relayrouter.mailbox.stats"
ENDPOINT = "relayrouter.mailbox.endpoint"

MAILBOX_FULL = "relayrouter.error.mailbox_full"
SENDER_QUOTA = "relayrouter.error.mailbox_sender_quota"
TOO_LARGE = "relayrouter.error.mailbox_message_too_large"
TAKEN_OVER = "relayrouter.error.mailbox_taken_over"
STORE_FAILED = "relayrouter.error.store_failed"
NO_SUCH_MAILBOX = "relayrouter.error.no_such_mailbox"

REFUSE = "refuse"
DROP_OLDEST = "drop-oldest"
OVERFLOW_POLICIES = (REFUSE, DROP_OLDEST)
HTTP_MODES = ("token", "open", "off")

MAX_INFLIGHT = 1000
DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024
ANONYMOUS_SENDER = "wamp:anonymous"  # anonymous sessions share one share: a new session is no new quota
_ID_BLOCK = 1000  # message IDs reserved in the store at a time
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class MailboxRule:
    uri: str  # e.g. "mailbox.{authid}"
    max_messages: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_age: float = 7 * 86400.0  # seconds; 0 keeps messages until taken
    overflow: str = REFUSE
    visibility_timeout: float = 60.0
    max_messages_per_sender: int = 1000
    max_bytes_per_sender: int = 8 * 1024 * 1024
    http: str = "token"  # POST /mailbox/{name}: token | open | off
    token_secret: bytes | None = field(default=None, repr=False)

    @property
    def owner_field(self) -> str:
        return _PLACEHOLDER.search(self.uri).group(1)

    def pattern(self) -> re.Pattern:
        before, after = _PLACEHOLDER.split(self.uri, maxsplit=1)[0::2]
        return re.compile(re.escape(before) + r"([^.#\s]+)" + re.escape(after) + r"\Z")

    def token(self, realm: str, uri: str) -> str | None:
        """The credential HTTP senders need for this mailbox (None: not token mode)."""
        if self.token_secret is None:
            return None
        return hmac.new(self.token_secret, f"{realm}\n{uri}".encode(), hashlib.sha256).hexdigest()


def rule_problem(uri: str) -> str | None:
    """Why a mailbox URI pattern is unusable, or None."""
    found = _PLACEHOLDER.findall(uri)
    if len(found) != 1:
        return "must hold exactly one placeholder such as {authid} (or {<claim>})"
    return None


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


class Mailboxes:
    """A realm's mailboxes and their procedures."""

    def __init__(self, realm, rules, store, ids: MessageIds, admin: AdminPolicy | None = None,
                 public_base: str | None = None) -> None:
        self.realm = realm
        self.rules = tuple(rules)
        self.store = store
        self.ids = ids
        self.admin = admin or AdminPolicy()
        self.viewers = None  # who else sees every mailbox's stats (AdminPolicy's interface), or None
        self.public_base = public_base  # e.g. "https://relay.example.com", for endpoint URLs
        self.patterns = [(rule, rule.pattern()) for rule in self.rules]
        self.mailboxes: dict[str, Mailbox] = {}
        self._rule_by_topic: dict[str, tuple | None] = {}
        # Told of store failures (the Twisted side logs them); counted here.
        self.report = lambda error: None
        self.store_failures = 0
        # Mailboxes whose pattern a reload removed, with what they hold (also
        # still in the store): adopted again if a later reload names them.
        self.retired: dict[str, Mailbox] = {}
        # The other nodes sharing the store (core/mailbox_sync.SharedMailboxes), or None: alone.
        self.sync = None
        self.attached = False
        self.attach()

    def attach(self) -> None:
        """The realm's mailbox procedures, and its PUBLISHes to mailbox URIs, are ours."""
        if self.attached:
            return
        for uri, handler in ((TAKE, self.take), (ACK, self.ack), (STATS, self.stats),
                             (ENDPOINT, self.endpoint)):
            self.realm.procedures.add(uri, handler)
        self.realm.broker.mailboxes = self
        self.attached = True

    def detach(self) -> None:
        """The realm has no mailbox rules any more (a reload): every mailbox retired."""
        self.replace_rules((), self.admin)
        if not self.attached:
            return
        for uri in (TAKE, ACK, STATS, ENDPOINT):
            self.realm.procedures.remove(uri)
        self.realm.broker.mailboxes = None
        self.attached = False

    def replace_rules(self, rules, admin: AdminPolicy) -> None:
        """New mailbox rules (a configuration reload).  Mailboxes of a pattern
        that stays keep what they hold under its new limits; those of a pattern
        removed are retired (a running take ends with NO_SUCH_MAILBOX; what they
        hold stays, in memory and in the store); a pattern added serves its
        mailboxes from the next message, and adopts retired ones it names."""
        by_uri = {rule.uri: rule for rule in rules}
        self.rules = tuple(rules)
        self.patterns = [(rule, rule.pattern()) for rule in self.rules]
        self._rule_by_topic.clear()
        self.admin = admin
        for uri, mailbox in list(self.mailboxes.items()):
            rule = by_uri.get(mailbox.rule.uri)
            if rule is not None:
                mailbox.rule = rule
            else:
                self._retire(uri, mailbox)
        for uri in [u for u in self.retired if self.match(u) is not None]:
            mailbox = self.mailboxes[uri] = self.retired.pop(uri)
            mailbox.rule, mailbox.owner_value = self.match(uri)
            mailbox.pump()

    def _retire(self, uri: str, mailbox: "Mailbox") -> None:
        del self.mailboxes[uri]
        self.retired[uri] = mailbox
        taker = mailbox.taker
        if taker is not None:
            mailbox.release(taker)
            taker.call.error(NO_SUCH_MAILBOX, f"mailbox '{uri}' is no longer configured (its pattern "
                             "was removed by a configuration reload); what it holds is kept")

    # ------------------------------------------------------------- lookup

    def match(self, uri: str) -> tuple | None:
        """(rule, owner value) of the mailbox ``uri`` names, or None."""
        cache = self._rule_by_topic
        try:
            return cache[uri]
        except KeyError:
            pass
        if len(cache) >= 10_000:
            cache.clear()
        found = None
        for rule, pattern in self.patterns:
            hit = pattern.match(uri)
            if hit is not None:
                found = (rule, hit.group(1))
                break
        cache[uri] = found
        return found

    def mailbox(self, uri: str, create: bool = True) -> Mailbox | None:
        mailbox = self.mailboxes.get(uri)
        if mailbox is None and create:
            found = self.match(uri)
            if found is None:
                return None
            mailbox = self.mailboxes[uri] = Mailbox(self, uri, found[0], found[1])
        return mailbox

    def load(self, message: MailboxMessage) -> bool:
        """A message kept from before a restart; False if no rule names its mailbox now."""
        mailbox = self.mailbox(message.mailbox)
        if mailbox is None:
            return False
        mailbox.count_sender(message.sender, message.size)
        mailbox.committed(message)
        return True

    def restore_counters(self, uri: str, counters: dict) -> bool:
        """A mailbox's counters kept from before a restart; False if no rule names it now."""
        mailbox = self.mailbox(uri)
        if mailbox is None:
            return False
        for name in COUNTERS:
            setattr(mailbox, name, int(counters.get(name, 0)))
        return True

    def owns(self, session, mailbox_uri: str) -> bool:
        found = self.match(mailbox_uri)
        if found is None:
            return False
        rule, value = found
        name = rule.owner_field
        if name == "authid":
            return session.authid == value
        claims = session.permissions or {}
        return isinstance(claims, dict) and str(claims.get(name, "")) == value and value != ""

    def is_admin(self, session) -> bool:
        return self.admin.admits(session.authrole, session.permissions)

    def sees_all(self, session) -> bool:
        """Admins, and ``viewers`` (the web console's users): every mailbox's stats."""
        return self.is_admin(session) or (
            self.viewers is not None and self.viewers.admits(session.authrole, session.permissions))

    # ----------------------------------------------------------------- put

    def put(self, uri: str, args, kwargs, size: int, done, sender: str | None = None) -> str | None:
        """Store one message from ``sender`` (``wamp:<authid>``, ``http:<address>``;
        None for the router's own); ``done(message_id | StoreError)`` once durable.
        Returns a refusal (and calls nothing) when the message cannot be taken."""
        mailbox = self.mailbox(uri)
        if mailbox is None:
            return f"'{uri}' is not a mailbox of realm '{self.realm.name}'"
        refusal = mailbox.room_for(size, sender)
        if refusal is not None:
            return refusal
        # Shared by the nodes of a cluster, the store numbers the message at commit (ids is None).
        message = MailboxMessage(self.realm.name, uri, self.ids.allocate() if self.ids is not None else 0,
                                 self.realm.now(), args, kwargs, size, sender=sender)
        mailbox.pending += 1
        mailbox.pending_bytes += size
        mailbox.count_sender(sender, size)

        def stored(outcome) -> None:
            mailbox.pending -= 1
            mailbox.pending_bytes -= size
            if isinstance(outcome, StoreError):
                mailbox.count_sender(sender, size, -1)
                self._store_failed(outcome)
                done(outcome)
                return
            if self.sync is not None:
                message.id = outcome
                self.sync.stored(mailbox, message)  # held in ID order, told to the other nodes
            else:
                mailbox.committed(message)
            done(message.id)

        self.store.mailbox_put(message, stored)
        return None

    def _store_failed(self, error: StoreError) -> None:
        self.store_failures += 1
        self.report(error)

    def refusal_uri(self, text: str) -> str:
        if "max_message_bytes" in text:
            return TOO_LARGE
        if "max_messages_per_sender" in text:
            return SENDER_QUOTA
        if "is not a mailbox" in text:
            return NO_SUCH_MAILBOX
        return MAILBOX_FULL

    def publish(self, session, msg: m.Publish) -> None:
        """A PUBLISH to a mailbox URI (the broker checked authorization)."""
        args = [msg.payload] if msg.payload is not None else msg.args
        size = _size(args, msg.kwargs)
        acknowledge = msg.acknowledge
        session_id = session.session_id

        def done(outcome) -> None:
            if not acknowledge or session.session_id != session_id:
                return  # the publisher left meanwhile: nobody to answer
            if isinstance(outcome, StoreError):
                _publish_error(session, msg, STORE_FAILED, "the router could not store the message; see its log")
            else:
                # PUBLISHED only now: "acknowledge" means the message is durable.
                session.peer.send(m.Published(msg.request, outcome))

        refusal = self.put(msg.topic, args, msg.kwargs, size, done, wamp_sender(session))
        if refusal is not None:
            self.realm.counters["mailbox_refused"] += 1
            if acknowledge:
                _publish_error(session, msg, self.refusal_uri(refusal), refusal)

    def expire(self) -> None:
        now = self.realm.now()
        for mailbox in self.mailboxes.values():
            max_age = mailbox.rule.max_age
            if not max_age:
                continue
            for message_id, message in list(mailbox.messages.items()):
                if now - message.timestamp < max_age:
                    break
                if mailbox.taker is None or message_id not in mailbox.taker.inflight:
                    mailbox.drop(message_id, "expired")

    # ----------------------------------------------------------- procedures

    def _owned(self, call, uri) -> Mailbox:
        if not isinstance(uri, str) or self.match(uri) is None:
            raise ProcedureError(errors.INVALID_ARGUMENT, f"{uri!r} is not a mailbox URI of realm "
                                 f"'{self.realm.name}' (see [[realms.mailboxes]])")
        if not (self.owns(call.session, uri) or self.is_admin(call.session)):
            raise ProcedureError(errors.NOT_AUTHORIZED, f"session '{call.session.authid}' does not own "
                                 f"mailbox '{uri}'")
        return self.mailbox(uri)

    def take(self, call):
        """``take(mailbox_uri, max_inflight=32)``, called with receive_progress."""
        fields = _fields(call, ("mailbox_uri", "max_inflight"))
        mailbox = self._owned(call, fields.get("mailbox_uri"))
        max_inflight = fields.get("max_inflight", 32)
        if not isinstance(max_inflight, int) or isinstance(max_inflight, bool) \
                or not 1 <= max_inflight <= MAX_INFLIGHT:
            raise ProcedureError(errors.INVALID_ARGUMENT, f"max_inflight must be 1 to {MAX_INFLIGHT}")
        if not call.receive_progress:
            raise ProcedureError(errors.INVALID_ARGUMENT, "call take with receive_progress: every "
                                 "message arrives as a progressive result")
        previous = mailbox.taker
        if previous is not None:
            mailbox.release(previous)
            previous.call.error(TAKEN_OVER, f"another take of '{mailbox.uri}' started; this one ended")
        taker = Taker(call, mailbox, max_inflight)
        mailbox.taker = taker
        call.on_cancel(lambda reason: mailbox.release(taker))
        if self.sync is not None:
            self.sync.taking(mailbox)  # pumps once the mailbox is read back from the shared store
        else:
            mailbox.pump()
        return PENDING

    def ack(self, call):
        """``ack(mailbox_uri, id)`` or ``ack(mailbox_uri, upto=id)`` -> number acknowledged."""
        fields = _fields(call, ("mailbox_uri", "id"))
        mailbox = self._owned(call, fields.get("mailbox_uri"))
        single, upto = fields.get("id"), fields.get("upto")
        if (single is None) == (upto is None) or not _is_id(single if upto is None else upto):
            raise ProcedureError(errors.INVALID_ARGUMENT, "give 'id' or 'upto', a message ID")
        ids = mailbox.ack([single] if upto is None else mailbox.delivered_upto(upto))
        if not ids:
            return 0
        if self.sync is not None:
            self.sync.gone(mailbox.uri, ids)

        def deleted(outcome) -> None:
            if isinstance(outcome, StoreError):
                self._store_failed(outcome)
                call.error(STORE_FAILED, "the router could not record the acknowledgement; see its log")
            else:
                call.result(len(ids))

        self.store.mailbox_delete(self.realm.name, mailbox.uri, ids, deleted)
        mailbox.pump()
        return PENDING

    def stats(self, call):
        """``stats(mailbox_uri=None)``: one mailbox, or every one the caller may see."""
        fields = _fields(call, ("mailbox_uri",))
        uri = fields.get("mailbox_uri")
        if uri is not None:
            self._owned(call, uri)
            return self.mailbox(uri).stats()
        everything = self.sees_all(call.session)
        return {"mailboxes": [mb.stats() for uri, mb in sorted(self.mailboxes.items())
                              if everything or self.owns(call.session, uri)]}

    def endpoint(self, call):
        """``endpoint(mailbox_uri)``: what HTTP senders need to post to it."""
        fields = _fields(call, ("mailbox_uri",))
        mailbox = self._owned(call, fields.get("mailbox_uri"))
        return self.endpoint_of(mailbox.uri)

    def endpoint_of(self, uri: str) -> dict:
        rule = self.match(uri)[0]
        if rule.http == "off":
            raise ProcedureError(errors.INVALID_ARGUMENT, f"mailbox '{uri}' takes no HTTP posts (http = \"off\")")
        token = rule.token(self.realm.name, uri)
        # The token as a path segment (it names the realm too): no '?' in the URL an
        # agent advertises, which some DIDComm agents mangle in their signed DID docs.
        path = f"/mailbox/{uri}/{token}" if token else f"/mailbox/{uri}?realm={self.realm.name}"
        return {"mailbox": uri, "realm": self.realm.name, "token": token, "path": path,
                "url": self.public_base + path if self.public_base else None}


def wamp_sender(session) -> str:
    """Whose share a session's put uses: its authid; anonymous sessions share one."""
    if session.authmethod == "anonymous" or not session.authid:
        return ANONYMOUS_SENDER
    return f"wamp:{session.authid}"


def _sender_name(sender: str) -> str:
    kind, _, name = sender.partition(":")
    return {"wamp": f"sender '{name}'", "http": f"HTTP sender {name}"}.get(kind, f"sender {sender!r}")


def _size(args, kwargs) -> int:
    """Bytes a message costs: payload bytes and strings, roughly for the rest."""
    total = 0
    stack = [args, kwargs]
    while stack:
        value = stack.pop()
        if isinstance(value, (bytes, str)):
            total += len(value)
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
        elif value is not None:
            total += 8
    return total


def _fields(call, names: tuple) -> dict:
    fields = dict(call.kwargs)
    for name, value in zip(names, call.args):
        fields.setdefault(name, value)
    return fields


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _publish_error(session, msg: m.Publish, uri: str, text: str) -> None:
    session.peer.send(m.Error(m.Publish.MESSAGE_TYPE, msg.request, uri, args=[text]))
