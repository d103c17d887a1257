"""Procedures the router answers itself: one registry per realm, one handler signature.

Theory of operation
-------------------
Every feature that answers CALLs in the router (the meta API, the deny list;
later history, mailboxes, stats) adds its procedures to the realm's
:class:`ProcedureRegistry` with ``realm.procedures.add(uri, handler)``.  The
dealer handles a CALL to one of those URIs like any CALL up to the point where
it would look for a callee: request ID check, payload passthru check, the
realm's authorization for ``call`` on the URI, ``disclose_me``, the session's
pending-call limit.  Then, instead of an INVOCATION, it runs the handler.
Clients cannot register those URIs (exact match), and no pattern registration
can shadow them: the registry is consulted before the registration index.

A handler is ``handler(call) -> value``, where ``call`` is a
:class:`ProcedureCall`:

* a plain return value answers at once, RESULT ``args=[value]`` (``None``:
  RESULT with no arguments);
* raising :class:`ProcedureError` answers ERROR with its URI and message;
* a handler may also answer itself (``call.result(...)``, e.g. to send
  ``args=[None]``, or ``call.error(...)``) before returning: what it returns
  is then ignored;
* returning :data:`PENDING` means "I answer later": the call stays open
  (it counts as a pending call of the caller) until the handler calls
  ``call.result(...)`` or ``call.error(...)``; meanwhile it may send
  ``call.progress(...)`` (only if the caller asked for progressive results).

A pending call ends early on CANCEL (any mode), on CALL.Options.timeout, and
when the caller's session ends.  Every function given to ``call.on_cancel``
is then called once, with the reason; on CANCEL and timeout the caller gets
ERROR ``wamp.error.canceled`` unless the handler answered from its callback.
Once a call is answered or ended, ``result``/``progress``/``error`` do
nothing and return False, so a late store completion cannot reach a session
that has left (or a new session on the same connection).

A handler that raises anything else is a router bug: it is reported through
the router observer (logged by the Twisted side) and the caller gets ERROR
``relayrouter.error.internal``; its session is not touched.

Feature checks beyond the realm's role rules (admin only, owner only) are
the handler's: :class:`AdminPolicy` is the shared "who administers" check.
"""

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from autobahn.wamp import message as m

from . import errors
from .uri import uri_problem

CANCELED_BY_CALLER = "canceled"
TIMED_OUT = "timeout"
CALLER_LEFT = "caller_left"


class _Pending:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()  # returned by a handler that will answer later


