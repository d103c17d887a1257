"""The dealer role: registrations, and calls routed to callees and back.

Indexes and who owns them
-------------------------
* ``registrations`` (UriIndex) and ``registrations_by_id``: the dealer's.
* ``session.registrations``: the registrations a callee holds, for cleanup.
* ``session.invocations[invocation_id]``: calls a callee has yet to answer,
  keyed by the INVOCATION request ID, which is in the callee's session scope.
* ``session.calls[call_request_id]``: the same records from the caller's side.

A record lives in both of the last two until the final YIELD or ERROR, a
cancel, or either session leaving; whoever ends it removes it from both, so
no call hangs and nothing leaks.
"""

import random

from autobahn.wamp import message as m

from . import errors
from .ids import SequentialIds
from .matching import EXACT, UriIndex
from .uri import pattern_problem

CALL = "call"
REGISTER = "register"

SINGLE = "single"
INVOKE_POLICIES = (SINGLE, "roundrobin", "random", "first", "last")


class Registration:
    __slots__ = ("id", "uri", "match", "invoke", "callees", "created", "_next")

    def __init__(self, reg_id: int, uri: str, match: str, invoke: str, created: float) -> None:
        self.id = reg_id
        self.uri = uri
        self.match = match
        self.invoke = invoke
        self.callees: list = []
        self.created = created
        self._next = 0  # roundrobin position

    def pick(self):
        """The callee the next call goes to, by the shared registration policy."""
        callees = self.callees
        if self.invoke == "roundrobin":
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
                 "receive_progress", "timer")

    def __init__(self, caller, call_request, callee, invocation, registration, receive_progress):
        self.caller = caller
        self.call_request = call_request
        self.callee = callee
        self.invocation = invocation
        self.registration = registration
        self.receive_progress = receive_progress
        self.timer = None


class Dealer:
    def __init__(self, realm) -> None:
        self.realm = realm
        self.registrations = UriIndex[Registration]()
        self.registrations_by_id: dict[int, Registration] = {}
        self._ids = SequentialIds()

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
        registration = self.registrations.get(msg.procedure, match)
        if registration is not None:
            problem = _join_problem(registration, session, invoke)
            if problem is not None:
                _error(session, msg, errors.PROCEDURE_ALREADY_EXISTS, problem)
                return
        created = registration is None
        if created:
            registration = Registration(self._ids.next(), msg.procedure, match, invoke, self.realm.now())
            self.registrations.add(msg.procedure, match, registration)
            self.registrations_by_id[registration.id] = registration
        registration.callees.append(session)
        session.registrations.add(registration)
        session.peer.send(m.Registered(msg.request, registration.id))
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
        session.registrations.discard(registration)
        deleted = not registration.callees
        if deleted:
            self.registrations.remove(registration.uri, registration.match)
            del self.registrations_by_id[registration.id]
        self.realm.observer.unregistered(session, registration, deleted)

    # ----------------------------------------------------------------- calling

    def call(self, session, msg: m.Call, disclose_me: bool = False) -> None:
        router_procedure = self.realm.router_procedures.get(msg.procedure)
        if router_procedure is not None:
            router_procedure(self.realm, session, msg)
            return
        # Authorized first: a refused caller learns nothing of which procedures exist.
        refusal = self.realm.authorize(session, CALL, msg.procedure)
        if refusal is not None:
            _error(session, msg, errors.NOT_AUTHORIZED, refusal)
            return
        registration = self.registrations.best(msg.procedure)
        if registration is None:
            _error(session, msg, errors.NO_SUCH_PROCEDURE,
                   f"no callee has registered '{msg.procedure}'")
            return
        if msg.request in session.calls:
            raise errors.ProtocolViolation(f"CALL request ID {msg.request} is already in use by a pending call")
        callee = registration.pick()
        invocation = callee.next_invocation_id()
        disclose = disclose_me and self.realm.may_disclose_caller(session, msg.procedure)
        pending = PendingCall(session, msg.request, callee, invocation, registration,
                              bool(msg.receive_progress))
        session.calls[msg.request] = pending
        callee.invocations[invocation] = pending
        callee.peer.send(m.Invocation(
            invocation,
            registration.id,
            args=msg.args,
            kwargs=msg.kwargs,
            payload=msg.payload,
            timeout=msg.timeout,
            receive_progress=msg.receive_progress or None,
            caller=session.session_id if disclose else None,
            caller_authid=session.authid if disclose else None,
            caller_authrole=session.authrole if disclose else None,
            procedure=msg.procedure if registration.match != EXACT else None,
            enc_algo=msg.enc_algo,
            enc_key=msg.enc_key,
            enc_serializer=msg.enc_serializer,
        ))

    def yield_(self, session, msg: m.Yield) -> None:
        pending = session.invocations.get(msg.request)
        if pending is None:
            return  # the call was canceled or its caller left: late answers are dropped
        progress = bool(msg.progress)
        if progress and not pending.receive_progress:
            return  # the caller did not ask for progressive results
        if not progress:
            self._forget(pending)
        pending.caller.peer.send(m.Result(
            pending.call_request,
            args=msg.args,
            kwargs=msg.kwargs,
            payload=msg.payload,
            progress=progress or None,
            enc_algo=msg.enc_algo,
            enc_key=msg.enc_key,
            enc_serializer=msg.enc_serializer,
        ))

    def invocation_error(self, session, msg: m.Error) -> None:
        pending = session.invocations.get(msg.request)
        if pending is None:
            return
        self._forget(pending)
        pending.caller.peer.send(m.Error(
            m.Call.MESSAGE_TYPE, pending.call_request, msg.error,
            args=msg.args, kwargs=msg.kwargs, payload=msg.payload,
            enc_algo=msg.enc_algo, enc_key=msg.enc_key, enc_serializer=msg.enc_serializer,
        ))

    def cancel(self, session, msg: m.Cancel) -> None:
        pending = session.calls.get(msg.request)
        if pending is None:
            return  # already answered: "the Dealer ... MUST ignore the CANCEL"
        self._forget(pending)
        pending.caller.peer.send(m.Error(
            m.Call.MESSAGE_TYPE, pending.call_request, errors.CANCELED,
            args=["the call was canceled by its caller"]))

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
            self._forget(pending)

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
