"""The router side of one WAMP session, as a state machine.

Theory of operation
-------------------
A :class:`RouterSession` lives as long as its transport.  Every message the
peer sends is looked up in ``_TABLE`` by ``(state, message type)``; the entry
is ``(handler, next state)``: the session enters the next state, then runs
the handler, which may only end it early (ABORT, through the same table).
What happens to a session from our side (an authenticator's decision, the
router closing it, the transport going away) is an event in the same table,
keyed by a name instead of a message type, so no state is set anywhere else.
A message with no entry is a protocol violation: the spec says "a Peer MUST
... ABORT the session" and we do, with a message naming what was wrong.  Faults are split the h11 way: :class:`ProtocolViolation` is the
peer's doing (ABORT), anything else raised while handling is ours (logged by
the caller through ``on_internal_error``, answered with ABORT too, and never
allowed to escape into the transport).

States::

    HELLO_WAIT --HELLO--> AUTH_PENDING --accept--> ESTABLISHED
                          AUTH_PENDING --challenge--> CHALLENGED --AUTHENTICATE--> AUTH_PENDING
                          AUTH_PENDING --deny--> CLOSED
    HELLO_WAIT --bridged (join_authenticated)--> ESTABLISHED
    ESTABLISHED --GOODBYE--> HELLO_WAIT   (the transport may carry a new session)
    ESTABLISHED --router goodbye--> CLOSING --GOODBYE--> HELLO_WAIT
    any --ABORT sent or received / transport lost--> CLOSED
"""

import enum
from typing import Any, Callable

from autobahn.wamp import message as m

from . import errors
from .auth import Accept, Challenge, Deny, JoinRequest
from .codec import parse
from .errors import InvalidUriRequest, ProtocolViolation
from .ids import SequentialIds
from .limits import admit_message
from .peer import Peer, TransportInfo


class State(enum.Enum):
    HELLO_WAIT = "hello-wait"
    AUTH_PENDING = "auth-pending"  # an authenticator is deciding asynchronously
    CHALLENGED = "challenged"
    ESTABLISHED = "established"
    CLOSING = "closing"  # we sent GOODBYE, waiting for the peer's
    CLOSED = "closed"