class ProcedureError(Exception):
    """A router procedure refuses: answered with ERROR ``uri``, ``args=[message, *args]``, ``kwargs``."""

    def __init__(self, uri: str, message: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(message)
        self.uri = uri
        self.message = message
        self.error_args = args
        self.error_kwargs = kwargs


Handler = Callable[["ProcedureCall"], Any]


class ProcedureRegistry:
    """A realm's router procedures, by exact URI."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self.get = self._handlers.get  # the dealer's lookup, once per CALL

    def add(self, uri: str, handler: Handler) -> None:
        problem = uri_problem(uri)
        if problem is not None:
            raise ValueError(f"cannot add router procedure '{uri}': {problem}")
        if uri in self._handlers:
            raise ValueError(f"router procedure '{uri}' is already added")
        self._handlers[uri] = handler

    def remove(self, uri: str) -> None:
        del self._handlers[uri]

    def __contains__(self, uri: str) -> bool:
        return uri in self._handlers

    def uris(self) -> list[str]:
        return sorted(self._handlers)

    def run(self, handler: Handler, call: "ProcedureCall") -> None:
        """Run ``handler`` for ``call`` and answer by what it returned or raised."""
        try:
            value = handler(call)
        except ProcedureError as e:
            call.error(e.uri, e.message, *e.error_args, **e.error_kwargs)
            return
        except Exception as e:  # a bug in a feature: the caller hears, the router logs
            call.session.router.on_internal_error(call.session, e)
            call.error(errors.INTERNAL_ERROR, f"the router failed to answer '{call.procedure}'; see its log")
            return
        if call.done:
            return  # it answered itself (call.result / call.error) before returning
        if value is PENDING:
            call._wait()
        elif value is None:
            call.result()
        else:
            call.result(value)


class ProcedureCall:
    """One CALL to a router procedure, as its handler sees it."""

    PENDING = PENDING

    __slots__ = ("realm", "session", "procedure", "request", "args", "kwargs", "options",
                 "receive_progress", "timeout", "_open", "_waiting", "_cancel_fns", "_timer")

    def __init__(self, realm, session, msg: m.Call, options: Mapping) -> None:
        self.realm = realm
        self.session = session  # the caller
        self.procedure: str = msg.procedure
        self.request: int = msg.request
        self.args: list = list(msg.args or ())
        self.kwargs: dict = dict(msg.kwargs or {})
        self.options: Mapping = options  # the CALL's raw Options
        self.receive_progress: bool = bool(msg.receive_progress)
        self.timeout: int = msg.timeout or 0  # ms, 0 for none
        self._open = True
        self._waiting = False
        self._cancel_fns: list = []
        self._timer = None

    def __repr__(self) -> str:
        return f"<ProcedureCall {self.procedure} request={self.request} open={self._open}>"

    @property
    def done(self) -> bool:
        """True once answered, canceled, timed out, or the caller left."""
        return not self._open

    # ---------------------------------------------------------------- answers

    def result(self, *args: Any, **kwargs: Any) -> bool:
        """The final RESULT; False (nothing sent) if the call is over already."""
        if not self._open:
            return False
        self._end()
        self.session.peer.send(m.Result(self.request, args=list(args) or None, kwargs=kwargs or None))
        return True

    def progress(self, *args: Any, **kwargs: Any) -> bool:
        """A progressive RESULT; sent only while open and if the caller asked (receive_progress)."""
        if not self._open or not self.receive_progress:
            return False
        self.session.peer.send(m.Result(self.request, args=list(args) or None, kwargs=kwargs or None,
                                        progress=True))
        return True

    def error(self, uri: str, message: str, *args: Any, **kwargs: Any) -> bool:
        """ERROR ``uri`` with ``args=[message, *args]``; False if the call is over already."""
        if not self._open:
            return False
        self._end()
        self.session.peer.send(m.Error(m.Call.MESSAGE_TYPE, self.request, uri,
                                       args=[message, *args], kwargs=kwargs or None))
        return True

    def on_cancel(self, fn: Callable[[str], Any]) -> None:
        """Call ``fn(reason)`` if the call ends unanswered: "canceled", "timeout" or "caller_left"."""
        self._cancel_fns.append(fn)

    # ------------------------------------------------------ the dealer's side

    def _wait(self) -> None:
        """The handler answers later: hold the call as one of the caller's pending calls."""
        if not self._open:
            return  # it answered before returning PENDING
        self._waiting = True
        self.session.calls[self.request] = self
        if self.timeout:
            # "CALL.Options.timeout|integer in ms. A timeout value of 0 deactivates automatic call timeout"
            self._timer = self.realm.router.clock.callLater(self.timeout / 1000.0, self._timed_out)

    def cancel(self) -> None:
        """CANCEL from the caller (every mode: the router is its own callee and always stops)."""
        self._stop(CANCELED_BY_CALLER, "the call was canceled by its caller")

    def caller_left(self) -> None:
        """The caller's session ended: nobody to answer."""
        if self._open:
            self._end()
            self._tell(CALLER_LEFT)

    def _timed_out(self) -> None:
        self._timer = None
        self._stop(TIMED_OUT, "the call timed out (CALL.Options.timeout)")

    def _stop(self, reason: str, text: str) -> None:
        if not self._open:
            return
        self._tell(reason)
        self.error(errors.CANCELED, text)

    def _tell(self, reason: str) -> None:
        fns, self._cancel_fns = self._cancel_fns, []
        for fn in fns:
            try:
                fn(reason)
            except Exception as e:
                self.session.router.on_internal_error(self.session, e)

    def _end(self) -> None:
        self._open = False
        if self._waiting:
            self._waiting = False
            if self.session.calls.get(self.request) is self:
                del self.session.calls[self.request]
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


# ------------------------------------------------------- shared feature checks


@dataclass(frozen=True, slots=True)
class AdminPolicy:
    """Who may administer: sessions or tokens with one of ``roles``, or ``scope`` among their scopes."""

    roles: frozenset = frozenset()
    scope: str | None = None
    scopes_claim: str = "scopes"

    def admits(self, authrole: str | None, claims: Mapping | None) -> bool:
        if authrole in self.roles:
            return True
        if self.scope is None or not claims:
            return False
        scopes = claims.get(self.scopes_claim)
        if isinstance(scopes, str):
            scopes = scopes.split()
        return isinstance(scopes, (list, tuple)) and self.scope in scopes
