"""Scale-out: this router node joined to others through NATS (``[cluster]``).

Imported only when the configuration has a ``[cluster]`` section.  The core
stays sans-IO: each realm's broker is given this node's :class:`Cluster` as
``broker.cluster`` and calls it on every publication it routes and when a
topic pattern gains its first or loses its last local subscription; the
NATS side (:mod:`.bridge`) runs on a thread of its own.

Wire format of an event on NATS (msgpack, serialized once per publication):
``[1, publication_id, topic, args, kwargs, payload, publisher, ppt, receivers, enc]``
with ``publisher`` = ``[session_id, authid, authrole]`` when disclosed (else
nil), ``ppt`` the payload-passthru options (or nil), ``receivers`` a map of
the PUBLISH eligible*/exclude* options given (or nil), ``enc`` =
``[enc_algo, enc_key, enc_serializer]`` (or nil).

What the nodes share beyond events (deny list, one-time tickets, retained
events, tenants) lives in JetStream key-value buckets: :mod:`.state`.
"""

from collections import Counter

import msgpack
from autobahn.wamp import message as m
from twisted.internet import task
from twisted.logger import Logger

from ..core import meta
from ..core.broker import Publication
from ..core.ids import global_id
from ..core.matching import EXACT, pattern_matches
from . import subjects
from .bridge import NatsBridge
from .buckets import Buckets
from .calls import Calls
from .nodes import Nodes
from .view import ClusterView

log = Logger(namespace="relayrouter.cluster")

WIRE_VERSION = 1
_RECEIVER_OPTIONS = ("eligible", "eligible_authid", "eligible_authrole",
                     "exclude", "exclude_authid", "exclude_authrole")


class RemotePublisher:
    """Who published an event on another node, as far as disclosure needs."""

    __slots__ = ("session_id", "authid", "authrole")

    def __init__(self, session_id=None, authid=None, authrole=None) -> None:
        self.session_id = session_id
        self.authid = authid
        self.authrole = authrole


_UNDISCLOSED = RemotePublisher()


class _RemotePublish:
    """A PUBLISH another node routed, as the broker reads it to make EVENTs here: what
    Autobahn's Publish would hold, without its checks of every field once per event (the
    publisher's node made them).  Never kept, retained nor forwarded; one with receiver
    options (eligible*, exclude*) is a Publish, which checks them."""

    __slots__ = ("topic", "args", "kwargs", "payload", "enc_algo", "enc_key", "enc_serializer")
    exclude_me = None
    retain = False
    eligible = eligible_authid = eligible_authrole = None
    exclude = exclude_authid = exclude_authrole = None

    def __init__(self, topic, args, kwargs, payload, enc) -> None:
        if type(topic) is not str or (args is not None and type(args) is not list) or (
                kwargs is not None and type(kwargs) is not dict):
            raise ValueError("not an event of the cluster's wire format")
        self.topic = topic
        self.args = args
        self.kwargs = kwargs
        self.payload = payload
        self.enc_algo, self.enc_key, self.enc_serializer = enc if enc is not None else (None, None, None)
_WHERE = {"thread": "a loop thread", "reactor": "the reactor's asyncio loop"}