class RouterSession:
    """One peer's session: authentication, then dispatch to its realm."""

    __slots__ = (
        "router", "peer", "transport", "state", "realm", "session_id",
        "authid", "authrole", "authmethod", "authprovider", "authextra",
        "permissions", "expires_at", "features", "subscriptions", "registrations",
        "invocations", "calls", "testaments", "limiter", "_received",
        "_invocation_ids", "_join", "_authenticator", "_challenge_state",
        "__weakref__",
    )

    def __init__(self, router, peer: Peer, transport: TransportInfo) -> None:
        self.router = router
        self._received = router.stats.received  # messages accepted, by type (metrics)
        self.peer = peer
        self.transport = transport
        self.state = State.HELLO_WAIT
        self.realm = None
        self.session_id = 0
        self.authid = self.authrole = self.authmethod = self.authprovider = None
        self.authextra = None
        self.permissions = None
        self.expires_at = None
        # role -> the feature names the peer announced as true, from the raw
        # HELLO (Autobahn's role classes drop features they do not know).
        self.features: dict[str, frozenset] = {}
        # Owned by the broker and dealer of this session's realm; dicts used as
        # ordered sets (an empty dict is a quarter of an empty set's size).
        self.subscriptions: dict = {}
        self.registrations: dict = {}
        self.invocations: dict = {}  # INVOCATION request ID -> PendingCall (as callee)
        self.calls: dict = {}  # CALL request ID -> PendingCall (as caller)
        # Owned by the realm's meta API: scope ("detached"/"destroyed") -> [Publish]
        self.testaments: dict = {}
        self.limiter = None  # limits.SessionLimiter, while established
        # "INVOCATION.Request ... MUST be unique within the scope of the callee session"
        self._invocation_ids = SequentialIds()
        self._join: JoinRequest | None = None
        self._authenticator = None
        self._challenge_state = None

    def __repr__(self) -> str:
        return f"<RouterSession {self.session_id} {self.authid} {self.state.value}>"

    # ------------------------------------------------------------------ input

    def receive(self, raw: list) -> None:
        """One decoded WAMP array from the peer."""
        try:
            message = parse(raw)
        except InvalidUriRequest as e:
            self._answer_invalid_uri(e)
            return
        except ProtocolViolation as e:
            self.protocol_violation(str(e))
            return
        self.receive_message(message, raw)

    def receive_message(self, message: m.Message, raw: list | None = None) -> None:
        """One parsed message; ``raw`` carries options Autobahn's classes drop (disclose_me)."""
        mtype = message.MESSAGE_TYPE
        entry = _TABLE.get((self.state, mtype))
        if entry is None:
            self._unexpected(message)
            return
        if self.limiter is not None and not admit_message(self, message):
            return
        self._received[mtype] += 1
        handler, self.state = entry
        try:
            handler(self, message, raw)
        except ProtocolViolation as e:
            self.protocol_violation(str(e))
        except Exception as e:  # our fault: never let it reach the transport
            self.router.on_internal_error(self, e)
            self.abort(errors.INTERNAL_ERROR, "the router failed to handle a message; see its log")

    def _happen(self, event: str, what: Any = None) -> bool:
        """An event from our side, by the table; False when the state has none for it."""
        entry = _TABLE.get((self.state, event))
        if entry is None:
            return False
        handler, self.state = entry
        handler(self, what)
        return True

    def transport_lost(self) -> None:
        """The connection is gone, cleanly or not."""
        self._happen(LOST)

    def protocol_violation(self, text: str) -> None:
        """The peer broke the protocol: ABORT, and detach."""
        self.router.on_protocol_violation(self, text)
        self.abort(errors.PROTOCOL_VIOLATION, text)

    def next_invocation_id(self) -> int:
        return self._invocation_ids.next()

    def supports(self, role: str, feature: str) -> bool:
        """Whether the peer announced ``feature`` for ``role`` in its HELLO."""
        return feature in self.features.get(role, ())

    # ----------------------------------------------------------------- output

    def abort(self, reason: str, text: str) -> None:
        """ABORT the session (nothing happens once it is closed)."""
        self._happen(ROUTER_ABORT, (reason, text))

    def goodbye(self, reason: str = errors.CLOSE_NORMAL, text: str | None = None) -> None:
        """The router ends the session (kill, shutdown, revocation, ...): GOODBYE
        when established, ABORT while it is still joining."""
        self._happen(ROUTER_GOODBYE, (reason, text))

    def join_authenticated(self, accept: Accept) -> bool:
        """Join ``accept.realm`` without a HELLO, for a router-side bridge whose
        peer authenticated some other way (the raw relay's one-time code).
        Admission (deny list, expiry, limits) applies as to any session; a
        refusal ABORTs to the peer.  True when the session is established."""
        if accept.realm is None or not self._happen(BRIDGED, accept):
            raise ValueError("join_authenticated needs a fresh session and an Accept naming its realm")
        return self.state is State.ESTABLISHED

    def _send_abort(self, reason_and_text: tuple[str, str]) -> None:
        self._leave_realm()
        self.peer.send(m.Abort(*reason_and_text))
        self.peer.close()

    def _send_goodbye(self, reason_and_text: tuple[str, str | None]) -> None:
        self._leave_realm()
        self.peer.send(m.Goodbye(*reason_and_text))

    def _abort_joining(self, reason_and_text: tuple[str, str | None]) -> None:
        reason, text = reason_and_text
        self._send_abort((reason, text or "the router is closing the connection"))

    def _lost(self, what=None) -> None:
        self._leave_realm()

    # ------------------------------------------------------------ establishing

    def _on_hello(self, hello: m.Hello, raw=None) -> None:
        realm = self.router.realms.get(hello.realm)
        if realm is None:
            self.abort(errors.NO_SUCH_REALM, f"no realm named '{hello.realm}' on this router")
            return
        self._join = JoinRequest(
            realm=hello.realm,
            authmethods=tuple(hello.authmethods or ("anonymous",)),
            authid=hello.authid,
            authrole=hello.authrole,
            authextra=hello.authextra or {},
            transport=self.transport,
        )
        self.features = _announced_features(raw)
        for method in self._join.authmethods:
            authenticator = realm.authenticators.get(method)
            if authenticator is not None:
                self._authenticator = authenticator
                self._decide(authenticator.hello(self._join))
                return
        offered = ", ".join(self._join.authmethods)
        self.abort(errors.AUTHENTICATION_FAILED,
                   f"none of the offered authmethods ({offered}) is enabled on realm '{hello.realm}'")

    def _on_authenticate(self, authenticate: m.Authenticate, raw=None) -> None:
        state, self._challenge_state = self._challenge_state, None
        self._decide(self._authenticator.authenticate(
            self._join, state, authenticate.signature, authenticate.extra or {}))

    def _decide(self, decision: Any) -> None:
        """An authenticator's decision, now or later (AUTH_PENDING until then)."""
        if hasattr(decision, "addBoth"):
            decision.addBoth(self._decided_later)
            return
        for kind, event in _DECISIONS:
            if isinstance(decision, kind):
                self._happen(event, decision)
                return
        raise TypeError(f"authenticator returned {decision!r}, not a decision")

    def _decided_later(self, decision: Any) -> None:
        if self.state is not State.AUTH_PENDING:
            return  # the peer left while we were deciding
        if not isinstance(decision, (Accept, Challenge, Deny)):
            self.router.on_internal_error(self, decision)
            decision = Deny("the router could not check the credentials; try again later")
        self._decide(decision)

    def _challenge(self, challenge: Challenge) -> None:
        self._challenge_state = challenge.state
        self.peer.send(m.Challenge(challenge.method, challenge.extra))

    def _deny(self, deny: Deny) -> None:
        self.router.on_auth_denied(self, deny)
        self._send_abort((deny.reason, deny.message))

    def _welcome(self, accept: Accept) -> None:
        realm_name = accept.realm or self._join.realm
        realm = self.router.realms.get(realm_name)
        if realm is None:
            self.abort(errors.NO_SUCH_REALM, f"no realm named '{realm_name}' on this router")
            return
        refusal = realm.admission(self, accept)
        if refusal is not None:
            self.abort(*refusal)
            return
        self.authid = accept.authid
        self.authrole = accept.authrole
        self.authmethod = accept.authmethod
        self.authprovider = accept.authprovider
        self.authextra = accept.authextra
        self.permissions = accept.permissions
        self.expires_at = accept.expires_at
        self._join = self._authenticator = None
        realm.attach(self)
        self.peer.send(m.Welcome(
            self.session_id,
            realm.welcome_roles or self.router.welcome_roles,
            realm=realm.name,
            authid=self.authid,
            authrole=self.authrole,
            authmethod=self.authmethod,
            authprovider=self.authprovider,
            authextra=self.authextra or None,
        ))
        realm.joined(self)

    # ----------------------------------------------------------------- closing

    def _on_goodbye(self, goodbye: m.Goodbye, raw=None) -> None:
        # "the Peer receiving the GOODBYE ... replies with GOODBYE ... wamp.close.goodbye_and_out"
        self._leave_realm()
        self.peer.send(m.Goodbye(errors.CLOSE_GOODBYE_AND_OUT))

    def _on_goodbye_reply(self, goodbye: m.Goodbye, raw=None) -> None:
        self.peer.close()

    def _on_abort(self, abort: m.Abort, raw=None) -> None:
        self._leave_realm()
        self.peer.close()

    def _leave_realm(self) -> None:
        realm, self.realm = self.realm, None
        if realm is not None:
            realm.detach(self)
        self.session_id = 0
        self.limiter = None

    # ----------------------------------------------------- established: roles

    def _on_subscribe(self, msg: m.Subscribe, raw=None) -> None:
        self.realm.broker.subscribe(self, msg, _options(raw, 2))

    def _on_unsubscribe(self, msg: m.Unsubscribe, raw=None) -> None:
        self.realm.broker.unsubscribe(self, msg)

    def _on_publish(self, msg: m.Publish, raw=None) -> None:
        self.realm.broker.publish(self, msg, _options(raw, 2))

    def _on_register(self, msg: m.Register, raw=None) -> None:
        self.realm.dealer.register(self, msg)

    def _on_unregister(self, msg: m.Unregister, raw=None) -> None:
        self.realm.dealer.unregister(self, msg)

    def _on_call(self, msg: m.Call, raw=None) -> None:
        self.realm.dealer.call(self, msg, _options(raw, 2))

    def _on_cancel(self, msg: m.Cancel, raw=None) -> None:
        self.realm.dealer.cancel(self, msg)

    def _on_yield(self, msg: m.Yield, raw=None) -> None:
        self.realm.dealer.yield_(self, msg, _options(raw, 2))

    def _on_error(self, msg: m.Error, raw=None) -> None:
        if msg.request_type != m.Invocation.MESSAGE_TYPE:
            raise ProtocolViolation(
                f"ERROR may only answer an INVOCATION when sent to a router, not message type {msg.request_type}")
        self.realm.dealer.invocation_error(self, msg, _options(raw, 3))

    # ------------------------------------------------------------------ faults

    def _answer_invalid_uri(self, e: InvalidUriRequest) -> None:
        if self.state is not State.ESTABLISHED:
            self.protocol_violation(f"{e} (and the session is not established)")
            return
        self.peer.send(m.Error(e.request_type, e.request, errors.INVALID_URI, args=[str(e)]))

    def _unexpected(self, message: m.Message) -> None:
        name = type(message).__name__.upper()
        if self.state is State.CLOSING:
            return  # late traffic after our GOODBYE
        if self.state is State.CLOSED:
            return
        if self.state is State.HELLO_WAIT:
            text = f"{name} before HELLO: a session must start with HELLO"
        elif message.MESSAGE_TYPE == m.Hello.MESSAGE_TYPE:
            text = "HELLO received on a session that is already open or joining"
        else:
            text = f"{name} is not allowed while the session is {self.state.value}"
        self.protocol_violation(text)


