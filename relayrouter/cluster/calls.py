"""Registrations across nodes: the registration directory seen by the
dealers (CALLs forwarded to the node of the callee they go to are in
:mod:`.forwarding`).

Registrations.  Every clustered realm's dealer holds, in its own index,
every registration of the cluster (from the directory, :mod:`.directory`,
watched into memory): this node's callees are its sessions, the other
nodes' are :class:`RemoteCallee` stand-ins, in the directory's order.  So
the dealer's lookup (exact over prefix over wildcard, longest prefix, ...),
its invoke policies and the meta API (``wamp.registration.*``) answer for
the whole cluster with no NATS round trip.  A REGISTER is confirmed only
once the directory's compare-and-set took it; ``single`` is exclusive and a
shared registration one set across the cluster.  Each node keeps its own
entries true: an entry of this node whose session no longer holds the
registration is removed, a registration this node holds that the directory
lost (a survivor removed it while this node was cut off) is put back, or,
when another node took the procedure meanwhile, revoked here.

Calls.  A CALL whose chosen callee is elsewhere goes to that callee's node:
:mod:`.forwarding` (with its wire formats), which also says which process
runs under each node name.
"""

from collections import Counter

from autobahn.wamp import message as m
from twisted.internet import defer, task
from twisted.logger import Logger

from ..core import errors
from ..core.dealer import CANCELING_FEATURE, PPT_FEATURE, Registration
from ..core.ids import global_id
from . import directory, subjects
from .bridge import NotConnected
from .directory import Directory, NoJetStream, Refused, Value, fixing, joining, without_node
from .forwarding import Forwarding, RemoteCallee
from .turns import Turns

log = Logger(namespace="relayrouter.cluster")

NO_JETSTREAM_RETRY = 10.0  # s between attempts at the directory while the NATS server has no JetStream
REVOCATION_FEATURE = "registration_revocation"


def _flags(session) -> int:
    return ((directory.PPT if session.supports("callee", PPT_FEATURE) else 0)
            | (directory.CANCELING if session.supports("callee", CANCELING_FEATURE) else 0))


def _entry(node: str, session) -> tuple:
    return (node, session.session_id, session.authid, session.authrole, _flags(session))


