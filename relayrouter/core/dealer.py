"""The dealer role: registrations, and calls routed to callees and back.

Indexes and who owns them
-------------------------
* ``registrations`` (UriIndex) and ``registrations_by_id``: the dealer's.
* ``session.registrations``: the registrations a callee holds, for cleanup.
* ``session.invocations[invocation_id]``: calls a callee has yet to answer,
  keyed by the INVOCATION request ID, which is in the callee's session scope.
* ``session.calls[call_request_id]``: the same records from the caller's side,
  and the :class:`ProcedureCall` of a router procedure that answers later.

A record lives in both of the last two until the final YIELD or ERROR, a
cancel, or either session leaving; whoever ends it removes it from both, so
no call hangs and nothing leaks.

Across nodes (``dealer.cluster``, set by relayrouter/cluster/ when the realm
is clustered): the index holds every registration of the cluster, and a
registration's ``callees`` are this node's sessions and stand-ins for the
other nodes' (same ``supports``/``peer.send``/``invocations`` surface), in
the cluster's registration order.  A REGISTER is confirmed by the cluster
(:meth:`Dealer.confirm`) once its directory took it; the dealer tells it when
a callee drops a registration and when a caller leaves.
"""

import random

from autobahn.wamp import message as m

from . import errors, messages
from .ids import SequentialIds
from .limits import call_refused, refuse, registration_refused
from .messages import ppt_options
from .procedures import ProcedureCall
from .matching import EXACT, UriIndex
from .uri import pattern_problem

CALL = "call"
REGISTER = "register"

PPT_FEATURE = "payload_passthru_mode"
CANCELING_FEATURE = "call_canceling"

# CANCEL.Options.mode
SKIP = "skip"
KILL = "kill"
KILLNOWAIT = "killnowait"

_NO_OPTIONS: dict = {}

SINGLE = "single"
INVOKE_POLICIES = (SINGLE, "roundrobin", "random", "first", "last")


class Registration:
    __slots__ = ("id", "uri", "match", "invoke", "callees", "created", "_next", "choose")

    def __init__(self, reg_id: int, uri: str, match: str, invoke: str, created: float) -> None:
        self.id = reg_id
        self.uri = uri
        self.match = match
        self.invoke = invoke
        self.callees: list = []
        self.created = created
        self._next = 0  # roundrobin position
        # A cluster's roundrobin over every node's callees (cluster/turns.py): f(callees) -> callee.
        self.choose = None

    def pick(self, prefer_local: bool = False):
        """The callee the next call goes to, by the shared registration policy;
        ``prefer_local``: roundrobin and random among this node's callees when
        there are any (a cluster's other nodes' callees are ``on_other_node``)."""
        callees = self.callees
        if prefer_local and self.invoke in ("roundrobin", "random"):
            callees = [c for c in callees if not getattr(c, "on_other_node", False)] or callees
        if self.invoke == "roundrobin":
            if self.choose is not None and callees is self.callees:  # not narrowed to this node's
                return self.choose(callees)
            self._next %= len(callees)
            callee = callees[self._next]
            self._next += 1
            return callee
        if self.invoke == "random":
            return random.choice(callees)
        if self.invoke == "last":
            return callees[-1]
        return callees[0]  # single, first


class PendingCall:
    __slots__ = ("caller", "call_request", "callee", "invocation", "registration",
                 "receive_progress", "timer", "interrupted", "started")

    def __init__(self, caller, call_request, callee, invocation, registration, receive_progress,
                 started: float = 0.0):
        self.caller = caller
        self.call_request = call_request
        self.callee = callee
        self.invocation = invocation
        self.registration = registration
        self.receive_progress = receive_progress
        self.timer = None  # the router's CALL.Options.timeout, while it runs
        self.interrupted = False  # INTERRUPT (mode kill) sent, waiting for the callee
        self.started = started  # the clock when the CALL came, for the router's latency figures