_NO_OPTIONS: dict = {}


def _options(raw: list | None, index: int) -> dict:
    """The raw Options/Details dict of a message: Autobahn's classes drop what
    they do not know (disclose_me, ppt_*), so the roles read those from here."""
    if raw is None or len(raw) <= index:
        return _NO_OPTIONS
    options = raw[index]
    return options if type(options) is dict else _NO_OPTIONS


# Clients of one library announce the same features: share one copy of each
# distinct announcement instead of keeping a few kilobytes per session.
_SHARED_FEATURES: dict = {}
_SHARED_FEATURES_MAX = 1000
_NO_FEATURES: dict = {}


def _announced_features(raw: list | None) -> dict[str, frozenset]:
    details = raw[2] if raw is not None and len(raw) > 2 else None
    roles = details.get("roles") if type(details) is dict else None
    if type(roles) is not dict:
        return _NO_FEATURES
    announced = {}
    for role, info in roles.items():
        features = info.get("features") if type(info) is dict else None
        if type(features) is dict:
            announced[role] = frozenset(k for k, v in features.items() if v is True)
    key = frozenset(announced.items())
    shared = _SHARED_FEATURES.get(key)
    if shared is None:
        shared = announced
        if len(_SHARED_FEATURES) < _SHARED_FEATURES_MAX:
            _SHARED_FEATURES[key] = shared
    return shared


