"""Testaments that outlive the node their session was on (the cluster view's
second half; the meta API is in :mod:`.view`).

Theory of operation
-------------------
A session's testaments are written to the JetStream KV bucket
``<prefix>_testaments`` under ``<node>.<session ID>`` whenever they change
(``add_testament``/``flush_testaments`` answer once the write is
acknowledged), and deleted after its own node published them when it left.
When a node is declared gone, each survivor that has been connected to NATS
for a whole TTL pings it (``<prefix>.node.<name>``); if nothing answers it
claims the dead node's entries one by one with a compare-and-set update
(``claim`` = the survivor), so exactly one survivor gets each; it publishes
them through its broker (reaching every node's subscribers as any
publication does) and deletes the entry.  Entries a dead claimer held are
claimed again when it is declared gone.  A node starting with the name of an
earlier process (another *incarnation*) claims that process's entries itself.
A node that comes back after a survivor published its testaments (a
partition longer than the TTL) finds the entry deleted and drops its own
copy, so they are published once.

While NATS is away a node keeps its testaments and answers ``add_testament``
at once; it writes them when NATS is back.  Without JetStream on the NATS
server testaments are published by their own node only (logged once).

Wire format (msgpack): a testament entry is ``[1, realm, session_id, [node,
incarnation], claim, {scope: [PUBLISH as a WAMP message list]}, authid,
authrole]`` with ``claim`` nil or ``[node, incarnation]`` of the survivor
publishing it.  Pings (is a node alive, under which incarnation) are meta
questions of :mod:`.view`.
"""

import msgpack
from autobahn.wamp import message as m
from nats.js import errors as js_errors
from twisted.internet import task
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..core import errors, meta
from ..core.procedures import PENDING, ProcedureError
from . import subjects
from .bridge import NotConnected

log = Logger(namespace="relayrouter.cluster")

WIRE_VERSION = 1
# One session's testaments in KV, serialized: well below NATS' default max_payload (1 MiB).
MAX_ENTRY_BYTES = 512 * 1024
PURGE_EVERY = 600.0  # seconds between purges of old delete markers in the testament bucket


class _Stored:
    """One local session's testaments as written to KV."""

    __slots__ = ("realm", "session", "in_kv", "writing", "dirty", "waiting")

    def __init__(self, realm, session) -> None:
        self.realm = realm
        self.session = session
        self.in_kv = False  # the last write that succeeded put them there
        self.writing = False
        self.dirty = False  # changed since the last write started
        self.waiting: list = []  # add/flush calls answered when the next write is done

