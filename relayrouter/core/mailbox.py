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

from autobahn.wamp import message as m

from . import errors
from .mailbox_queue import Mailbox, MessageIds, Taker
from .mailbox_rules import (DEFAULT_MAX_MESSAGE_BYTES, DROP_OLDEST, HTTP_MODES, OVERFLOW_POLICIES, REFUSE,
                            MailboxRule, rule_problem)
from .procedures import PENDING, AdminPolicy, ProcedureError
from .records import COUNTERS, MailboxMessage, StoreError

__all__ = ["ACK", "ANONYMOUS_SENDER", "DEFAULT_MAX_MESSAGE_BYTES", "DROP_OLDEST", "ENDPOINT", "HTTP_MODES",
           "MAILBOX_FULL", "MAX_INFLIGHT", "NO_SUCH_MAILBOX", "OVERFLOW_POLICIES", "REFUSE", "SENDER_QUOTA",
           "STATS", "STORE_FAILED", "TAKE", "TAKEN_OVER", "TOO_LARGE", "Mailbox", "MailboxRule", "Mailboxes",
           "MessageIds", "Taker", "rule_problem", "wamp_sender"]

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

MAX_INFLIGHT = 1000
ANONYMOUS_SENDER = "wamp:anonymous"  # anonymous sessions share one share: a new session is no new quota


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