Handler = Callable[..., None]

# Events from our side, keyed like message types in the table.
ACCEPTED = "accepted"  # the authenticator accepted
CHALLENGED = "challenged"  # ... sent a challenge
DENIED = "denied"  # ... refused
BRIDGED = "bridged"  # join_authenticated: a router-side bridge joins without HELLO
ROUTER_GOODBYE = "router-goodbye"  # the router ends the session
ROUTER_ABORT = "router-abort"  # the router aborts it
LOST = "lost"  # the transport is gone

_DECISIONS = ((Accept, ACCEPTED), (Challenge, CHALLENGED), (Deny, DENIED))

_S = State
_T = {cls.__name__: cls.MESSAGE_TYPE for cls in (
    m.Hello, m.Authenticate, m.Abort, m.Goodbye, m.Error, m.Publish, m.Subscribe,
    m.Unsubscribe, m.Call, m.Cancel, m.Register, m.Unregister, m.Yield)}
_R = RouterSession

# (state, message type or event) -> (handler, next state)
_TABLE: dict[tuple[State, int | str], tuple[Handler, State]] = {
    (_S.HELLO_WAIT, _T["Hello"]): (_R._on_hello, _S.AUTH_PENDING),
    (_S.HELLO_WAIT, _T["Abort"]): (_R._on_abort, _S.CLOSED),
    (_S.HELLO_WAIT, BRIDGED): (_R._welcome, _S.ESTABLISHED),
    (_S.AUTH_PENDING, ACCEPTED): (_R._welcome, _S.ESTABLISHED),
    (_S.AUTH_PENDING, CHALLENGED): (_R._challenge, _S.CHALLENGED),
    (_S.AUTH_PENDING, DENIED): (_R._deny, _S.CLOSED),
    (_S.AUTH_PENDING, _T["Abort"]): (_R._on_abort, _S.CLOSED),
    (_S.CHALLENGED, _T["Authenticate"]): (_R._on_authenticate, _S.AUTH_PENDING),
    (_S.CHALLENGED, _T["Abort"]): (_R._on_abort, _S.CLOSED),
    (_S.ESTABLISHED, _T["Subscribe"]): (_R._on_subscribe, _S.ESTABLISHED),
    (_S.ESTABLISHED, _T["Unsubscribe"]): (_R._on_unsubscribe, _S.ESTABLISHED),
    (_S.ESTABLISHED, _T["Publish"]): (_R._on_publish, _S.ESTABLISHED),
    (_S.ESTABLISHED, _T["Register"]): (_R._on_register, _S.ESTABLISHED),
    (_S.ESTABLISHED, _T["Unregister"]): (_R._on_unregister, _S.ESTABLISHED),
    (_S.ESTABLISHED, _T["Call"]): (_R._on_call, _S.ESTABLISHED),
    (_S.ESTABLISHED, _T["Cancel"]): (_R._on_cancel, _S.ESTABLISHED),
    (_S.ESTABLISHED, _T["Yield"]): (_R._on_yield, _S.ESTABLISHED),
    (_S.ESTABLISHED, _T["Error"]): (_R._on_error, _S.ESTABLISHED),
    (_S.ESTABLISHED, _T["Goodbye"]): (_R._on_goodbye, _S.HELLO_WAIT),
    (_S.ESTABLISHED, _T["Abort"]): (_R._on_abort, _S.CLOSED),
    (_S.ESTABLISHED, ROUTER_GOODBYE): (_R._send_goodbye, _S.CLOSING),
    (_S.CLOSING, _T["Goodbye"]): (_R._on_goodbye_reply, _S.HELLO_WAIT),
    (_S.CLOSING, _T["Abort"]): (_R._on_abort, _S.CLOSED),
}
for _state in (_S.HELLO_WAIT, _S.AUTH_PENDING, _S.CHALLENGED):
    # Not established yet: there is nobody to say GOODBYE to.
    _TABLE[_state, ROUTER_GOODBYE] = (_R._abort_joining, _S.CLOSED)
for _state in _S:
    _TABLE[_state, LOST] = (_R._lost, _S.CLOSED)
    if _state is not _S.CLOSED:
        _TABLE[_state, ROUTER_ABORT] = (_R._send_abort, _S.CLOSED)
del _state
