"""The key directory on the router: follow the peers' signed key records, publish ours.

On every join, before replication starts: the records kept in the store
are loaded (once), the directory topic's prefix is subscribed to (events
held back), its history read from the start (a few records per
organisation), then the held-back events; each record is checked by
:func:`keyring.verify` and, when taken, put in the :class:`KeyBook` (what
ingest and ``/publish`` use from then on) and kept in the store.  A refused
record is logged, counted and quarantined as ``key_record_refused`` with
the reason.  Then our own record is published when it changed (a new key
pair, a key retired) or the router's history lacks it.  The record format
and the trust rules are in keyring.py.
"""

import json
import time

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions
from twisted.internet import defer
from twisted.logger import Logger

from . import keyring
from .ingest import Quarantined

log = Logger(namespace="decrypt_search")

HISTORY_READ = "relayrouter.history.read"
KEY_RECORD_REFUSED = "key_record_refused"
PAGE = 500


class Directory:
    def __init__(self, config, keys, book: keyring.KeyBook, db, clock=time.time) -> None:
        self.config = config
        self.keys = keys
        self.book = book
        self.db = db
        self.clock = clock
        self.prefix = config.directory_topic + "."
        self.loaded = False
        self.own_last: keyring.KeyRecord | None = None  # the last record of ours we published (or kept)
        self.own_seen: set = set()  # our records' bytes the router's history holds
        self.own_seq_seen = 0
        self.held: list | None = None
        self.handled: set = set()  # publication ids taken in (a directory holds a few records per organisation)
        self.counts = {"accepted": 0, "duplicates": 0, "stale": 0, "refused": 0, "published": 0}
        self.refusals: list = []  # the last few: {"publication", "topic", "message"}

    @defer.inlineCallbacks
    def joined(self, session):
        if not self.loaded:
            yield self._load()
        self.held = []
        yield session.subscribe(self._on_event, self.prefix, options=SubscribeOptions(match="prefix", details=True))
        yield self._catch_up(session)
        held, self.held = self.held, None
        for publication, topic, args in held:
            self.receive(publication, topic, args)
        if self.config.directory_publish:
            yield self.publish_own(session)

    @defer.inlineCallbacks
    def _load(self):
        kept = yield self.db.read("key_records")
        for org, event in kept.items():
            try:
                record = keyring.parse_event([json.loads(event)], org)
            except (keyring.KeyRecordError, ValueError) as e:  # written by us: a damaged store
                log.error("the store's key record of {org} cannot be read ({e}); it is ignored", org=org, e=e)
                continue
            if org == self.config.org:
                self.own_last = record
            else:
                self.book.accept(record)
        self.loaded = True

    def _on_event(self, *args, details=None, **kwargs):
        topic = details.topic or self.prefix
        if self.held is not None:
            self.held.append((details.publication, topic, args))
        else:
            self.receive(details.publication, topic, args)

    @defer.inlineCallbacks
    def _catch_up(self, session):
        after = None
        while True:
            try:
                page = yield session.call(HISTORY_READ, self.prefix, match="prefix", after=after, limit=PAGE)
            except ApplicationError as e:
                log.error("cannot read the key directory's history ({topic}*): {error}; only records published "
                          "from now on are seen (keep its history on the router: [[realms.history]])",
                          topic=self.prefix, error=e.error)
                return
            for event in page.get("events", []):
                self.receive(event["publication"], event["topic"], event.get("args") or [])
                after = event["publication"]
            if not page.get("more"):
                return

    # ------------------------------------------------------------ records

    def receive(self, publication: int, topic: str, args) -> None:
        if publication in self.handled:  # read in the history and heard live
            return
        self.handled.add(publication)
        org = topic[len(self.prefix):] if topic.startswith(self.prefix) else ""
        try:
            if not org or "." in org:
                raise keyring.KeyRecordError(f"'{topic}' is not <directory.topic>.<organisation>")
            record = keyring.parse_event(args, org)
            if org == self.config.org:
                self._own_seen(record)  # refuses one we did not sign
                return
            taken = keyring.verify(record, self.book.records.get(org), self.book.pins(org),
                                   self.config.directory_trust)
        except keyring.StaleRecord:
            self.counts["stale"] += 1
            log.info("key directory: ignored {org}'s record seq {seq}: older than the accepted seq {last}",
                     org=org, seq=record.seq, last=self.book.records[org].seq)
            return
        except keyring.KeyRecordError as e:
            self._refuse(publication, topic, str(e), args)
            return
        if not taken:
            self.counts["duplicates"] += 1
            return
        first = org not in self.book.records
        self.book.accept(record)
        self.counts["accepted"] += 1
        how = " (trusted on first use)" if first and not self.book.pins(org) else ""
        log.info("key directory: {org}'s key record seq {seq} accepted{how}: signing key {sig}, encryption key "
                 "{enc}", org=org, seq=record.seq, how=how, sig=record.current.signing_kid,
                 enc=record.current.encryption_kid)
        self.db.call("save_key_record", org, record.seq, json.dumps(record.event()), self.clock()).addErrback(
            lambda f: log.failure("cannot keep {org}'s key record", f, org=org))

    def _own_seen(self, record) -> None:
        """One of our records in the directory: never sign a seq at or below it again."""
        last = self.own_last
        if last is not None and record.seq <= last.seq:
            if record.data == last.data:
                self.own_seen.add(record.data)
            return  # ours, superseded (the history keeps them)
        ours = {k.public.signing_kid: k.public for k in (self.keys,) + tuple(self.config.previous_keys)}
        if self.own_last is not None:
            ours.update(self.own_last.signing_keys)
        if not keyring.signed_by(record, ours):
            raise keyring.KeyRecordError(f"a record for {record.org} (ourselves) signed by none of our keys: "
                                         "someone publishes in our name")
        self.own_seen.add(record.data)
        self.own_seq_seen = max(self.own_seq_seen, record.seq)

    def _refuse(self, publication: int, topic: str, message: str, args) -> None:
        self.counts["refused"] += 1
        self.refusals = (self.refusals + [{"publication": publication, "topic": topic, "message": message}])[-10:]
        log.warn("key directory: refused the record of publication {publication} on {topic}: {message}",
                 publication=publication, topic=topic, message=message)
        payload = json.dumps(list(args) if isinstance(args, (list, tuple)) else args, default=repr)[:65536]
        item = Quarantined(publication, topic, KEY_RECORD_REFUSED, message[:500], self.clock(),
                           payload.encode("utf8"))
        self.db.write([item], {}).addErrback(lambda f: log.failure("cannot quarantine a key record", f))

    # ------------------------------------------------------------ ours

    def own_record(self) -> keyring.KeyRecord | None:
        """Our record as the configuration has it now; None when the last one says the same."""
        retired = set(self.config.retired_keys)
        previous = [k for k in self.config.previous_keys
                    if not {k.public.signing_kid, k.public.encryption_kid} & retired]
        ours = {kid for k in self.config.previous_keys for kid in (k.public.signing_kid, k.public.encryption_kid)}
        last = self.own_last
        if last is not None:
            ours |= {kid for k in (last.current,) + last.previous for kid in (k.signing_kid, k.encryption_kid)}
        gone = (set(last.retired) if last else set()) | (ours & retired)
        current = self.keys.public
        if last is not None and (_pairs([last.current, *last.previous]), last.retired) == (
                _pairs([current] + [k.public for k in previous]), frozenset(gone)):
            return None
        seq = max(last.seq if last else 0, self.own_seq_seen) + 1
        data = keyring.build(self.config.org, seq, round(self.clock(), 3), current, [k.public for k in previous],
                             gone)
        return keyring.parse_event([keyring.sign(data, [self.keys] + previous)], self.config.org)

    @defer.inlineCallbacks
    def publish_own(self, session):
        record = self.own_record()
        if record is not None:
            yield self.db.call("save_key_record", self.config.org, record.seq, json.dumps(record.event()),
                               self.clock())
            self.own_last = record
        elif self.own_last.data in self.own_seen:
            return  # the router's history has it
        record = self.own_last
        topic = self.prefix + self.config.org
        yield session.publish(topic, record.event(), options=PublishOptions(acknowledge=True))
        self._own_seen(record)
        self.counts["published"] += 1
        log.info("key directory: published our key record seq {seq} on {topic} (signing key {kid})",
                 seq=record.seq, topic=topic, kid=record.current.signing_kid)

    def describe(self) -> dict:
        return {"topic": self.prefix + "<organisation>", "trust": self.config.directory_trust, **self.counts,
                "published_seq": self.own_last.seq if self.own_last else None,
                "organisations": self.book.describe(), "last_refusals": list(self.refusals)}


def _pairs(keys) -> list:
    return [(k.encryption, k.signing) for k in keys]
