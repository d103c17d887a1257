"""Authentication decisions and the interface authenticators implement.

An authenticator looks at a join request (and later at the client's answer to
a challenge) and returns a *decision*: :class:`Accept`, :class:`Challenge` or
:class:`Deny`.  It performs no side effect on the session.  An authenticator
that must wait for something slow (a key fetch, a database read) may instead
return a Deferred-like object with ``addBoth`` that fires with a decision; the
session waits for it without blocking anyone else.
"""

from dataclasses import dataclass, field
from typing import Any, Protocol

from . import errors
from .peer import TransportInfo


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """What a client asked for in HELLO, with what its transport showed."""

    realm: str
    authmethods: tuple[str, ...]
    authid: str | None
    authrole: str | None
    authextra: dict
    transport: TransportInfo


@dataclass(frozen=True, slots=True)
class Accept:
    authid: str
    authrole: str
    authmethod: str
    authprovider: str = "static"
    authextra: dict = field(default_factory=dict)
    # A realm the credential binds the session to (e.g. from a certificate rule);
    # None keeps the realm of the HELLO.
    realm: str | None = None
    # Per-session grants derived from a credential (e.g. token claims).
    permissions: Any = None
    # Seconds since the epoch when the credential stops being valid, if ever.
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Challenge:
    method: str
    extra: dict
    # Opaque to the session; handed back to ``authenticate``.
    state: Any = None


@dataclass(frozen=True, slots=True)
class Deny:
    message: str = "authentication failed"
    reason: str = errors.AUTHENTICATION_FAILED


class Authenticator(Protocol):
    authmethod: str

    def hello(self, request: JoinRequest) -> Any:
        """Decide on a HELLO: Accept, Challenge, Deny (or a Deferred of one)."""

    def authenticate(self, request: JoinRequest, state: Any, signature: str, extra: dict) -> Any:
        """Decide on an AUTHENTICATE answering our Challenge: Accept or Deny."""


class AnonymousAuthenticator:
    """Lets anyone in under a random authid, with a configured role.

    The authid is always the router's: a client-chosen one would let an
    anonymous peer pose as a named principal to authid-based rules.
    """

    authmethod = "anonymous"

    def __init__(self, authrole: str = "anonymous") -> None:
        self.authrole = authrole

    def hello(self, request: JoinRequest) -> Accept:
        from .ids import global_id

        authid = f"anonymous-{global_id():x}"
        return Accept(authid=authid, authrole=self.authrole, authmethod="anonymous")

    def authenticate(self, request, state, signature, extra) -> Deny:
        return Deny("anonymous authentication takes no challenge")