class Cluster:
    def __init__(self, config, router, reactor) -> None:
        self.config = config
        self.router = router
        self.reactor = reactor
        # events_out, events_in, events_unmatched, events_unserializable, events_dropped_outage
        self.counters: Counter = Counter()
        self.bridge = NatsBridge(config, reactor, self._received, self._state)
        # Every shared-state bucket, made with the same replicas; checked for a quorum for /ready.
        self.buckets = Buckets(config.replicas)
        self._check_buckets = task.LoopingCall(self._bucket_health)
        self._check_buckets.clock = reactor
        self._failed_last: set = set()  # buckets that failed the last check
        # broker -> its realm's subject base; subject -> (broker, {base subscription: None})
        self._bases: dict = {}
        self._interest: dict[str, tuple] = {}
        self._said_unserializable = False
        self._said_error = False
        # The shared state in JetStream (state.SharedState) once share_state is called.
        self.state = None
        # Liveness: every node announces itself and its session counts on one subject.
        self._heartbeat_subject = subjects.heartbeat_subject(config.subject_prefix)
        self._peers: dict[str, tuple] = {}  # node -> (last heard, {realm: {authrole: sessions}})
        self.nodes = Nodes(self)  # what each node says of itself in its heartbeats (cluster/nodes.py)
        # f(event, node) on the reactor thread, event "up" (first heartbeat heard)
        # or "gone" (silent for heartbeat_ttl): what calls, testaments and the
        # cluster view of other features hang on.
        self.node_listeners: list = []
        self._realms: list = []
        # subject -> f(data) on the reactor, for what a feature subscribed to
        # with bridge.subscribe and wants to handle itself (not events).
        self.handlers: dict = {}
        # f(state, text) on the reactor, as NatsBridge reports ("connected", "reconnected", "disconnected", ...).
        self.state_listeners: list = []
        self._beat = task.LoopingCall(self._heartbeat)
        self._beat.clock = reactor
        self.bridge.subscribe(self._heartbeat_subject)
        # Cluster-wide meta API (cluster/view.py) and testaments of dead nodes (cluster/testaments.py).
        self.view = ClusterView(self)
        self.calls = Calls(self)  # registrations (cluster/calls.py) and calls (cluster/forwarding.py) across nodes

    @property
    def connected(self) -> bool:
        return self.bridge.connected

    def attach(self, realm) -> None:
        """Route ``realm``'s publications across the cluster too."""
        broker = realm.broker
        self._bases[broker] = subjects.realm_base(self.config.subject_prefix, realm.name)
        broker.cluster = self
        self.calls.attach(realm)
        self._realms.append(realm)
        # wamp.session.count answers for the whole cluster (this node's sessions + live nodes' heartbeats).
        realm.procedures.remove(meta.SESSION_COUNT)
        realm.procedures.add(meta.SESSION_COUNT, lambda call, realm=realm: self._session_count(call, realm))
        self.view.attach(realm)
        for subscription in list(broker.subscriptions_by_id.values()):
            if subscription.filter is None:
                self.interest_added(broker, subscription)

    def detach(self, name: str) -> None:
        """A realm gone from this node (a tenant deleted): its events no longer cross."""
        for realm in [r for r in self._realms if r.name == name]:
            self._realms.remove(realm)
            broker = realm.broker
            self._bases.pop(broker, None)
            for subject, entry in list(self._interest.items()):
                if entry[0] is broker:
                    del self._interest[subject]
                    self.bridge.unsubscribe(subject)
        self.view.realms.pop(name, None)

    def share_state(self, security, tenancy=None) -> None:
        """Deny list, one-time tickets, retained events and tenants shared with every node."""
        from .state import SharedState

        self.state = SharedState(self, self.router, security, tenancy)

    def problems(self) -> list[str]:
        """What keeps this node from being ready for cluster features, for /ready."""
        if not self.connected:
            return ["cluster: not connected to NATS (local routing goes on; see the log)"]
        problems = [f"cluster: JetStream bucket '{name}' cannot serve: {why} (the shared state it keeps "
                    "is not available on this node)" for name, why in sorted(self.buckets.unhealthy.items())]
        problem = self.state.problem() if self.state is not None else None
        return problems + ([problem] if problem else [])

    def start(self) -> None:
        self.bridge.start()
        self._beat.start(self.config.heartbeat_interval, now=True)
        self._check_buckets.start(self.config.heartbeat_ttl, now=False)
        self.view.start()
        self.calls.start()

    def stop(self):
        """None, or a Deferred when the NATS connection closes later (cluster.loop = "reactor")."""
        if self._beat.running:
            self._beat.stop()
        if self._check_buckets.running:
            self._check_buckets.stop()
        self.view.stop()
        self.calls.stop()
        if self.state is not None:
            self.state.stop()
        return self.bridge.stop()

    # ---------------------------------------------------------- buckets

    def _bucket_health(self) -> None:
        """Each bucket's quorum, asked of JetStream on the heartbeat_ttl schedule, for /ready."""
        if not self.connected or not self.buckets.names:
            return
        d = self.bridge.run(self.buckets.check)
        d.addCallbacks(self._bucket_health_seen, lambda failure: None)

    def _bucket_health_seen(self, failing: dict) -> None:
        """A bucket failing two checks in a row cannot serve (one failed check is often a leader
        election under way, over within seconds); one good check and it serves again."""
        before = self.buckets.unhealthy
        unhealthy = {name: why for name, why in failing.items() if name in before or name in self._failed_last}
        self._failed_last = set(failing)
        for name in sorted(set(unhealthy) - set(before)):
            log.warn("cluster: JetStream bucket {bucket} cannot serve: {why}", bucket=name, why=unhealthy[name])
        for name in sorted(set(before) - set(unhealthy)):
            log.info("cluster: JetStream bucket {bucket} serves again", bucket=name)
        self.buckets.unhealthy = unhealthy

    # ---------------------------------------------------------- liveness

    def live_nodes(self) -> list[str]:
        """The other nodes heard from within heartbeat_ttl."""
        return sorted(self.heard_at())

    def heard_at(self) -> dict[str, float]:
        """The other live nodes, each with when its last heartbeat came."""
        now = self.reactor.seconds()
        return {n: seen for n, (seen, _) in self._peers.items() if now - seen <= self.config.heartbeat_ttl}

    def _heartbeat(self) -> None:
        counts = {}
        for realm in self._realms:
            counts[realm.name] = dict(Counter(s.authrole for s in realm.sessions.values()))
        if self.bridge.connected:  # nobody to tell otherwise; the next beat after connecting will
            self.bridge.publish(self._heartbeat_subject,
                                msgpack.packb([WIRE_VERSION, self.config.node, counts, self.nodes.mine()]))
        now = self.reactor.seconds()
        for node, (seen, _) in list(self._peers.items()):
            if now - seen > self.config.heartbeat_ttl:
                del self._peers[node]
                self.nodes.gone(node)
                log.warn("cluster: node {peer} is gone (no heartbeat for {ttl:g} s)", peer=node,
                         ttl=self.config.heartbeat_ttl)
                self._tell("gone", node)

    def _heard(self, data: bytes) -> None:
        beat = msgpack.unpackb(data, raw=False)
        version, node, counts = beat[:3]
        if node == self.config.node:
            return
        self.nodes.heard(node, beat[3] if len(beat) > 3 else None)
        new = node not in self._peers
        self._peers[node] = (self.reactor.seconds(), counts)
        if new:
            log.info("cluster: node {peer} is up", peer=node)
            self._tell("up", node)

    def _tell(self, event: str, node: str) -> None:
        for listener in list(self.node_listeners):
            try:
                listener(event, node)
            except Exception:
                log.failure("cluster: a listener failed on node {peer} {event}", peer=node, event=event)

    def _session_count(self, call, realm) -> int:
        local = meta.session_count(call)  # checks filter_authroles
        roles = call.args[0] if call.args else None
        now, ttl = self.reactor.seconds(), self.config.heartbeat_ttl
        remote = 0
        for seen, counts in self._peers.values():
            if now - seen <= ttl:
                remote += sum(n for role, n in counts.get(realm.name, {}).items() if roles is None or role in roles)
        return local + remote

    # ------------------------------------------------------- broker hooks

    def interest_added(self, broker, subscription) -> None:
        subject = subjects.interest_subject(self._bases[broker], subscription.uri, subscription.match)
        entry = self._interest.get(subject)
        if entry is None:
            entry = self._interest[subject] = (broker, {})
            self.bridge.subscribe(subject)
        entry[1][subscription] = None

    def interest_removed(self, broker, subscription) -> None:
        base = self._bases.get(broker)
        if base is None:  # its realm was detached
            return
        subject = subjects.interest_subject(base, subscription.uri, subscription.match)
        entry = self._interest.get(subject)
        if entry is None:
            return
        entry[1].pop(subscription, None)
        if not entry[1]:
            del self._interest[subject]
            self.bridge.unsubscribe(subject)

    def published(self, broker, publication: Publication, publication_id: int) -> None:
        msg = publication.msg
        publisher = publication.publisher
        receivers = None
        if publication.receivers is not None:
            receivers = {name: getattr(msg, name) for name in _RECEIVER_OPTIONS if getattr(msg, name) is not None}
        enc = [msg.enc_algo, msg.enc_key, msg.enc_serializer] if msg.enc_algo is not None else None
        try:
            data = msgpack.packb(
                [WIRE_VERSION, publication_id, msg.topic, msg.args, msg.kwargs, msg.payload,
                 [publisher.session_id, publisher.authid, publisher.authrole] if publication.disclose else None,
                 publication.ppt, receivers, enc],
                use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as e:
            self.counters["events_unserializable"] += 1
            if not self._said_unserializable:
                self._said_unserializable = True
                log.warn("cluster: an event on {topic} cannot go to other nodes ({error}); delivered on this "
                         "node only (said once; counted in events_unserializable)", topic=msg.topic, error=str(e))
            return
        base = self._bases.get(broker)
        if base is None:  # its realm was detached (a tenant deleted, a session still closing)
            return
        if not self.bridge.connected:  # dropped at once, not sent late (docs/reference/cluster.md, "Events during a NATS outage")
            self.counters["events_dropped_outage"] += 1
        else:
            self.counters["events_out"] += 1
            self.bridge.publish(subjects.event_subject(base, msg.topic), data, during_outage=False)
        if msg.retain and self.state is not None:
            self.state.retained(broker, msg.topic, publication_id, data)

    def meta_published(self, broker, topic: str, args: list) -> None:
        """A meta event of this node (``wamp.session.on_join``, ...): to the other
        nodes' subscribers, as an event the router published (never disclosed)."""
        self.published(broker, Publication(m.Publish(0, topic, args=args), _UNDISCLOSED, False, None), global_id())

    # ------------------------------------------------------ from NATS

    def _received(self, batch: list) -> None:
        for subject, data in batch:
            if subject == self._heartbeat_subject:
                try:
                    self._heard(data)
                except Exception:
                    log.failure("cluster: cannot read a heartbeat from NATS")
                continue
            entry = self._interest.get(subject)
            if entry is None:
                handler = self.handlers.get(subject)
                if handler is None:  # an event that arrived after the last local subscriber left
                    self.counters["events_unmatched"] += 1
                    continue
                try:
                    handler(data)
                except Exception:
                    log.failure("cluster: cannot handle a message on NATS subject {subject}", subject=subject)
                continue
            try:
                self._dispatch(entry, data)
            except Exception:
                self.counters["events_invalid"] += 1
                log.failure("cluster: cannot dispatch an event from NATS subject {subject}", subject=subject)

    def _dispatch(self, entry: tuple, data: bytes) -> None:
        broker, subscriptions = entry
        (version, publication_id, topic, args, kwargs, payload, publisher, ppt, receivers,
         enc) = msgpack.unpackb(data, raw=False)[:10]
        matches = [s for s in subscriptions
                   if s.match == EXACT or pattern_matches(s.uri, s.match, topic)]
        if not matches:
            self.counters["events_unmatched"] += 1
            return
        if receivers:
            enc_algo, enc_key, enc_serializer = enc if enc is not None else (None, None, None)
            msg = m.Publish(0, topic, args=args, kwargs=kwargs, payload=payload,
                            enc_algo=enc_algo, enc_key=enc_key, enc_serializer=enc_serializer, **receivers)
        else:
            msg = _RemotePublish(topic, args, kwargs, payload, enc)
        source = RemotePublisher(*publisher) if publisher is not None else _UNDISCLOSED
        self.counters["events_in"] += 1  # counted once read: a malformed event is events_invalid only
        broker.dispatch_remote(Publication(msg, source, publisher is not None, ppt), publication_id, matches)

    def _state(self, state: str, text: str) -> None:
        self._log_state(state, text)
        for listener in list(self.state_listeners):
            try:
                listener(state, text)
            except Exception:
                log.failure("cluster: a listener failed on NATS state {state}", state=state)

    def _log_state(self, state: str, text: str) -> None:
        node = self.config.node
        if state in ("connected", "reconnected"):
            self._said_error = False
        if state == "connected":
            log.info("cluster: node {node} connected to NATS at {url} (client on {where})", node=node, url=text,
                     where=_WHERE[self.bridge.loop_mode])
        elif state == "reconnected":
            log.info("cluster: node {node} reconnected to NATS at {url}", node=node, url=text)
        elif state == "disconnected":
            log.warn("cluster: node {node} lost NATS; local routing goes on, reconnecting", node=node)
        elif state == "unreachable":
            log.warn("cluster: node {node} cannot reach NATS ({error}); retrying", node=node, error=text)
        elif state == "error" and not self._said_error:
            self._said_error = True  # once per outage: reconnect attempts fail every reconnect_wait
            if "authorization" in text.lower() or "authentication" in text.lower():
                log.warn("cluster: NATS refused node {node}'s credentials ({error}); check [cluster] user and "
                         "password_*, token_*, nkey_seed_* or credentials_file; retrying", node=node, error=text)
            else:
                log.info("cluster: NATS: {error}", error=text)