class Dealer:
    def __init__(self, realm) -> None:
        self.realm = realm
        self.registrations = UriIndex[Registration]()
        self.registrations_by_id: dict[int, Registration] = {}
        self._ids = SequentialIds()
        self.cluster = None  # relayrouter.cluster.calls.Calls when the realm is clustered
        self.prefer_local = False  # [cluster] prefer_local_callees

    # ------------------------------------------------------------ registering

    def register(self, session, msg: m.Register) -> None:
        match = msg.match or EXACT
        invoke = msg.invoke or SINGLE
        problem = pattern_problem(msg.procedure, match)
        if problem is not None:
            _error(session, msg, errors.INVALID_URI, f"cannot register: {problem}")
            return
        if invoke not in INVOKE_POLICIES:
            _error(session, msg, errors.INVALID_ARGUMENT,
                   f"unknown invoke policy '{invoke}' (use {', '.join(INVOKE_POLICIES)})")
            return
        refusal = self.realm.authorize(session, REGISTER, msg.procedure, match)
        if refusal is not None:
            _error(session, msg, errors.NOT_AUTHORIZED, refusal)
            return
        if match == EXACT and msg.procedure in self.realm.procedures:
            _error(session, msg, errors.PROCEDURE_ALREADY_EXISTS,
                   f"'{msg.procedure}' is a procedure the router implements")
            return
        registration = self.registrations.get(msg.procedure, match)
        if registration is not None:
            problem = _join_problem(registration, session, invoke)
            if problem is not None:
                _error(session, msg, errors.PROCEDURE_ALREADY_EXISTS, problem)
                return
        over = registration_refused(session, 0 if self.cluster is None else self.cluster.registering(session))
        if over is not None:
            refuse(session, msg, "max_registrations", over)
            return
        if self.cluster is not None and self.cluster.register(self, session, msg, match, invoke):
            return  # confirmed once the cluster's directory took it
        created = registration is None
        if created:
            registration = Registration(self._ids.next(), msg.procedure, match, invoke, self.realm.now())
            self.registrations.add(msg.procedure, match, registration)
            self.registrations_by_id[registration.id] = registration
        registration.callees.append(session)
        self.confirm(session, msg.request, registration, created)

    def confirm(self, session, request: int, registration: Registration, created: bool) -> None:
        """``session`` is one of ``registration``'s callees (already in its ``callees``): REGISTERED."""
        session.registrations.setdefault(registration)
        session.peer.send(m.Registered(request, registration.id))
        self.realm.observer.registered(session, registration, created)

    def unregister(self, session, msg: m.Unregister) -> None:
        registration = self.registrations_by_id.get(msg.registration)
        if registration is None or session not in registration.callees:
            _error(session, msg, errors.NO_SUCH_REGISTRATION,
                   f"this session has no registration {msg.registration}")
            return
        self._drop(session, registration)
        session.peer.send(m.Unregistered(msg.request))

    def _drop(self, session, registration: Registration) -> None:
        registration.callees.remove(session)
        session.registrations.pop(registration, None)
        deleted = not registration.callees
        if deleted:
            self.registrations.remove(registration.uri, registration.match)
            del self.registrations_by_id[registration.id]
        self.realm.observer.unregistered(session, registration, deleted)
        if self.cluster is not None:
            self.cluster.dropped(self, registration)

    # ----------------------------------------------------------------- calling

    def call(self, session, msg: m.Call, options: dict = _NO_OPTIONS) -> None:
        """A CALL from ``session``; ``options`` is its raw Options dict."""
        # Autobahn's message attributes are properties (calls): each is read once here.
        request, uri = msg.request, msg.procedure
        if request in session.calls:
            raise errors.ProtocolViolation(f"CALL request ID {request} is already in use by a pending call")
        ppt = ppt_options(options)
        if ppt is not None and not session.supports("caller", PPT_FEATURE):
            raise errors.ProtocolViolation(
                "CALL uses payload passthru mode (ppt_scheme) but the session did not "
                "announce payload_passthru_mode for its caller role")
        # Authorized first: a refused caller learns nothing of which procedures exist.
        refusal = self.realm.authorize(session, CALL, uri)
        if refusal is not None:
            _error(session, msg, errors.NOT_AUTHORIZED, refusal)
            return
        # Router procedures first: no registration can shadow them.
        procedure = self.realm.procedures.get(uri)
        registration = None if procedure is not None else self.registrations.best(uri)
        if procedure is None and registration is None:
            absent = self.realm.pairs.absent_callee(uri) if self.realm.pairs else None
            error_uri, text = absent or (errors.NO_SUCH_PROCEDURE, f"no callee has registered '{uri}'")
            _error(session, msg, error_uri, text)
            return
        disclose = options.get("disclose_me") is True
        if disclose and not self.realm.may_disclose_caller(session, uri):
            _error(session, msg, errors.DISCLOSE_ME_DISALLOWED,
                   "this realm does not let callers disclose their identity")
            return
        over = call_refused(session)
        if over is not None:
            refuse(session, msg, "max_pending_calls", over)
            return
        if procedure is not None:
            self.realm.procedures.run(procedure, ProcedureCall(self.realm, session, msg, options))
            return
        self._invoke(session, msg, request, uri, registration, disclose, ppt)

    def _invoke(self, session, msg: m.Call, request: int, uri: str, registration: Registration,
                disclose: bool, ppt) -> None:
        callee = registration.pick(self.prefer_local)
        if ppt is not None and not callee.supports("callee", PPT_FEATURE):
            _error(session, msg, errors.FEATURE_NOT_SUPPORTED,
                   f"the callee of '{uri}' does not support payload passthru mode")
            return
        invocation = callee.next_invocation_id()
        clock = self.realm.router.clock
        timeout, receive_progress = msg.timeout, msg.receive_progress
        pending = PendingCall(session, request, callee, invocation, registration,
                              bool(receive_progress), clock.seconds())
        session.calls[request] = pending
        callee.invocations[invocation] = pending
        if timeout:
            # "CALL.Options.timeout|integer in ms. A timeout value of 0 deactivates automatic call timeout"
            pending.timer = clock.callLater(timeout / 1000.0, self._timed_out, pending)
        callee.peer.send(messages.invocation(
            ppt,
            invocation,
            registration.id,
            args=msg.args,
            kwargs=msg.kwargs,
            payload=msg.payload,
            timeout=timeout or None,
            receive_progress=receive_progress or None,
            caller=session.session_id if disclose else None,
            caller_authid=session.authid if disclose else None,
            caller_authrole=session.authrole if disclose else None,
            procedure=uri if registration.match != EXACT else None,
            enc_algo=msg.enc_algo,
            enc_key=msg.enc_key,
            enc_serializer=msg.enc_serializer,
        ))

    def yield_(self, session, msg: m.Yield, options: dict = _NO_OPTIONS) -> None:
        pending = session.invocations.get(msg.request)
        if pending is None:
            return  # the call was canceled or its caller left: late answers are dropped
        ppt = ppt_options(options)
        if ppt is not None and not self._ppt_yield_allowed(session, msg, pending):
            return
        progress = bool(msg.progress)
        if progress and not pending.receive_progress:
            return  # the caller did not ask for progressive results
        if not progress:
            self._forget(pending)
            router = self.realm.router
            router.stats.call_latency.observe(router.clock.seconds() - pending.started)
        pending.caller.peer.send(messages.result(
            ppt,
            pending.call_request,
            args=msg.args,
            kwargs=msg.kwargs,
            payload=msg.payload,
            progress=progress or None,
            enc_algo=msg.enc_algo,
            enc_key=msg.enc_key,
            enc_serializer=msg.enc_serializer,
        ))

    def _ppt_yield_allowed(self, session, msg: m.Yield, pending: PendingCall) -> bool:
        if not session.supports("callee", PPT_FEATURE):
            raise errors.ProtocolViolation(
                "YIELD uses payload passthru mode (ppt_scheme) but the session did not "
                "announce payload_passthru_mode for its callee role")
        if not pending.caller.supports("caller", PPT_FEATURE):
            # "the Dealer MUST respond to the Callee with a wamp.error.feature_not_supported"
            session.peer.send(m.Error(m.Yield.MESSAGE_TYPE, msg.request, errors.FEATURE_NOT_SUPPORTED,
                                      args=["the caller does not support payload passthru mode"]))
            return False
        return True

    def invocation_error(self, session, msg: m.Error, details: dict = _NO_OPTIONS) -> None:
        pending = session.invocations.get(msg.request)
        if pending is None:
            return
        self._forget(pending)
        self._answered(pending)
        pending.caller.peer.send(messages.error(
            ppt_options(details),
            m.Call.MESSAGE_TYPE, pending.call_request, msg.error,
            args=msg.args, kwargs=msg.kwargs, payload=msg.payload,
            enc_algo=msg.enc_algo, enc_key=msg.enc_key, enc_serializer=msg.enc_serializer,
        ))

    # --------------------------------------------------------------- canceling

    def cancel(self, session, msg: m.Cancel) -> None:
        pending = session.calls.get(msg.request)
        if pending is None:
            return  # already answered: "the Dealer ... MUST ignore the CANCEL"
        if type(pending) is ProcedureCall:
            pending.cancel()  # the router is the callee: it always stops
            return
        mode = msg.mode or KILLNOWAIT
        # "If the callee does not support call canceling, then behavior is skip."
        if not pending.callee.supports("callee", CANCELING_FEATURE):
            mode = SKIP
        if mode == KILL:
            # "ERROR is not returned to the caller until after the callee has responded"
            if not pending.interrupted:
                pending.interrupted = True
                pending.callee.peer.send(m.Interrupt(pending.invocation, mode=KILL))
            return
        self._end_canceled(pending, mode, "the call was canceled by its caller")

    def _timed_out(self, pending: PendingCall) -> None:
        pending.timer = None
        mode = KILLNOWAIT if pending.callee.supports("callee", CANCELING_FEATURE) else SKIP
        self._end_canceled(pending, mode, "the call timed out (CALL.Options.timeout)")

    def _end_canceled(self, pending: PendingCall, mode: str, text: str) -> None:
        """skip / killnowait: the caller hears at once; any later answer is dropped."""
        self._forget(pending)
        if mode == KILLNOWAIT:
            pending.callee.peer.send(m.Interrupt(pending.invocation, mode=KILLNOWAIT))
        pending.caller.peer.send(m.Error(
            m.Call.MESSAGE_TYPE, pending.call_request, errors.CANCELED, args=[text]))

    # ---------------------------------------------------------------- leaving

    def remove_session(self, session) -> None:
        for registration in list(session.registrations):
            self._drop(session, registration)
        for pending in list(session.invocations.values()):
            self._forget(pending)
            pending.caller.peer.send(m.Error(
                m.Call.MESSAGE_TYPE, pending.call_request, errors.CANCELED,
                args=["the callee left before answering the call"]))
        for pending in list(session.calls.values()):
            if type(pending) is ProcedureCall:
                pending.caller_left()
            else:
                self._forget(pending)
                if self.cluster is not None:
                    self.cluster.caller_left(pending)

    def _answered(self, pending: PendingCall) -> None:
        router = self.realm.router
        router.stats.call_latency.observe(router.clock.seconds() - pending.started)

    def _forget(self, pending: PendingCall) -> None:
        pending.caller.calls.pop(pending.call_request, None)
        pending.callee.invocations.pop(pending.invocation, None)
        if pending.timer is not None:
            pending.timer.cancel()
            pending.timer = None


def _join_problem(registration: Registration, session, invoke: str) -> str | None:
    if session in registration.callees:
        return f"this session has already registered '{registration.uri}'"
    if registration.invoke == SINGLE or invoke == SINGLE:
        return f"'{registration.uri}' is already registered by another callee"
    if registration.invoke != invoke:
        return (f"'{registration.uri}' is registered with invoke policy "
                f"'{registration.invoke}', not '{invoke}'")
    return None


def _error(session, request, uri: str, text: str) -> None:
    session.peer.send(m.Error(request.MESSAGE_TYPE, request.request, uri, args=[text]))
