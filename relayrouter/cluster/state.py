"""State shared by the nodes of a cluster, kept in JetStream key-value buckets.

Theory of operation
-------------------
Four buckets, named ``<subject prefix with . as _>_<what>`` (history 1, file
storage), hold what every node must agree on:

==========  ================================  ==========================================
bucket      key                               value (msgpack, first WIRE_VERSION)
==========  ================================  ==========================================
``deny``    sha256(claim NUL value), hex      ``[1, node, claim, value, expires_at, reason]``
``tickets`` sha256(ticket), hex               ``[1, node, realm, authid, authrole, claims,
                                              token_expires_at, ticket_expires_at]``
``retained`` sha256(realm NUL topic), hex     ``[1, node, realm, topic, event]``: ``event`` the
                                              bytes of the event wire format (see the package)
``tenants`` the tenant name                   ``[1, node, template, created]``
==========  ================================  ==========================================

A removal is a KV delete (a delete marker), so a node catching up learns of
it.  Keys are hashes, never a ticket nor a claim value in a subject.

Every NATS operation goes through ``Cluster.bridge.run`` (on the NATS loop's
thread: :mod:`.state_loop`); everything else here runs on the reactor.  On each (re)connection
the node *resyncs*: it opens the buckets (creating them when missing), starts
one watch per bucket (the current value of every key, then each change as it
is written), reconciles its own state with the snapshot, then writes what it
changed locally while it was cut off.  Until that is done ``synced`` is
False and ``/ready`` says so.  Watches of an earlier connection are stopped
and their late deliveries ignored (one ``generation`` per resync).

Rules of reconciliation (JetStream is the authority; what this node did while
it could not reach it is merged in by these rules):

* deny list: an entry in the bucket is applied here (sessions carrying it
  end); a delete marker lifts it here; an entry here that the bucket has
  never seen is written to it.  Additions made while cut off are always
  written on resync; a removal made while cut off is written only if the
  entry did not change in the bucket meanwhile (expected revision), so a
  denial is never lost to a stale removal.  Expired entries are deleted from
  the bucket by the node that finds them.
* one-time tickets: no watch.  Minting writes the ticket's hash and grant;
  joining anywhere reads it and deletes it *with the revision read*, so of
  two joins with one ticket JetStream lets exactly one delete succeed.
* retained events: the bucket's order (JetStream's stream sequence) decides
  which is the latest of a topic; every node keeps what the watch delivers.
  One published while cut off is written on resync only if the topic's entry
  did not change meanwhile (else the bucket's wins, here too).
* tenants: created and deleted on every node as the bucket says; a tenant
  here that the bucket never saw is written to it.  Creating or deleting one
  is refused while the node is not synced.
"""

import hashlib

import msgpack
from autobahn.wamp import message as m
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..auth.onetime import Grant
from ..core.broker import Publication
from ..core.revocation import DenyListError
from . import _UNDISCLOSED, RemotePublisher, subjects
from .bridge import NotConnected
from .state_loop import DENY, RETAINED, TENANTS, TICKETS, WATCHED, LoopSide, delete, get, lost_race, patiently
from .state_loop import put, take

log = Logger(namespace="relayrouter.cluster")

WIRE_VERSION = 1
# A change JetStream did not take while connected (a bucket electing its leader) is written again after this.
REWRITE_WAIT = 0.5
# Then a whole resync (it makes a deleted bucket anew); an election after a NATS server died
# can last that long, and a resync meanwhile would leave the node unsynced for no gain.
REWRITES_BEFORE_RESYNC = 20


class Unavailable(Exception):
    """The cluster's state cannot be reached now; the message says what to do."""


def bucket_names(prefix: str) -> dict[str, str]:
    return {what: subjects.bucket_name(prefix, what) for what in (DENY, TICKETS, RETAINED, TENANTS)}


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf8")).hexdigest()


def deny_key(claim: str, value: str) -> str:
    return _hash(claim, value)


def retained_key(realm: str, topic: str) -> str:
    return _hash(realm, topic)


def ticket_key(digest: bytes) -> str:
    return digest.hex()


