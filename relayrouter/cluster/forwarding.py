"""Calls across nodes: a CALL forwarded to the node of the callee it goes to,
and its answers back (the registrations the dealers route by are in
:mod:`.calls`).

A CALL whose chosen callee is elsewhere is published on that node's
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

import msgpack
from autobahn.wamp import message as m
from twisted.logger import Logger

from ..core import errors, messages
from ..core.dealer import CANCELING_FEATURE, KILL, KILLNOWAIT, PPT_FEATURE, PendingCall
from ..core.ids import global_id
from . import directory, subjects

log = Logger(namespace="relayrouter.cluster")

WIRE_VERSION = 1


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


class Forwarding:
    """CALLs of this node's callers to callees on other nodes, and those of other
    nodes' callers to callees here; which process runs under each node name."""

    def __init__(self, calls) -> None:
        cluster = calls.cluster
        self.calls = calls  # whether this node is cut off (``isolated``)
        self.bridge = cluster.bridge
        self.node = calls.node
        self.prefix = calls.prefix
        self.counters = calls.counters
        self.dealers = calls.dealers  # realm name -> Dealer, shared with the registrations
        self.subject = subjects.rpc_subject(self.prefix, self.node)
        self.outgoing: dict = {}  # call ID -> PendingCall with a RemoteCallee
        # Call IDs start at random: a node restarted under the same name never
        # reuses the IDs its previous life had in flight.
        self.call_ids = itertools.count(random.randrange(1, 2 ** 52))
        self._links: dict[str, _Link] = {}
        self._subjects: dict[str, str] = {}  # node -> its rpc subject
        cluster.handlers[self.subject] = self._received
        cluster.bridge.subscribe(self.subject)
        self.incarnation = global_id()  # this process, among those that run under this node name
        self._incarnations: dict[str, int] = {}  # other node -> the process last heard under its name
        self._said_twin = False
        self._hello_subject = subjects.rpc_hello_subject(self.prefix)
        cluster.handlers[self._hello_subject] = self._hello
        cluster.bridge.subscribe(self._hello_subject)

    # ------------------------------------------------ which process is where

    def say_hello(self) -> None:
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
            self.say_hello()  # so that it knows this process too
        elif known != incarnation:
            log.info("cluster: node {peer} restarted: calls waiting on its previous process are canceled",
                     peer=node)
            self.cancel_calls_of(node, f"the callee's node {node} restarted")

    def cancel_calls_of(self, node: str, text: str) -> None:
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
            if self.calls.isolated:  # briefly away (a failover): the client buffers it until reconnected
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
