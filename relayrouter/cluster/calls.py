"""Calls across nodes: the registration directory seen by the dealers, and
CALLs forwarded to the node of the callee they go to.

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

Calls.  A CALL whose chosen callee is elsewhere is published on that node's
subject ``<prefix>.rpc.<node>``; the node sends INVOCATION to its callee and
publishes YIELDs (progressive ones too) and ERROR back on the caller node's
subject.  The caller's node keeps the call as for a local callee, so
timeouts and CANCEL run there; INTERRUPTs travel.  At most once, like NATS
core: a message lost on the way leaves the caller waiting until its CALL
timeout, or until the callee's node is declared gone (heartbeat TTL), when
the caller gets ``wamp.error.canceled``.

Wire formats (msgpack lists, ``WIRE_VERSION`` first, then the kind and the
sending node):

- ``[1, "call", origin, call_id, realm, callee_session, registration, args,
  kwargs, payload, timeout, receive_progress, caller, procedure, enc, ppt,
  caller_ppt]`` with ``caller`` = ``[session_id, authid, authrole]`` when
  disclosed (else nil), ``enc`` = ``[enc_algo, enc_key, enc_serializer]``
  (or nil), ``ppt`` the payload-passthru details (or nil), ``caller_ppt``
  whether the caller announced payload passthru;
- ``[1, "interrupt", origin, call_id, mode]``; ``[1, "left", origin, call_id]``
  (the caller left: forget it, interrupt the callee if it cancels);
- back to the caller's node: ``[1, "result", node, call_id, progress, args,
  kwargs, payload, enc, ppt]`` and ``[1, "error", node, call_id, error, args,
  kwargs, payload, enc, ppt]``;
- on ``<prefix>.rpchello``, on every connection to NATS and in answer to a
  node not known yet: ``[1, "hello", node, incarnation]`` (a random ID of the
  process): a node heard under a new incarnation restarted, and the calls
  waiting on its previous process are answered ``wamp.error.canceled`` at
  once, not after a TTL that a quick restart never lets run out.
"""

import itertools
import random
from collections import Counter

import msgpack
from autobahn.wamp import message as m
from twisted.internet import defer, task
from twisted.logger import Logger

from ..core import errors, messages
from ..core.ids import global_id
from ..core.dealer import CANCELING_FEATURE, KILL, KILLNOWAIT, PPT_FEATURE, SINGLE, PendingCall, Registration
from . import directory, subjects
from .bridge import NotConnected
from .buckets import RESUME_WINDOW
from .directory import UNCHANGED, Directory, NoJetStream, Refused, Value
from .turns import Turns

log = Logger(namespace="relayrouter.cluster")

WIRE_VERSION = 1
NO_JETSTREAM_RETRY = 10.0  # s between attempts at the directory while the NATS server has no JetStream
REVOCATION_FEATURE = "registration_revocation"


def _flags(session) -> int:
    return ((directory.PPT if session.supports("callee", PPT_FEATURE) else 0)
            | (directory.CANCELING if session.supports("callee", CANCELING_FEATURE) else 0))


def _entry(node: str, session) -> tuple:
    return (node, session.session_id, session.authid, session.authrole, _flags(session))


class RemoteCallee:
    """A callee on another node, as the dealer sees it in ``registration.callees``."""

    __slots__ = ("calls", "node", "session_id", "authid", "authrole", "flags", "realm", "invocations", "peer")
    on_other_node = True  # what the dealer's prefer_local looks for

    def __init__(self, calls, node, session_id, authid, authrole, flags, realm) -> None:
        self.calls = calls
        self.node = node
        self.session_id = session_id
        self.authid = authid
        self.authrole = authrole
        self.flags = flags
        self.realm = realm
        self.invocations = calls.outgoing  # call ID -> PendingCall; call IDs are unique per node
        self.peer = self

    def __repr__(self) -> str:
        return f"<RemoteCallee {self.session_id} on {self.node}>"

    def supports(self, role: str, feature: str) -> bool:
        if feature == PPT_FEATURE:
            return bool(self.flags & directory.PPT)
        if feature == CANCELING_FEATURE:
            return bool(self.flags & directory.CANCELING)
        return False

    def next_invocation_id(self) -> int:
        return next(self.calls.call_ids)

    def send(self, msg) -> None:
        self.calls.forward(self, msg)