class Testaments:
    """This node's sessions' testaments in JetStream KV, and those of gone nodes published here."""

    def __init__(self, cluster, view) -> None:
        self.cluster = cluster
        self.view = view  # its realms, its incarnation, its pings
        self.bridge = cluster.bridge
        self.reactor = cluster.reactor
        config = self.config = cluster.config
        self.node = config.node
        self.incarnation = view.incarnation
        self.counters = cluster.counters  # testaments_published_for_others
        self._bucket = subjects.bucket_name(config.subject_prefix, "testaments")
        self._stored: dict[str, _Stored] = {}  # KV key -> a local session's testaments
        self._kv_ready = False  # the bucket is there and NATS connected
        self._said_no_kv = False
        self._said_twin = False
        self._connected_since = None
        self._suspects: set = set()  # nodes declared gone whose testaments are not handled yet
        self._loop_kv: dict = {}  # bucket -> nats KeyValue, touched on the NATS loop thread only
        cluster.node_listeners.append(self._node_event)
        cluster.state_listeners.append(self._nats_state)
        self._last_tick = None
        self._watch = task.LoopingCall(self._tick)
        self._watch.clock = self.reactor
        self._purge = task.LoopingCall(self._purge_markers)
        self._purge.clock = self.reactor

    def start(self) -> None:
        self._watch.start(self.config.heartbeat_interval, now=False)
        self._purge.start(PURGE_EVERY, now=False)

    def stop(self) -> None:
        for loop in (self._watch, self._purge):
            if loop.running:
                loop.stop()

    def stored_in_kv(self) -> int:
        return sum(1 for stored in self._stored.values() if stored.in_kv)

    # --------------------------------------------------- testaments: storing

    def add_testament(self, call):
        meta.add_testament(call)  # checks and keeps it on the session, or raises
        session = call.session
        size = len(self._entry(_Stored(call.realm, session)))
        if size > MAX_ENTRY_BYTES:
            scope = meta.testament_scope(call.kwargs)
            session.testaments[scope].pop()  # the one just added
            if not session.testaments[scope]:
                del session.testaments[scope]
            raise ProcedureError(errors.INVALID_ARGUMENT,
                                 f"this session's testaments would take {size} bytes; in a cluster they are kept "
                                 f"in NATS, at most {MAX_ENTRY_BYTES} bytes per session")
        return self._changed(call.realm, session, call)

    def flush_testaments(self, call):
        meta.flush_testaments(call)
        return self._changed(call.realm, call.session, call)

    def testaments_published(self, realm, session) -> None:
        """The core published a leaving session's testaments here: nobody else must."""
        self._changed(realm, session)

    def _key(self, session) -> str:
        return f"{self.node}.{session.session_id}"

    def _changed(self, realm, session, call=None):
        key = self._key(session)
        stored = self._stored.get(key)
        if stored is None:
            if not session.testaments:
                return None  # nothing was stored, nothing to store
            stored = self._stored[key] = _Stored(realm, session)
        stored.dirty = True
        if not self._kv_ready:
            return None  # kept here; written when NATS (and its JetStream) is back
        if call is not None:
            stored.waiting.append(call)
        self._write(key, stored)
        return PENDING if call is not None else None

    def _write(self, key: str, stored: _Stored) -> None:
        if stored.writing or not stored.dirty:
            return
        stored.dirty = False
        calls, stored.waiting = stored.waiting, []
        testaments = stored.session.testaments
        if not testaments and not stored.in_kv:
            self._stored.pop(key, None)
            _answer_all(calls)
            return
        stored.writing = True
        value = self._entry(stored) if testaments else None
        d = self.bridge.run(self._kv_write, key, value)
        d.addBoth(self._written, key, stored, calls, value is not None)

    def _entry(self, stored: _Stored) -> bytes:
        session = stored.session
        testaments = {scope: [publish.marshal() for publish in publishes]
                      for scope, publishes in session.testaments.items() if publishes}
        return msgpack.packb([WIRE_VERSION, stored.realm.name, session.session_id, [self.node, self.incarnation],
                              None, testaments, session.authid, session.authrole], use_bin_type=True)

    def _written(self, outcome, key: str, stored: _Stored, calls: list, present: bool) -> None:
        stored.writing = False
        if isinstance(outcome, Failure):
            stored.dirty = True  # written again when NATS is back
            if outcome.check(NotConnected) or not self.bridge.connected:
                self._no_kv(outcome)
            else:
                log.warn("cluster: the testaments of session {session} could not be written to NATS ({error}); "
                         "kept on this node, written again at the next reconnect",
                         session=stored.session.session_id, error=outcome.getErrorMessage())
        else:
            stored.in_kv = present
        _answer_all(calls)  # kept on this node in any case
        if isinstance(outcome, Failure):
            return
        if stored.dirty and self._kv_ready:
            self._write(key, stored)
        elif not stored.dirty and not present and self._stored.get(key) is stored:
            del self._stored[key]

    def _no_kv(self, failure: Failure) -> None:
        self._kv_ready = False
        if not self._said_no_kv:
            self._said_no_kv = True
            log.warn("cluster: testaments cannot be kept in NATS JetStream ({error}); until they can, this "
                     "node's testaments are lost if it dies (said once)", error=failure.getErrorMessage())

    async def _kv(self, js, bucket: str):
        kv = self._loop_kv.get(bucket)
        if kv is None:
            kv = self._loop_kv[bucket] = await js.key_value(bucket)
        return kv

    async def _kv_write(self, nc, js, key: str, value: bytes | None) -> None:
        kv = await self._kv(js, self._bucket)
        if value is None:
            await kv.delete(key)
        else:
            await kv.put(key, value)

    # -------------------------------------------- testaments: NATS comes back

    def _nats_state(self, state: str, text: str) -> None:
        if state in ("connected", "reconnected"):
            self._connected_since = self.reactor.seconds()
            self._resync()
        elif state in ("disconnected", "unreachable", "closed"):
            self._connected_since = None
            self._kv_ready = False

    def _resync(self) -> None:
        d = self.bridge.run(self._prepare, [k for k, s in self._stored.items() if s.in_kv])
        d.addCallbacks(self._prepared, self._no_kv)

    async def _prepare(self, nc, js, stored_keys: list) -> tuple[set, set]:
        """Make the bucket (idempotent); which of ``stored_keys`` a survivor took, and
        which are not there at all (the NATS server lost its store)."""
        kv = await self.cluster.buckets.open(nc, js, self._bucket,
                                             description="relayrouter: testaments of live sessions")
        self._loop_kv[self._bucket] = kv
        taken, missing = set(), set()
        for key in stored_keys:
            try:
                entry = await kv.get(key)
            except js_errors.KeyNotFoundError as e:
                # A delete marker: a survivor published them; none: never there, or lost.
                (taken if e.op is not None else missing).add(key)
                continue
            if msgpack.unpackb(entry.value, raw=False)[4] is not None:  # claimed: being published
                taken.add(key)
        return taken, missing

    def _prepared(self, found: tuple) -> None:
        taken, missing = found
        self._kv_ready = self.bridge.connected
        if self._said_no_kv:
            self._said_no_kv = False
            log.info("cluster: testaments are kept in NATS JetStream again")
        for key, stored in list(self._stored.items()):
            if key in taken:
                log.warn("cluster: another node published the testaments of session {session} while this node "
                         "was cut off or stalled; they will not be published again",
                         session=stored.session.session_id)
                stored.session.testaments = {}
                stored.in_kv = False
                stored.dirty = True
            elif key in missing or not stored.in_kv:
                stored.dirty = True  # written during the outage, or lost with the server's store
            self._write(key, stored)
        # Entries of an earlier process with this node name are ours to publish,
        # unless another process runs under this name now (a misconfiguration).
        d = self.view.ping(self.node)
        d.addCallbacks(self._pinged_self, self._no_kv)

    def _pinged_self(self, answers: dict) -> None:
        if answers:
            if not self._said_twin:
                self._said_twin = True
                log.error("cluster: another process runs as node {node} too; node names must be unique "
                          "(cluster.node): until it is renamed, testaments of an earlier process named {node} "
                          "are not published by this one", node=self.node)
            return
        self._claim_from(self.node, self.incarnation)

    # ------------------------------------------- testaments: a node is gone

    def _node_event(self, event: str, node: str) -> None:
        if event == "gone":
            self._suspects.add(node)
            self._check_suspects()
        elif event == "up":
            self._suspects.discard(node)

    def _tick(self) -> None:
        now = self.reactor.seconds()
        stalled = self._last_tick is not None and now - self._last_tick > self.config.heartbeat_ttl
        self._last_tick = now
        if stalled and self._kv_ready:
            # Frozen (stopped, swapped out) longer than the TTL: the others may
            # have declared this node gone and published its testaments.
            log.warn("cluster: node {node} did not run for more than heartbeat_ttl ({ttl:g} s); checking "
                     "whether other nodes published its sessions' testaments meanwhile", node=self.node,
                     ttl=self.config.heartbeat_ttl)
            self._connected_since = now  # judge the others only after hearing them for a TTL again
            self._resync()
        self._check_suspects()

    def _check_suspects(self) -> None:
        # Only a node that has heard the whole cluster for a TTL may judge it:
        # one cut off from NATS finds every other node silent.
        since = self._connected_since
        if not self._suspects or not self._kv_ready or since is None:
            return
        if self.reactor.seconds() - since < self.config.heartbeat_ttl:
            return
        live = set(self.cluster.live_nodes())
        for node in sorted(self._suspects):
            self._suspects.discard(node)
            if node not in live:
                d = self.view.ping(node)
                d.addCallbacks(self._pinged, self._no_kv, callbackArgs=(node,))

    def _pinged(self, answers: dict, node: str) -> None:
        self._claim_from(node, answers.get(node))  # alive under that incarnation: only earlier ones' entries

    def _claim_from(self, node: str, alive_incarnation) -> None:
        d = self.bridge.run(self._claim, node, alive_incarnation, frozenset(self.view.realms))
        d.addCallbacks(self._publish_claimed, self._no_kv, callbackArgs=(node,))

    async def _claim(self, nc, js, node: str, alive_incarnation, realms: frozenset) -> list:
        """Take, by compare-and-set, the entries ``node`` holds (as owner or claimer) under
        another incarnation than ``alive_incarnation`` (None: any)."""
        kv = await self._kv(js, self._bucket)
        try:
            keys = await kv.keys()
        except js_errors.NoKeysError:
            return []
        claimed = []
        for key in keys:
            try:
                entry = await kv.get(key)
            except js_errors.KeyNotFoundError:
                continue  # deleted meanwhile
            record = msgpack.unpackb(entry.value, raw=False)
            holder = record[4] if record[4] is not None else record[3]
            if record[1] not in realms or holder[0] != node or holder[1] == alive_incarnation:
                continue
            record[4] = [self.node, self.incarnation]
            try:
                await kv.update(key, msgpack.packb(record, use_bin_type=True), last=entry.revision)
            except js_errors.KeyWrongLastSequenceError:
                continue  # another survivor took it
            claimed.append((key, record))
        return claimed

    def _publish_claimed(self, claimed: list, node: str) -> None:
        from . import RemotePublisher

        for key, record in claimed:
            version, realm_name, session_id, owner, claim, testaments, authid, authrole = record[:8]
            realm = self.view.realms[realm_name]
            try:
                parsed = {scope: [m.Publish.parse(raw) for raw in raws] for scope, raws in testaments.items()}
            except Exception as e:
                log.warn("cluster: testaments of session {session} (node {node}) cannot be read ({error}); "
                         "dropped", session=session_id, node=owner[0], error=str(e))
                parsed = {}
            meta.publish_testaments(realm.broker, RemotePublisher(session_id, authid, authrole), parsed)
            count = sum(len(p) for p in parsed.values())
            self.counters["testaments_published_for_others"] += count
            log.info("cluster: published {count} testament(s) of session {session} of node {node}, which is gone",
                     count=count, session=session_id, node=owner[0])
            self.bridge.run(self._kv_write, key, None).addErrback(self._no_kv)

    def _purge_markers(self) -> None:
        if self._kv_ready:
            self.bridge.run(self._purge_deletes).addErrback(self._no_kv)

    async def _purge_deletes(self, nc, js) -> None:
        kv = await self._kv(js, self._bucket)
        await kv.purge_deletes(olderthan=30 * 60)


def _answer_all(calls: list) -> None:
    for call in calls:
        call.result()