def decode_event(data: bytes):
    """(topic, Publication, publication ID) from the event wire format of the package."""
    (version, publication_id, topic, args, kwargs, payload, publisher, ppt, receivers,
     enc) = msgpack.unpackb(data, raw=False)[:10]
    enc_algo, enc_key, enc_serializer = enc if enc is not None else (None, None, None)
    msg = m.Publish(0, topic, args=args, kwargs=kwargs, payload=payload, retain=True,
                    enc_algo=enc_algo, enc_key=enc_key, enc_serializer=enc_serializer,
                    **(receivers or {}))
    source = RemotePublisher(*publisher) if publisher is not None else _UNDISCLOSED
    return topic, Publication(msg, source, publisher is not None, ppt), publication_id


def publication_id_of(data: bytes) -> int:
    """The publication ID of an event in the wire format, without building its message."""
    return msgpack.unpackb(data, raw=False)[1]


# ------------------------------------------------------------------ reactor


class SharedState:
    def __init__(self, cluster, router, security, tenancy=None) -> None:
        self.cluster = cluster
        self.router = router
        self.reactor = cluster.reactor
        self.node = cluster.config.node
        self.names = bucket_names(cluster.config.subject_prefix)
        self._side = LoopSide(self.names, cluster.buckets)
        self.synced = False
        self.counters = cluster.counters  # denials_out/in, tickets_*, retained_*, tenants_*, resyncs
        self._generation = 0  # of the watches: deliveries of an older one are ignored
        self._attempt = 0  # of the syncs (resync or resume): the outcome of an older one is ignored
        self._watching = False  # the current generation's watches delivered their snapshot
        self._lost_at = None  # when the connection was lost, while it is away
        self._said_failure = False
        self._retry = None
        self._rewrites_failed = 0  # pending changes written again in a row without success
        # Local changes the bucket has not taken yet: (what, key) -> (value or None, expected revision).
        self._pending: dict[tuple[str, str], tuple] = {}
        # The last revision seen of each key of the watched buckets.
        self._revisions: dict[str, dict[str, int]] = {what: {} for what in WATCHED}
        # Retained events of the whole bucket (also of realms not on this node yet), newest last:
        # realm -> {topic: (key, event bytes)}; and key -> (realm, topic).
        self._retained: dict[str, dict[str, tuple[str, bytes]]] = {}
        self._retained_keys: dict[str, tuple[str, str]] = {}
        self._evicted_seen: dict[str, int] = {}  # realm -> its retained_events_evicted last looked at
        # Retained events this node took out of the bucket, until the watch brings the removal:
        # key -> publication ID; the echo of their own put, if it comes after, is not applied.
        self._taken_back: dict[str, int] = {}
        self._applying = False
        self._tickets_open = False  # the tickets bucket was opened once (the handle outlives reconnections)
        self.guard = security.guard
        self.guard.revocation_listeners.append(self._revoked)
        self.guard.unrevocation_listeners.append(self._unrevoked)
        security.share_tickets(self)
        self.tenancy = tenancy
        if tenancy is not None:
            tenancy.listeners.append(self._tenant_changed)
            tenancy.check = self._tenant_check
        cluster.state_listeners.append(self._nats_state)

    def stop(self) -> None:
        """The node is stopping: what the watches still deliver (already on its way to the
        reactor while NATS closes) is not applied, nor written again; the deny list's, the
        tenants' and the retained events' stores close right after this."""
        self.synced = False
        self._attempt += 1
        self._generation += 1
        self._watching = False
        self._cancel_retry()

    # ------------------------------------------------------------ sync

    def problem(self) -> str | None:
        if self.synced or not self.cluster.connected:
            return None  # not connected: the cluster says so itself
        return ("cluster: shared state (deny list, tickets, retained events, tenants) is not in sync "
                "with JetStream yet (local routing goes on; see the log)")

    def _nats_state(self, state: str, text: str) -> None:
        if state == "reconnected" and self._resumable():
            self._resume()
        elif state in ("connected", "reconnected"):
            self._resync()
        elif state in ("disconnected", "unreachable"):
            self.synced = False  # writes wait in _pending; the watches are kept for a quick reconnection
            self._attempt += 1
            self._cancel_retry()  # a rewrite now would resync, and lose the watches
            if self._lost_at is None:
                self._lost_at = self.reactor.seconds()
        elif state == "closed":
            self.synced = False
            self._attempt += 1
            self._generation += 1  # what the old watches still deliver is ignored
            self._watching = False

    def _resumable(self) -> bool:
        """The connection came back within cluster.resume_window and the watches were complete."""
        lost_at, self._lost_at = self._lost_at, None
        return (self._watching and lost_at is not None
                and self.reactor.seconds() - lost_at <= self.cluster.config.resume_window)

    def _resume(self) -> None:
        """Back on NATS soon after losing it (a failover to another server): the watches are
        kept, as they are on a node that stayed connected when a server dies (nats-py makes a
        watch's consumer again from the last revision it saw, missed changes and all), and
        the node is in sync once what changed here meanwhile is written.  Meanwhile each
        watch is asked to show a live consumer within cluster.resume_limit; one that cannot (its
        bucket deleted, or without a leader that long): a whole resync."""
        self._attempt += 1
        attempt = self._attempt
        self._cancel_retry()
        started = self.reactor.seconds()
        d = self._flush(patient=True)
        d.addCallback(self._kept, attempt)
        d.addErrback(self._resume_failed, attempt)
        probe = self.cluster.bridge.run(self._side.resume, self.cluster.config.resume_limit)
        probe.addCallback(self._resumed, attempt, started)
        probe.addErrback(self._resume_failed, attempt)

    def _kept(self, _, attempt: int) -> None:
        if attempt != self._attempt:
            return
        self.synced = True
        self._said_failure = False
        self.counters["state_resumes"] += 1
        log.info("cluster: node {node} kept its watches of the shared state across the reconnection",
                 node=self.node)

    def _resumed(self, kept: bool, attempt: int, started: float) -> None:
        if attempt != self._attempt:
            return
        if kept:
            log.info("cluster: node {node}'s watches of the shared state resumed {seconds:.2f} s after "
                     "the reconnection", node=self.node, seconds=self.reactor.seconds() - started)
            return
        log.warn("cluster: node {node}'s watches of the shared state did not resume within {patience:g} s; "
                 "making them anew", node=self.node, patience=self.cluster.config.resume_limit)
        self._resync()

    def _resume_failed(self, failure, attempt: int) -> None:
        if attempt != self._attempt:
            return
        if not failure.check(NotConnected):
            log.info("cluster: node {node} could not resume its shared state ({error}); resyncing",
                     node=self.node, error=failure.getErrorMessage() or failure.type.__name__)
            self._resync()

    def _resync(self) -> None:
        self.synced = False
        self._watching = False
        self._lost_at = None
        self._generation += 1
        self._attempt += 1
        generation = self._generation
        attempt = self._attempt
        self._cancel_retry()

        def deliver(what, key, revision, value):  # loop thread
            self.reactor.callFromThread(self._update, generation, what, key, revision, value)

        d = self.cluster.bridge.run(self._side.open, deliver)
        d.addCallback(self._reconcile, attempt)
        d.addErrback(self._resync_failed, attempt)

    def _cancel_retry(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _resync_failed(self, failure, attempt: int) -> None:
        if attempt != self._attempt:
            return
        if not self._said_failure:
            self._said_failure = True
            log.warn("cluster: node {node} cannot sync its shared state with JetStream ({error}); retrying "
                     "(is JetStream enabled on the NATS server?)", node=self.node,
                     error=failure.getErrorMessage() or failure.type.__name__)
        if self.cluster.connected:
            self._retry = self.reactor.callLater(max(self.cluster.config.reconnect_wait, 0.5), self._resync)

    def _reconcile(self, snapshots: dict, attempt: int) -> defer.Deferred | None:
        self._tickets_open = True
        if attempt != self._attempt:
            return None
        for what in WATCHED:
            self._revisions[what] = {key: revision for key, (revision, _) in snapshots[what].items()}
        self._reconcile_tenants(snapshots[TENANTS])  # first: retained events and denials may be theirs
        self._reconcile_deny(snapshots[DENY])
        self._reconcile_retained(snapshots[RETAINED])
        d = self._flush()
        d.addCallback(self._synced, attempt)
        d.addErrback(self._resync_failed, attempt)
        return d

    def _synced(self, _, attempt: int) -> None:
        if attempt != self._attempt:
            return
        self.synced = True
        self._watching = True
        self._said_failure = False
        self.counters["state_resyncs"] += 1
        log.info("cluster: node {node} synced its shared state with JetStream ({deny} denials, {tenants} "
                 "tenants, {retained} retained events)", node=self.node,
                 deny=len(self.guard.denylist.entries_by_key),
                 tenants=len(self.tenancy.tenants) if self.tenancy is not None else 0,
                 retained=len(self._retained_keys))

    @defer.inlineCallbacks
    def _flush(self, patient: bool = False):
        """Write what changed here while the bucket could not take it (``patient``: each
        write tried again while its bucket elects a leader, for at most ELECTION_PATIENCE)."""
        bridge = self.cluster.bridge
        run = (lambda *args: bridge.run(patiently, *args)) if patient else bridge.run
        for (what, key), (value, last) in list(self._pending.items()):
            try:
                if value is None:
                    yield run(delete, self._side, what, key, last)
                else:
                    yield run(put, self._side, what, key, value, last)
            except Exception as e:
                if not lost_race(Failure(e)):
                    raise
                # Changed in the bucket meanwhile: the bucket's wins, here too.
                revision, current = yield run(get, self._side, what, key)
                del self._pending[(what, key)]
                self._update(self._generation, what, key, revision, current)
                continue
            self._pending.pop((what, key), None)

    def _write(self, what: str, key: str, value: bytes | None, last: int | None = None) -> None:
        """A local change to the bucket now, or at the next resync if it cannot take it."""
        if not self.synced:
            self._keep(what, key, value, last)
            return
        run = put if value is not None else delete
        args = (what, key, value, last) if value is not None else (what, key, last)
        d = self.cluster.bridge.run(run, self._side, *args)
        d.addErrback(self._write_failed, what, key, value, last)

    def _keep(self, what, key, value, last) -> None:
        # A removal made while cut off applies only if the entry did not change meanwhile;
        # an addition of the deny list always applies.
        if value is None and last is None:
            last = self._revisions.get(what, {}).get(key)
        if value is not None and what != DENY and last is None:
            last = self._revisions.get(what, {}).get(key, 0)
        self._pending[(what, key)] = (value, last)

    def _write_failed(self, failure, what, key, value, last) -> None:
        if lost_race(failure):
            return  # the bucket changed meanwhile; its change reaches us through the watch
        if not failure.check(NotConnected):
            log.warn("cluster: JetStream did not take a change of {what} ({error}); it is written again "
                     "shortly", what=what, error=failure.getErrorMessage())
        self._keep(what, key, value, last)
        self._write_again_soon()

    def _write_again_soon(self) -> None:
        """Still connected (a timeout, a bucket electing its leader): write what is pending
        again soon rather than at the next reconnection, which may never come; a lost
        connection resyncs on reconnecting anyway."""
        if not self.synced:
            return  # the sync under way (resync or resume) writes what is pending when it ends
        if self.cluster.connected and not (self._retry is not None and self._retry.active()):
            self._retry = self.reactor.callLater(REWRITE_WAIT, self._rewrite)

    def _rewrite(self) -> None:
        if not self.synced or self._rewrites_failed >= REWRITES_BEFORE_RESYNC:
            # The watches are gone too, or the bucket itself may be (an operator deleted it,
            # which looks like an election to a writer): everything again, buckets made anew.
            self._rewrites_failed = 0
            self._resync()
            return
        d = self._flush()
        d.addCallbacks(self._rewritten, self._rewrite_failed)

    def _rewritten(self, _) -> None:
        self._rewrites_failed = 0

    def _rewrite_failed(self, failure) -> None:
        self._rewrites_failed += 1
        self._write_again_soon()

    def _update(self, generation: int, what: str, key: str, revision: int, value) -> None:
        if generation != self._generation or (what, key) in self._pending:
            return
        self._revisions[what][key] = revision
        try:
            if what == DENY:
                self._apply_deny(key, value, revision)
            elif what == RETAINED:
                self._apply_retained(key, value)
            elif what == TENANTS:
                self._apply_tenant(key, value)
        except Exception:
            log.failure("cluster: cannot apply a change of {what} from JetStream", what=what)

    # --------------------------------------------------------- deny list

    def _revoked(self, entry) -> None:
        if self._applying:
            return
        self.counters["denials_out"] += 1
        self._write(DENY, deny_key(entry.claim, entry.value),
                    msgpack.packb([WIRE_VERSION, self.node, entry.claim, entry.value, entry.expires_at,
                                   entry.reason]))

    def _unrevoked(self, claim: str, value: str) -> None:
        if self._applying:
            return
        self.counters["denials_out"] += 1
        self._write(DENY, deny_key(claim, value), None)

    def _local_denials(self) -> dict:
        return {deny_key(e.claim, e.value): e for e in self.guard.denylist.entries()}

    def _reconcile_deny(self, snapshot: dict) -> None:
        local = self._local_denials()
        for key, (revision, value) in snapshot.items():
            if (DENY, key) not in self._pending:
                self._apply_deny(key, value, revision, local)
        for key, entry in local.items():
            if key not in snapshot and (DENY, key) not in self._pending:  # never seen by the bucket
                self._keep(DENY, key, msgpack.packb([WIRE_VERSION, self.node, entry.claim, entry.value,
                                                     entry.expires_at, entry.reason]), None)

    def _apply_deny(self, key: str, value, revision: int, local: dict | None = None) -> None:
        local = self._local_denials() if local is None else local
        if value is None:
            entry = local.get(key)
            if entry is not None:
                self._quietly(self.guard.unrevoke, entry.claim, entry.value)
                self.counters["denials_in"] += 1
                log.info("cluster: the denial of a {claim} was lifted on another node", claim=entry.claim)
            return
        version, node, claim, claimed, expires_at, reason = msgpack.unpackb(value, raw=False)[:6]
        if expires_at <= self.reactor.seconds():
            self._write(DENY, key, None, revision)  # expired: gone from the bucket too (unless renewed)
            return
        here = local.get(key)
        if here is not None and here.expires_at == expires_at and here.reason == reason:
            return  # ours, or already applied
        try:
            _, ended = self._quietly(self.guard.revoke, claim, claimed, expires_at, reason)
        except DenyListError as e:
            log.warn("cluster: node {peer}'s denial of a {claim} cannot apply here: {error}",
                     peer=node, claim=claim, error=str(e))
            return
        self.counters["denials_in"] += 1
        log.info("cluster: denial of a {claim} from node {peer}: {ended} session(s) ended here",
                 peer=node, claim=claim, ended=ended)

    def _quietly(self, fn, *args):
        self._applying = True
        try:
            return fn(*args)
        finally:
            self._applying = False

    # ------------------------------------------------------ one-time tickets

    def put_ticket(self, digest: bytes, grant: Grant, expires_at: float) -> defer.Deferred:
        """True once the bucket holds the ticket, False when NATS is away (not attempted)."""
        value = msgpack.packb([WIRE_VERSION, self.node, grant.realm, grant.authid, grant.authrole,
                               dict(grant.claims or {}), grant.expires_at, expires_at])
        if not self._tickets_open:
            return defer.succeed(False)
        d = self.cluster.bridge.run(patiently, put, self._side, TICKETS, ticket_key(digest), value)

        def stored(_):
            self.counters["tickets_shared"] += 1
            return True

        def failed(failure):
            if failure.check(NotConnected):
                return False
            log.warn("cluster: JetStream did not take a one-time ticket: {error}",
                     error=failure.getErrorMessage() or failure.type.__name__)
            return failure

        return d.addCallbacks(stored, failed)

    def take_ticket(self, digest: bytes, realm: str) -> defer.Deferred:
        """The ticket's Grant if this join used it up, None if unknown, used, expired or for
        another realm; fails with :class:`Unavailable` when the bucket cannot be asked."""
        if not self.cluster.connected or not self._tickets_open:
            self.counters["tickets_unavailable"] += 1
            return defer.fail(Unavailable("this node cannot reach the cluster to check the one-time ticket; "
                                          "try again shortly"))
        d = self.cluster.bridge.run(patiently, take, self._side, ticket_key(digest))

        def taken(value):
            if value is None:
                self.counters["tickets_refused"] += 1
                return None
            (version, node, grant_realm, authid, authrole, claims, token_expires_at,
             expires_at) = msgpack.unpackb(value, raw=False)[:8]
            if self.reactor.seconds() >= expires_at or grant_realm != realm:
                self.counters["tickets_refused"] += 1
                return None
            self.counters["tickets_taken"] += 1
            return Grant(grant_realm, authid, authrole, claims, token_expires_at)

        def failed(failure):
            self.counters["tickets_unavailable"] += 1
            log.warn("cluster: cannot check a one-time ticket with JetStream: {error}",
                     error=failure.getErrorMessage() or failure.type.__name__)
            raise Unavailable("the cluster could not check the one-time ticket; try again shortly")

        return d.addCallback(taken).addErrback(failed)

    # ------------------------------------------------------ retained events

    def retained(self, broker, topic: str, publication_id: int, data: bytes) -> None:
        """A retained publication routed here (its event wire bytes): to the bucket."""
        realm = broker.realm.name
        key = retained_key(realm, topic)
        self._mirror(realm, topic, key, data)
        self.counters["retained_out"] += 1
        self._write(RETAINED, key, msgpack.packb([WIRE_VERSION, self.node, realm, topic, data]))
        self._drop_evicted(broker.realm)

    def _mirror(self, realm: str, topic: str, key: str, data: bytes | None) -> None:
        """Keep the bucket's retained events (of every realm, here or not yet), newest last."""
        topics = self._retained.setdefault(realm, {})
        topics.pop(topic, None)
        if data is None:
            self._retained_keys.pop(key, None)
        else:
            topics[topic] = (key, data)
            self._retained_keys[key] = (realm, topic)

    def _drop_evicted(self, realm) -> None:
        """Topics the realm's max_retained_events pushed out here go from the bucket too."""
        evicted = realm.counters["retained_events_evicted"]
        more = evicted - self._evicted_seen.get(realm.name, 0)
        self._evicted_seen[realm.name] = evicted
        if more <= 0:
            return
        kept = realm.broker.retained
        topics = self._retained.get(realm.name, {})
        for topic, (key, data) in list(topics.items()):  # the oldest first, as the broker evicts
            if topic not in kept:
                self._taken_back[key] = publication_id_of(data)
                self._mirror(realm.name, topic, key, None)
                self._write(RETAINED, key, None)
                more -= 1
                if more == 0:
                    break

    def _reconcile_retained(self, snapshot: dict) -> None:
        ours = {key for (what, key) in self._pending if what == RETAINED}
        # A removal the bucket holds already brings no echo in a new watch: forget it was ours.
        self._taken_back = {key: taken for key, taken in self._taken_back.items() if key in snapshot}
        for key in list(self._retained_keys):
            if key not in snapshot and key not in ours:
                self._apply_retained(key, None)
        for key, (_, value) in sorted(snapshot.items(), key=lambda item: item[1][0]):  # the bucket's order
            if key not in ours:
                self._apply_retained(key, value)

    def _apply_retained(self, key: str, value) -> None:
        taken_back = self._taken_back.pop(key, None)
        if value is not None and taken_back is not None:
            if publication_id_of(msgpack.unpackb(value, raw=False)[4]) == taken_back:
                # The echo of our own put, after we took it back (evicted here, removed from the
                # bucket): applied, it would be retained here again and push out a newer topic,
                # which the bucket keeps and no removal would then follow. Its removal's echo comes next.
                self._taken_back[key] = taken_back
                return
        if value is None:
            known = self._retained_keys.get(key)
            if known is not None:
                realm_name, topic = known
                self._mirror(realm_name, topic, key, None)
                realm = self.router.realms.get(realm_name)
                if realm is not None and realm.broker.cluster is self.cluster:
                    realm.broker.forget_retained(topic)
            return
        version, node, realm_name, topic, data = msgpack.unpackb(value, raw=False)[:5]
        self._mirror(realm_name, topic, key, data)
        realm = self.router.realms.get(realm_name)
        if realm is not None and realm.broker.cluster is self.cluster:
            self._retain_here(realm, data)

    def _retain_here(self, realm, data: bytes) -> None:
        topic, publication, publication_id = decode_event(data)
        here = realm.broker.retained.get(topic)
        if here is not None and here[1] == publication_id:
            return  # published here: keep the local one (it knows its publisher for exclude_me)
        self.counters["retained_in"] += 1
        realm.broker.retain_remote(topic, publication, publication_id)
        self._evicted_seen[realm.name] = realm.counters["retained_events_evicted"]

    def _forget_retained_of(self, realm_name: str) -> None:
        """A tenant deleted: its retained events go, here and (from the node that deleted it) in the
        bucket, as its stored history and mailboxes do."""
        for topic, (key, _) in list(self._retained.get(realm_name, {}).items()):
            self._mirror(realm_name, topic, key, None)
            if not self._applying:
                self._write(RETAINED, key, None)
        self._evicted_seen.pop(realm_name, None)

    def realm_attached(self, realm) -> None:
        """A realm that joined the cluster (a tenant made here or elsewhere): its retained events."""
        for _, data in list(self._retained.get(realm.name, {}).values()):
            self._retain_here(realm, data)

    # ---------------------------------------------------------------- tenants

    def _tenant_check(self) -> str | None:
        if self.synced or self._applying:
            return None
        return ("this node is not in sync with the cluster (NATS/JetStream away or catching up), so tenants "
                "cannot be created or deleted here now; try again shortly or on another node")

    def _tenant_changed(self, kind: str, name: str, template: str | None) -> None:
        if kind == "CREATE":
            realm = self.router.realms[name]
            self.cluster.attach(realm)
            self.realm_attached(realm)
        else:
            self.cluster.detach(name)
            self._forget_retained_of(name)
        if self._applying:
            return
        self.counters["tenants_out"] += 1
        if kind == "CREATE":
            created = self.tenancy.tenants[name]["created"]
            self._write(TENANTS, name, msgpack.packb([WIRE_VERSION, self.node, template, created]))
        else:
            self._write(TENANTS, name, None)

    def _reconcile_tenants(self, snapshot: dict) -> None:
        if self.tenancy is None:
            return
        for name, (_, value) in snapshot.items():
            if (TENANTS, name) not in self._pending:
                self._apply_tenant(name, value)
        for name, tenant in list(self.tenancy.tenants.items()):
            if name not in snapshot and (TENANTS, name) not in self._pending:
                self._keep(TENANTS, name, msgpack.packb([WIRE_VERSION, self.node, tenant["template"],
                                                         tenant["created"]]), 0)

    def _apply_tenant(self, name: str, value) -> None:
        tenancy = self.tenancy
        if tenancy is None:
            return
        if value is None:
            if name in tenancy.tenants:
                self.counters["tenants_in"] += 1
                result = self._quietly(tenancy.delete, name, None)
                log.info("cluster: tenant {tenant} deleted on another node: {n} session(s) closed here",
                         tenant=name, n=result["sessions_closed"])
            return
        version, node, template, created = msgpack.unpackb(value, raw=False)[:4]
        here = tenancy.tenants.get(name)
        if here is not None:
            if here["template"] != template:
                log.warn("cluster: tenant {tenant} is made from template {mine} here but {theirs} on node "
                         "{peer}; this node keeps its own", tenant=name, mine=here["template"],
                         theirs=template, peer=node)
            return
        if name in self.router.realms:
            log.error("cluster: node {peer} made tenant {tenant}, but a configured realm has that name "
                      "here; it is not made on this node", peer=node, tenant=name)
            return
        if template not in tenancy.templates:
            log.error("cluster: node {peer} made tenant {tenant} from template {template}, which this "
                      "node's configuration lacks ([[realm_templates]]); it is not made here",
                      peer=node, tenant=name, template=template)
            return
        self.counters["tenants_in"] += 1
        self._quietly(tenancy.create, name, template)
        log.info("cluster: tenant {tenant} made on node {peer} is made here too", tenant=name, peer=node)