class _Link:
    """Calls that came from one other node to callees here."""

    __slots__ = ("node", "subject", "calls")

    def __init__(self, node: str, subject: str) -> None:
        self.node = node
        self.subject = subject
        self.calls: dict = {}  # the origin's call ID -> PendingCall


class RemoteCaller:
    """The caller of a call from another node, as the dealer sees it in ``PendingCall.caller``."""

    __slots__ = ("calls", "link", "ppt", "peer", "sender")

    def __init__(self, sender, link: _Link, ppt: bool) -> None:
        self.sender = sender
        self.link = link
        self.calls = link.calls
        self.ppt = ppt
        self.peer = self

    def supports(self, role: str, feature: str) -> bool:
        return feature == PPT_FEATURE and self.ppt

    def send(self, msg) -> None:
        self.sender.answer(self.link, msg)


def _enc(msg):
    return [msg.enc_algo, msg.enc_key, msg.enc_serializer] if msg.enc_algo is not None else None


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
        self.subject = subjects.rpc_subject(prefix, self.node)
        self.directory = Directory(subjects.bucket_name(prefix, "reg"), cluster.buckets)
        self.counters: Counter = Counter()
        self.dealers: dict = {}  # realm name -> Dealer
        self.outgoing: dict = {}  # call ID -> PendingCall with a RemoteCallee
        # Call IDs start at random: a node restarted under the same name never
        # reuses the IDs its previous life had in flight.
        self.call_ids = itertools.count(random.randrange(1, 2 ** 52))
        self._links: dict[str, _Link] = {}
        self._subjects: dict[str, str] = {}  # node -> its rpc subject
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
        self._isolated = True  # NATS away: other nodes' callees are not routed to
        self._isolating = None  # the delayed call that isolates this node, while NATS is briefly away
        self._silent: dict[str, float] = {}  # node with entries or calls here, not heard -> since when
        self._watchdog = task.LoopingCall(self._check_silent)
        self._watchdog.clock = cluster.reactor
        self._said_failure = False
        # The NATS server has no JetStream: registrations stay on their node, as
        # before the directory existed, until a watch of the directory works.
        self.local_only = False
        cluster.handlers[self.subject] = self._received
        cluster.bridge.subscribe(self.subject)
        self.incarnation = global_id()  # this process, among those that run under this node name
        self._incarnations: dict[str, int] = {}  # other node -> the process last heard under its name
        self._said_twin = False
        self._hello_subject = subjects.rpc_hello_subject(prefix)
        cluster.handlers[self._hello_subject] = self._hello
        cluster.bridge.subscribe(self._hello_subject)
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
                self._change(name, _without_node(mine)).addErrback(lambda _: None)

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
        fn = _joining(Value(realm, msg.procedure, match, None, invoke, self.reactor.seconds(), ()),
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
        d = self._change(name, _fixing(self.node, template, wanted, keep))
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
            self._say_hello()
            if self._isolated:
                # Other nodes' callees as last seen, at once: a client failing over to
                # another NATS server finds them there, while the directory's watch
                # restarts (which can take seconds while JetStream elects leaders).
                # The watch's snapshot then corrects what changed meanwhile; nodes
                # that died meanwhile are left out by their silence (_gone).
                self._isolated = False
                for name in list(self.values):
                    self._sync(name)
            lost_at, self._lost_at = self._lost_at, None
            if (state == "reconnected" and self._watching and lost_at is not None
                    and self.reactor.seconds() - lost_at <= RESUME_WINDOW):
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
            elif not self._isolated and self._isolating is None:
                # A failover to another server reconnects within reconnect_wait: other
                # nodes' callees stay routed to meanwhile (what is sent waits in the
                # client's buffer); after it, local callees only while NATS is away.
                self._isolating = self.reactor.callLater(self.config.reconnect_wait, self._isolate)

    def _isolate(self) -> None:
        self._isolating = None
        if self._isolated or self.bridge.connected:
            return
        self._isolated = True
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

        self.bridge.run(self.directory.resume).addCallbacks(resumed, lambda f: resumed(False))

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
            elif not self._isolated and node not in self._gone:
                order.append(RemoteCallee(self, node, session_id, authid, authrole, flags, realm))
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
        if self._isolated:
            return
        now = self.reactor.seconds()
        alive = set(self.cluster.live_nodes())
        alive.add(self.node)
        wanted = {c[0] for v in self.values.values() for c in v.callees}
        wanted.update(p.callee.node for p in self.outgoing.values())
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
                d = self._change(name, _without_node(node))
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
        self._cancel_calls_of(node, f"the callee's node {node} is gone (no heartbeat for "
                                    f"{self.config.heartbeat_ttl:g} s)")
        for name in list(self.values):
            self._sync(name)
        if self.bridge.connected:
            self._purge(node)  # several survivors may: compare-and-set makes it once

    def _say_hello(self) -> None:
        self.bridge.publish(self._hello_subject, msgpack.packb([WIRE_VERSION, "hello", self.node, self.incarnation]))

    def _hello(self, data: bytes) -> None:
        node, incarnation = msgpack.unpackb(data, raw=False)[2:4]
        if node == self.node:
            if incarnation != self.incarnation and not self._said_twin:
                self._said_twin = True
                log.error("cluster: another process runs under this node's name {node}: node names must be "
                          "unique (the two remove each other's registrations)", node=node)
            return
        known = self._incarnations.get(node)
        self._incarnations[node] = incarnation
        if known is None:
            self._say_hello()  # so that it knows this process too
        elif known != incarnation:
            log.info("cluster: node {peer} restarted: calls waiting on its previous process are canceled",
                     peer=node)
            self._cancel_calls_of(node, f"the callee's node {node} restarted")

    def _cancel_calls_of(self, node: str, text: str) -> None:
        """Calls from here waiting on ``node``, and calls from ``node`` waiting here, end."""
        for pending in [p for p in self.outgoing.values() if p.callee.node == node]:
            self.counters["calls_canceled_node_gone"] += 1
            pending.caller.realm.dealer._forget(pending)
            pending.caller.peer.send(m.Error(m.Call.MESSAGE_TYPE, pending.call_request, errors.CANCELED,
                                             args=[text]))
        link = self._links.pop(node, None)
        if link is not None:
            for pending in list(link.calls.values()):
                self._abandon(pending)

    # --------------------------------------------------------------- calls

    def _subject_of(self, node: str) -> str:
        subject = self._subjects.get(node)
        if subject is None:
            subject = self._subjects[node] = subjects.rpc_subject(self.prefix, node)
        return subject

    def forward(self, callee: RemoteCallee, msg) -> None:
        """INVOCATION or INTERRUPT the dealer sent a callee on another node."""
        kind = msg.MESSAGE_TYPE
        if kind == m.Invocation.MESSAGE_TYPE:
            pending = self.outgoing.get(msg.request)
            if pending is None:
                return
            caller = None
            if msg.caller is not None:
                caller = [msg.caller, msg.caller_authid, msg.caller_authrole]
            try:
                data = msgpack.packb(
                    [WIRE_VERSION, "call", self.node, msg.request, callee.realm.name, callee.session_id,
                     msg.registration, msg.args, msg.kwargs, msg.payload, msg.timeout, msg.receive_progress,
                     caller, msg.procedure, _enc(msg), getattr(msg, "extra", None),
                     pending.caller.supports("caller", PPT_FEATURE)],
                    use_bin_type=True)
            except (TypeError, ValueError, OverflowError) as e:
                self._unsent(pending, errors.INVALID_ARGUMENT,
                             f"the call cannot go to its callee on node {callee.node}: {e}")
                return
            if self._isolated:  # briefly away (a failover): the client buffers it until reconnected
                self._unsent(pending, errors.UNAVAILABLE,
                             f"the callee is on node {callee.node}, out of reach (this node lost NATS)")
                return
            self.counters["calls_out"] += 1
            self.bridge.publish(self._subject_of(callee.node), data)
        elif kind == m.Interrupt.MESSAGE_TYPE:
            self.bridge.publish(self._subject_of(callee.node),
                                msgpack.packb([WIRE_VERSION, "interrupt", self.node, msg.request, msg.mode]))

    def _unsent(self, pending, uri: str, text: str) -> None:
        self.counters["calls_unsent"] += 1
        pending.caller.realm.dealer._forget(pending)
        pending.caller.peer.send(m.Error(m.Call.MESSAGE_TYPE, pending.call_request, uri, args=[text]))

    def caller_left(self, pending) -> None:
        callee = pending.callee
        if type(callee) is RemoteCallee:
            self.bridge.publish(self._subject_of(callee.node),
                                msgpack.packb([WIRE_VERSION, "left", self.node, pending.invocation]))

    def answer(self, link: _Link, msg) -> None:
        """RESULT or ERROR the dealer sent the caller of a call from ``link``'s node."""
        if msg.MESSAGE_TYPE == m.Result.MESSAGE_TYPE:
            wire = [WIRE_VERSION, "result", self.node, msg.request, bool(msg.progress), msg.args, msg.kwargs,
                    msg.payload, _enc(msg), getattr(msg, "extra", None)]
        else:
            wire = [WIRE_VERSION, "error", self.node, msg.request, msg.error, msg.args, msg.kwargs,
                    msg.payload, _enc(msg), getattr(msg, "extra", None)]
        try:
            data = msgpack.packb(wire, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as e:
            data = msgpack.packb([WIRE_VERSION, "error", self.node, msg.request, errors.INVALID_ARGUMENT,
                                  [f"the callee's answer cannot go back to the caller's node: {e}"],
                                  None, None, None, None])
        self.counters["answers_out"] += 1
        self.bridge.publish(link.subject, data)

    def _received(self, data: bytes) -> None:
        wire = msgpack.unpackb(data, raw=False)
        kind = wire[1]
        if kind == "result" or kind == "error":
            self._answered(wire)
        elif kind == "call":
            self._invoked(wire)
        elif kind == "interrupt":
            self._interrupted(wire)
        elif kind == "left":
            link = self._links.get(wire[2])
            pending = link.calls.get(wire[3]) if link is not None else None
            if pending is not None:
                self._abandon(pending)

    def _answered(self, wire: list) -> None:
        _, kind, node, call_id, what, args, kwargs, payload, enc, ppt = wire[:10]
        pending = self.outgoing.get(call_id)
        if pending is None:
            self.counters["answers_late"] += 1  # canceled, timed out or the caller left meanwhile
            return
        self.counters["answers_in"] += 1
        enc_algo, enc_key, enc_serializer = enc if enc is not None else (None, None, None)
        dealer = pending.caller.realm.dealer
        if kind == "result":
            if what:  # progressive
                if not pending.receive_progress:
                    return
            else:
                dealer._forget(pending)
                dealer._answered(pending)
            pending.caller.peer.send(messages.result(
                ppt, pending.call_request, args=args, kwargs=kwargs, payload=payload, progress=what or None,
                enc_algo=enc_algo, enc_key=enc_key, enc_serializer=enc_serializer))
            return
        dealer._forget(pending)
        dealer._answered(pending)
        pending.caller.peer.send(messages.error(
            ppt, m.Call.MESSAGE_TYPE, pending.call_request, what, args=args, kwargs=kwargs, payload=payload,
            enc_algo=enc_algo, enc_key=enc_key, enc_serializer=enc_serializer))

    def _link(self, node: str) -> _Link:
        link = self._links.get(node)
        if link is None:
            link = self._links[node] = _Link(node, self._subject_of(node))
        return link

    def _invoked(self, wire: list) -> None:
        (_, _, origin, call_id, realm_name, callee_id, registration_id, args, kwargs, payload, timeout,
         receive_progress, caller, procedure, enc, ppt, caller_ppt) = wire[:17]
        link = self._link(origin)
        self.counters["calls_in"] += 1
        dealer = self.dealers.get(realm_name)
        registration = dealer.registrations_by_id.get(registration_id) if dealer is not None else None
        callee = dealer.realm.sessions.get(callee_id) if dealer is not None else None
        if registration is not None and (callee is None or registration not in callee.registrations):
            # The callee it was sent to left on the way: another of this node's, if any.
            callee = next((c for c in registration.callees if type(c) is not RemoteCallee), None)
        if registration is None or callee is None:
            self.counters["calls_in_no_callee"] += 1
            self.bridge.publish(link.subject, msgpack.packb(
                [WIRE_VERSION, "error", self.node, call_id, errors.CANCELED,
                 [f"the callee on node {self.node} left before the call reached it"], None, None, None, None]))
            return
        invocation = callee.next_invocation_id()
        router = dealer.realm.router
        pending = PendingCall(RemoteCaller(self, link, bool(caller_ppt)), call_id, callee, invocation,
                              registration, bool(receive_progress), router.clock.seconds())
        link.calls[call_id] = pending
        callee.invocations[invocation] = pending
        enc_algo, enc_key, enc_serializer = enc if enc is not None else (None, None, None)
        caller_id, caller_authid, caller_authrole = caller if caller is not None else (None, None, None)
        callee.peer.send(messages.invocation(
            ppt, invocation, registration.id, args=args, kwargs=kwargs, payload=payload, timeout=timeout,
            receive_progress=receive_progress, caller=caller_id, caller_authid=caller_authid,
            caller_authrole=caller_authrole, procedure=procedure,
            enc_algo=enc_algo, enc_key=enc_key, enc_serializer=enc_serializer))

    def _interrupted(self, wire: list) -> None:
        _, _, origin, call_id, mode = wire[:5]
        link = self._links.get(origin)
        pending = link.calls.get(call_id) if link is not None else None
        if pending is None:
            return
        if mode == KILL:
            if not pending.interrupted:
                pending.interrupted = True
                pending.callee.peer.send(m.Interrupt(pending.invocation, mode=KILL))
            return
        pending.callee.realm.dealer._forget(pending)
        pending.callee.peer.send(m.Interrupt(pending.invocation, mode=KILLNOWAIT))

    def _abandon(self, pending) -> None:
        """Nobody waits for this call from another node any more (its caller or node left)."""
        callee = pending.callee
        callee.realm.dealer._forget(pending)
        if callee.supports("callee", CANCELING_FEATURE):
            callee.peer.send(m.Interrupt(pending.invocation, mode=KILLNOWAIT))


class _RandomIds:
    __slots__ = ()

    def next(self) -> int:
        return global_id()


def _local_callees(registration) -> list:
    return [c for c in registration.callees if type(c) is not RemoteCallee]


# Change functions: run on the NATS loop thread on what they are given only.

def _joining(template: Value, entry: tuple):
    """A session of this node joins the registration (``template``: uri, match, invoke, created)."""
    node, session_id = entry[0], entry[1]

    def change(current):
        if current is None:
            return Value(template.realm, template.uri, template.match, global_id(),
                         template.invoke, template.created, [entry]), None
        if any(c[0] == node and c[1] == session_id for c in current.callees):
            raise Refused(f"this session has already registered '{current.uri}'")
        if not current.callees:
            return current.with_callees([entry]), None
        if current.invoke == SINGLE or template.invoke == SINGLE:
            raise Refused(f"'{current.uri}' is already registered by another callee"
                          + ("" if current.callees[0][0] == node else f" (on node {current.callees[0][0]})"))
        if current.invoke != template.invoke:
            raise Refused(f"'{current.uri}' is registered with invoke policy '{current.invoke}', "
                          f"not '{template.invoke}'")
        return current.with_callees([*current.callees, entry]), None

    return change


def _fixing(node: str, template: Value, wanted: list, keep: set):
    """This node's entries become ``wanted`` (those in ``keep``, REGISTERs on
    the way, stay as they are); entries of other nodes are untouched.  The
    note is the session IDs that could not be put back (another registration
    holds the procedure now)."""
    wanted_ids = {e[1] for e in wanted}

    def change(current):
        if current is None:
            if not wanted or template.id is None:
                return UNCHANGED, set()
            return template.with_callees(wanted), set()
        kept = [c for c in current.callees if c[0] != node or c[1] in wanted_ids or c[1] in keep]
        others = [c for c in kept if c[0] != node]
        present = {c[1] for c in kept if c[0] == node}
        missing = [e for e in wanted if e[1] not in present]
        rejected = set()
        if missing:
            if current.id != template.id:
                if kept:  # another registration of the procedure, with callees: it stays
                    rejected = {e[1] for e in missing}
                else:  # an empty one of an older life: ours again
                    return template.with_callees(wanted), rejected
            elif others and SINGLE in (current.invoke, template.invoke):
                rejected = {e[1] for e in missing}
            else:
                kept.extend(missing)
        if not kept:
            return None, rejected
        if tuple(tuple(c) for c in kept) == current.callees:
            return UNCHANGED, rejected
        return current.with_callees(kept), rejected

    return change


def _without_node(node: str):
    def change(current):
        if current is None:
            return UNCHANGED, None
        callees = [c for c in current.callees if c[0] != node]
        if len(callees) == len(current.callees):
            return UNCHANGED, None
        return (current.with_callees(callees) if callees else None), None

    return change