class Calls:
    """Registrations and calls of this node's clustered realms across the cluster."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.bridge = cluster.bridge
        self.config = cluster.config
        self.reactor = cluster.reactor
        self.node = cluster.config.node
        prefix = cluster.config.subject_prefix
        self.prefix = prefix
        self.directory = Directory(subjects.bucket_name(prefix, "reg"), cluster.buckets)
        self.counters: Counter = Counter()
        self.dealers: dict = {}  # realm name -> Dealer
        # The directory as last seen: key -> Value, and key -> revision applied.
        self.values: dict[str, Value] = {}
        self._names: dict[str, tuple] = {}  # key -> (realm, procedure, match), for every key met
        self._revisions: dict[str, int] = {}
        self._generation = 0  # of the watch; updates of an older one are ignored
        self._snapshot: dict | None = None  # a (re)started watch's first values, until complete
        self.synced = False  # the watch delivered the directory since the last (re)connection
        self._watching = False  # the current watch delivered its snapshot (it may be kept on reconnecting)
        self._lost_at = None  # when the connection was lost, while it is away
        self._inflight: set = set()  # (key, session_id) of REGISTERs the directory has not answered
        self._fixing: dict[str, bool] = {}  # key -> fix again when the running one ends
        self._gone: set = set()  # nodes declared gone (their callees are not routed to)
        self._purging: set = set()  # gone nodes whose entries are being removed
        self.isolated = True  # NATS away: other nodes' callees are not routed to
        self._isolating = None  # the delayed call that isolates this node, while NATS is briefly away
        self._silent: dict[str, float] = {}  # node with entries or calls here, not heard -> since when
        self._watchdog = task.LoopingCall(self._check_silent)
        self._watchdog.clock = cluster.reactor
        self._said_failure = False
        # The NATS server has no JetStream: registrations stay on their node, as
        # before the directory existed, until a watch of the directory works.
        self.local_only = False
        self.forwarding = Forwarding(self)  # CALLs to and from other nodes (cluster/forwarding.py)
        cluster.node_listeners.append(self._node_event)
        cluster.state_listeners.append(self._state)
        self.turns = Turns(self)  # one roundrobin rotation for the whole cluster (cluster/turns.py)

    def attach(self, realm) -> None:
        # Registration IDs at random, also for what registers here alone (no
        # JetStream): they stay unique once they enter the directory.
        realm.dealer._ids = _RandomIds()
        realm.dealer.cluster = self
        realm.dealer.prefer_local = self.config.prefer_local_callees
        self.dealers[realm.name] = realm.dealer

    def start(self) -> None:
        self._watchdog.start(self.config.heartbeat_interval, now=False)

    def stop(self) -> None:
        """A clean stop: this node's entries leave the directory (the bridge waits for it, bounded)."""
        if self._watchdog.running:
            self._watchdog.stop()
        self.turns.stop()
        self._cancel_isolation()
        if not self.bridge.connected:
            return
        self.bridge.run(self.directory.stop_watch).addErrback(lambda _: None)
        mine = self.node
        for name, value in list(self.values.items()):
            if any(c[0] == mine for c in value.callees):
                self._change(name, without_node(mine)).addErrback(lambda _: None)

    # --------------------------------------------------------- registering

    def registering(self, session) -> int:
        """REGISTERs of ``session`` the directory has not answered yet (they count against max_registrations)."""
        sid = session.session_id
        return sum(1 for _, s in self._inflight if s == sid)

    def register(self, dealer, session, msg, match: str, invoke: str) -> bool:
        """REGISTER on a clustered realm: confirmed once the directory took it.
        False: the dealer registers it on this node alone (no JetStream)."""
        if self.local_only:
            return False
        realm = dealer.realm.name
        name = self._name(realm, msg.procedure, match)
        if not self.bridge.connected:
            self._refuse(session, msg, errors.UNAVAILABLE,
                         "cannot register now: the cluster's registration directory is out of reach "
                         "(this node lost NATS); calls to registrations already made go on; retry later")
            return True
        marker = (name, session.session_id)
        self._inflight.add(marker)
        fn = joining(Value(realm, msg.procedure, match, None, invoke, self.reactor.seconds(), ()),
                      _entry(self.node, session))
        d = self._change(name, fn)
        d.addCallbacks(self._registered, self._not_registered,
                       callbackArgs=(dealer, session, msg, name), errbackArgs=(session, msg, name))
        d.addErrback(lambda f: log.failure("cluster: confirming a registration failed", f))
        return True

    def _registered(self, result, dealer, session, msg, name) -> None:
        self._inflight.discard((name, session.session_id))
        revision, value, _, created = result
        if dealer.realm.sessions.get(session.session_id) is not session:
            self._fix(name)  # it left meanwhile: its entry goes again
            return
        registration = self._registration(dealer, value)
        registration.callees.append(session)
        session.registrations.setdefault(registration)
        self._apply(name, revision, value)
        self._sync(name)  # in the directory's order, whatever the watch delivered first
        dealer.confirm(session, msg.request, registration, created)

    def _not_registered(self, failure, session, msg, name) -> None:
        self._inflight.discard((name, session.session_id))
        if failure.check(NoJetStream):
            self._without_jetstream(failure)
            realm = session.realm
            if realm is not None and realm.sessions.get(session.session_id) is session:
                realm.dealer.register(session, msg)  # on this node alone, as without a directory
            return
        if failure.check(Refused):
            self._refuse(session, msg, errors.PROCEDURE_ALREADY_EXISTS, str(failure.value))
        elif failure.check(NotConnected):
            self._refuse(session, msg, errors.UNAVAILABLE,
                         "cannot register now: the cluster's registration directory is out of reach "
                         "(this node lost NATS); retry later")
        else:
            self._failed(failure, "a registration")
            self._refuse(session, msg, errors.UNAVAILABLE,
                         "cannot register now: the cluster's registration directory did not answer; retry later")
        self._fix(name)  # whatever happened on the way, the directory ends as this node holds it

    def _refuse(self, session, msg, uri: str, text: str) -> None:
        if session.realm is not None:
            session.peer.send(m.Error(m.Register.MESSAGE_TYPE, msg.request, uri, args=[text]))

    def dropped(self, dealer, registration) -> None:
        """A session of this node no longer holds ``registration``."""
        self._fix(self._name(dealer.realm.name, registration.uri, registration.match))

    def _name(self, realm: str, procedure: str, match: str) -> str:
        name = directory.key(realm, procedure, match)
        self._names[name] = (realm, procedure, match)
        return name

    def _change(self, name: str, fn):
        self.counters["directory_changes"] += 1
        return self.bridge.run(self.directory.change, name, fn)

    def _fix(self, name: str) -> None:
        """Make this node's entries under ``name`` what its sessions hold; one change per key at a time."""
        if self.local_only:
            return
        if name in self._fixing:
            self._fixing[name] = True
            return
        if not self.bridge.connected:
            return  # the resync after reconnecting does it
        value = self.values.get(name)
        found = self._local(name)
        if found is None and value is None:
            return
        dealer, registration, sessions = found if found is not None else (None, None, [])
        if value is None and not sessions:
            return
        if registration is None:
            template = value
        else:
            template = Value(dealer.realm.name, registration.uri, registration.match, registration.id,
                             registration.invoke, registration.created, ())
        wanted = [_entry(self.node, s) for s in sessions]
        keep = {sid for (key, sid) in self._inflight if key == name}
        self._fixing[name] = False
        d = self._change(name, fixing(self.node, template, wanted, keep))
        d.addCallbacks(self._fixed, self._fix_failed, callbackArgs=(name,), errbackArgs=(name,))
        d.addErrback(lambda f: log.failure("cluster: fixing a directory entry failed", f))

    def _local(self, name: str):
        """(dealer, registration or None, this node's callees) for ``name``; None without a realm here."""
        known = self._names.get(name)
        if known is None:
            return None
        realm, procedure, match = known
        dealer = self.dealers.get(realm)
        if dealer is None:
            return None
        registration = dealer.registrations.get(procedure, match)
        if registration is None:
            return dealer, None, []
        return dealer, registration, _local_callees(registration)

    def _fixed(self, result, name: str) -> None:
        again = self._fixing.pop(name, False)
        revision, value, rejected, _ = result
        self._apply(name, revision, value, deleted=value is None)
        if rejected:
            self._revoke(name, rejected)
        if again:
            self._fix(name)

    def _fix_failed(self, failure, name: str) -> None:
        self._fixing.pop(name, None)
        if not failure.check(NotConnected):
            self._failed(failure, "a directory entry")

    def _revoke(self, name: str, session_ids) -> None:
        """Sessions here whose registration another node took while this one was cut off."""
        found = self._local(name)
        if found is None or found[1] is None:
            return
        dealer, registration, _ = found
        for session in list(registration.callees):
            if type(session) is RemoteCallee or session.session_id not in session_ids:
                continue
            log.warn("cluster: registration of {uri} by session {session} revoked: the cluster's directory "
                     "gave it to another node while this node was cut off", uri=registration.uri,
                     session=session.session_id)
            self.counters["revoked"] += 1
            registration.callees.remove(session)
            session.registrations.pop(registration, None)
            if session.supports("callee", REVOCATION_FEATURE):
                session.peer.send(m.Unregistered(0, registration=registration.id,
                                                 reason=errors.PROCEDURE_ALREADY_EXISTS))
            dealer.realm.observer.unregistered(session, registration, False)
        self._sync(name)

    def _failed(self, failure, what: str) -> None:
        self.counters["directory_failures"] += 1
        if not self._said_failure:
            self._said_failure = True
            log.warn("cluster: the registration directory refused {what}: {error} (said once; counted in "
                     "relayrouter_cluster_directory_total{{kind=\"failures\"}})",
                     what=what, error=failure.getErrorMessage())

    # ------------------------------------------------- the directory's view

    def _state(self, state: str, text: str) -> None:
        if state in ("connected", "reconnected"):
            self._cancel_isolation()
            self._said_failure = False
            self._silent.clear()  # every node gets a whole TTL from this connection to be heard
            self.forwarding.say_hello()
            if self.isolated:
                # Other nodes' callees as last seen, at once: a client failing over to
                # another NATS server finds them there, while the directory's watch
                # restarts (which can take seconds while JetStream elects leaders).
                # The watch's snapshot then corrects what changed meanwhile; nodes
                # that died meanwhile are left out by their silence (_gone).
                self.isolated = False
                for name in list(self.values):
                    self._sync(name)
            lost_at, self._lost_at = self._lost_at, None
            if (state == "reconnected" and self._watching and lost_at is not None
                    and self.reactor.seconds() - lost_at <= self.config.resume_window):
                self._resume_watch()
            else:
                self._restart_watch()
        elif state in ("disconnected", "unreachable", "closed"):
            self.synced = False
            if state == "closed":
                self._watching = False
            elif self._lost_at is None:
                self._lost_at = self.reactor.seconds()
            if state == "closed":
                self._isolate()
            elif not self.isolated and self._isolating is None:
                # A failover to another server reconnects within reconnect_wait: other
                # nodes' callees stay routed to meanwhile (what is sent waits in the
                # client's buffer); after it, local callees only while NATS is away.
                self._isolating = self.reactor.callLater(self.config.reconnect_wait, self._isolate)

    def _isolate(self) -> None:
        self._isolating = None
        if self.isolated or self.bridge.connected:
            return
        self.isolated = True
        for name in list(self.values):
            self._sync(name)  # local callees only while NATS is away

    def _cancel_isolation(self) -> None:
        if self._isolating is not None and self._isolating.active():
            self._isolating.cancel()
        self._isolating = None

    def _resume_watch(self) -> None:
        """Back on NATS soon after losing it: the directory's watch is kept if it resumes
        (nats-py makes its consumer again from the last revision seen), else started again."""
        generation = self._generation

        def resumed(kept: bool) -> None:
            if generation != self._generation or self.synced or not self.bridge.connected:
                return
            if kept:
                self.synced = True
                self.counters["directory_resumes"] += 1
                self._recheck()
            else:
                self._restart_watch()

        self.bridge.run(self.directory.resume, self.config.resume_limit).addCallbacks(resumed, lambda f: resumed(False))

    def _recheck(self) -> None:
        """This node's entries made what its sessions hold now: what they registered or left
        while NATS was away (a resync's snapshot does it for a watch started again)."""
        names = set(self.values)
        for dealer in self.dealers.values():
            for registration in list(dealer.registrations_by_id.values()):
                if _local_callees(registration):
                    names.add(self._name(dealer.realm.name, registration.uri, registration.match))
        for name in names:
            found = self._local(name)
            local = {s.session_id for s in found[2]} if found is not None else set()
            value = self.values.get(name)
            mine = {c[1] for c in value.callees if c[0] == self.node} if value is not None else set()
            if local != mine:
                self._fix(name)

    def _restart_watch(self) -> None:
        self._watching = False
        self._generation += 1
        generation = self._generation
        self._snapshot = {}
        call = self.reactor.callFromThread

        def deliver(item) -> None:
            call(self._watched, generation, item)

        self.bridge.run(self.directory.watch, deliver).addErrback(self._watch_failed)

    def _without_jetstream(self, failure) -> None:
        if not self.local_only:
            self.local_only = True
            log.warn("cluster: {error}: registrations and calls stay on their node (no registration "
                     "directory) until it has; checked again every {every:g} s", error=failure.getErrorMessage(),
                     every=NO_JETSTREAM_RETRY)

    def _watch_failed(self, failure) -> None:
        if failure.check(NoJetStream):
            self._without_jetstream(failure)
            self.reactor.callLater(NO_JETSTREAM_RETRY, self._restart_if_connected)
            return
        if not failure.check(NotConnected):
            self._failed(failure, "a watch")
            self.reactor.callLater(self.config.reconnect_wait, self._restart_if_connected)

    def _restart_if_connected(self) -> None:
        if self.bridge.connected and not self.synced:
            self._restart_watch()

    def _watched(self, generation: int, item) -> None:
        if generation != self._generation:
            return
        if item is None:  # the values present at the start are all in: they are the directory now
            snapshot, self._snapshot = self._snapshot, None
            if snapshot is None:
                return
            if self.local_only:  # what was registered here meanwhile goes into the directory below
                self.local_only = False
                log.info("cluster: the registration directory is available: registrations and calls "
                         "cross nodes again")
            self._revisions.clear()
            for name in set(self.values) | set(snapshot):
                revision, value = snapshot.get(name, (0, None))
                self._apply(name, revision, value, deleted=value is None)
            self.synced = True
            self._watching = True
            for dealer in self.dealers.values():  # what this node holds that the directory lost
                for registration in list(dealer.registrations_by_id.values()):
                    name = self._name(dealer.realm.name, registration.uri, registration.match)
                    if name not in snapshot and _local_callees(registration):
                        self._fix(name)
            return
        name, revision, value = item
        if self._snapshot is not None:
            self._snapshot[name] = (revision, value)
            return
        self._apply(name, revision, value, deleted=value is None)

    def _apply(self, name: str, revision: int, value, deleted: bool = False) -> None:
        """The directory says ``name`` is ``value`` (None: absent) at ``revision``."""
        if revision <= self._revisions.get(name, -1) and not deleted:
            return
        if deleted and revision < self._revisions.get(name, -1):
            return
        self._revisions[name] = revision
        if value is None:
            self.values.pop(name, None)
        else:
            self.values[name] = value
            self._names[name] = (value.realm, value.uri, value.match)
        if not self._sync(name, value):
            return
        # This node's own entries are what its sessions hold, whatever an older life of it left.
        found = self._local(name)
        local = {s.session_id for s in found[2]} if found is not None else set()
        mine = {c[1] for c in value.callees if c[0] == self.node} if value is not None else set()
        if local - mine or mine - local - {sid for (key, sid) in self._inflight if key == name}:
            self._fix(name)
        elif value is None and (found is None or found[1] is None) and name not in self._fixing:
            self._names.pop(name, None)  # gone everywhere: nothing to remember
            self._revisions.pop(name, None)
            self.turns.forget(name)

    def _sync(self, name: str, value=None) -> bool:
        """The dealer's registration under ``name`` as the directory has it
        (``value``, else the last seen), minus nodes not routed to.  False when
        this node has no realm for it."""
        if value is None:
            value = self.values.get(name)
        if value is None:
            found = self._local(name)
            if found is None or found[1] is None:
                return found is not None
            dealer, registration, local = found
            self._set_callees(dealer, registration, local)
            return True
        dealer = self.dealers.get(value.realm)
        if dealer is None:
            return False
        realm = dealer.realm
        registration = dealer.registrations.get(value.uri, value.match)
        local = _local_callees(registration) if registration is not None else []
        if registration is not None and registration.id != value.id:
            if local:  # two registrations of one procedure: the directory's wins, ours is revoked
                self._revoke(name, {s.session_id for s in local})
                local = []
                registration = dealer.registrations.get(value.uri, value.match)
            if registration is not None:
                dealer.registrations.remove(registration.uri, registration.match)
                dealer.registrations_by_id.pop(registration.id, None)
                registration = None
        order = []
        held = set(local)
        for node, session_id, authid, authrole, flags in value.callees:
            if node == self.node:
                session = realm.sessions.get(session_id)
                if session is not None and session in held:
                    order.append(session)
                    held.discard(session)
            elif not self.isolated and node not in self._gone:
                order.append(RemoteCallee(self.forwarding, node, session_id, authid, authrole, flags, realm))
        order.extend(s for s in local if s in held)  # held here, not (yet) in the directory: _fix adds them
        if registration is None:
            if not order:
                return True
            registration = self._registration(dealer, value)
        registration.invoke = value.invoke
        if registration.choose is None and value.invoke == "roundrobin":
            registration.choose = self.turns.rotation(name).choose
        self._set_callees(dealer, registration, order)
        return True

    def _set_callees(self, dealer, registration, callees: list) -> None:
        registration.callees[:] = callees
        if not callees:
            dealer.registrations.remove(registration.uri, registration.match)
            dealer.registrations_by_id.pop(registration.id, None)

    def _registration(self, dealer, value) -> Registration:
        registration = dealer.registrations.get(value.uri, value.match)
        if registration is None:
            registration = Registration(value.id, value.uri, value.match, value.invoke, value.created)
            dealer.registrations.add(value.uri, value.match, registration)
            dealer.registrations_by_id[registration.id] = registration
        return registration

    def _check_silent(self) -> None:
        """Nodes this one depends on (their entries in the directory, calls to
        their callees) that no heartbeat showed alive for a whole TTL are gone,
        also those that died before anyone heard them, or while nobody could
        say so (NATS away): the cluster's liveness only knows nodes it heard."""
        if self.isolated:
            return
        now = self.reactor.seconds()
        alive = set(self.cluster.live_nodes())
        alive.add(self.node)
        wanted = {c[0] for v in self.values.values() for c in v.callees}
        wanted.update(p.callee.node for p in self.forwarding.outgoing.values())
        for node in list(self._silent):
            if node in alive or node not in wanted:
                del self._silent[node]
        for node in wanted - alive:
            since = self._silent.setdefault(node, now)
            if now - since >= self.config.heartbeat_ttl and node not in self._gone:
                log.warn("cluster: node {peer} has entries in the registration directory but was not heard "
                         "for {ttl:g} s: taken as gone", peer=node, ttl=self.config.heartbeat_ttl)
                self._node_event("gone", node)
            elif node in self._gone and self.bridge.connected:
                self._purge(node)  # what a purge before could not do (NATS away, contention)

    def _purge(self, node: str) -> None:
        """The directory forgets ``node``'s entries (several survivors may ask: each change is a CAS)."""
        if node in self._purging:
            return
        changes = []
        for name, value in list(self.values.items()):
            if any(c[0] == node for c in value.callees):
                d = self._change(name, without_node(node))
                d.addCallbacks(lambda r, name=name: self._apply(name, r[0], r[1], deleted=r[1] is None),
                               lambda f: None if f.check(NotConnected) else self._failed(f, "a purge"))
                changes.append(d)
        if changes:
            self._purging.add(node)
            defer.DeferredList(changes).addBoth(lambda _: self._purging.discard(node))

    # ------------------------------------------------------------ liveness

    def _node_event(self, event: str, node: str) -> None:
        if event == "up":
            if node in self._gone:
                self._gone.discard(node)
                for name in list(self.values):
                    self._sync(name)
            return
        self._gone.add(node)
        self.forwarding.cancel_calls_of(node, f"the callee's node {node} is gone (no heartbeat for "
                                    f"{self.config.heartbeat_ttl:g} s)")
        for name in list(self.values):
            self._sync(name)
        if self.bridge.connected:
            self._purge(node)  # several survivors may: compare-and-set makes it once

    def caller_left(self, pending) -> None:
        """The caller of ``pending`` left (the dealer says): its callee's node forgets the call."""
        self.forwarding.caller_left(pending)


class _RandomIds:
    __slots__ = ()

    def next(self) -> int:
        return global_id()


def _local_callees(registration) -> list:
    return [c for c in registration.callees if type(c) is not RemoteCallee]
