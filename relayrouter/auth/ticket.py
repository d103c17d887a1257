"""Ticket authentication against static principals.

The client names an ``authid`` in HELLO, we CHALLENGE with an empty extra, and
its AUTHENTICATE carries the ticket as signature.  Tickets are compared in
constant time, and an unknown authid is compared against a dummy secret, so
neither the answer nor its timing tells which of the two was wrong.
"""

import hmac
from dataclasses import dataclass
from typing import Mapping

from ..core.auth import Accept, Challenge, Deny, JoinRequest

DENIED = "wrong authid or ticket"


@dataclass(frozen=True, slots=True)
class TicketPrincipal:
    secret: str  # resolved by the config layer (env var, file)
    authrole: str

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError(f"empty ticket secret for role '{self.authrole}'")

    def __repr__(self) -> str:  # never print the secret
        return f"TicketPrincipal(secret=<hidden>, authrole={self.authrole!r})"


class TicketAuthenticator:
    authmethod = "ticket"

    def __init__(self, principals: Mapping[str, TicketPrincipal]) -> None:
        self.principals_by_authid = dict(principals)

    def hello(self, request: JoinRequest) -> Challenge | Deny:
        if not request.authid:
            return Deny("ticket authentication needs an authid in HELLO")
        return Challenge("ticket", {}, state=request.authid)

    def authenticate(self, request: JoinRequest, state, signature: str, extra: dict) -> Accept | Deny:
        authid = state
        principal = self.principals_by_authid.get(authid)
        expected = principal.secret if principal is not None else _DUMMY
        if not _same(signature, expected) or principal is None:
            return Deny(DENIED)
        return Accept(authid, principal.authrole, "ticket", authprovider="static")


_DUMMY = "\0" * 32


def _same(given, expected: str) -> bool:
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf8"), expected.encode("utf8"))
