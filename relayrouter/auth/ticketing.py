"""authmethod ``ticket`` when a realm takes more than one kind of ticket.

One realm may accept, under the single authmethod ``ticket``: static
principals' secrets, JWTs (``as_ticket = true``) and one-time tickets from
``POST /ticket``.  The kinds cannot be confused, so the ticket's form picks
the check:

* ``rrt_...``: a one-time ticket (consumed, whatever the outcome);
* three dot-separated base64url parts: a JWT;
* anything else: a static principal's ticket, for the authid of HELLO.

A one-time ticket may also ride in the WebSocket URL (``/ws?ticket=rrt_...``)
for clients that cannot answer a challenge; the router then welcomes at
HELLO without a CHALLENGE.
"""

import re
from typing import Any

from ..core.auth import Challenge, Deny, JoinRequest
from .onetime import OneTimeTickets, is_one_time_ticket

_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
ONE_TIME_DENIED = "one-time ticket unknown, used or expired"


class TicketMethods:
    authmethod = "ticket"

    def __init__(self, realm: str, *, static=None, jwt=None,
                 one_time: OneTimeTickets | None = None) -> None:
        if static is None and jwt is None and one_time is None:
            raise ValueError("authmethod ticket needs static principals, a JWT key or one-time tickets")
        self.realm = realm
        self.static = static
        self.jwt = jwt
        self.one_time = one_time

    def hello(self, request: JoinRequest) -> Any:
        in_url = _query_ticket(request)
        if in_url is not None and self.one_time is not None:
            return self._one_time(in_url)
        return Challenge("ticket", {}, state=request.authid)

    def authenticate(self, request: JoinRequest, state, signature: str, extra: dict) -> Any:
        if self.one_time is not None and is_one_time_ticket(signature):
            return self._one_time(signature)
        if self.jwt is not None and isinstance(signature, str) and _JWT.match(signature):
            return self.jwt.check(signature)
        if self.static is not None:
            return self.static.authenticate(request, state, signature, extra)
        return Deny("ticket not accepted on this realm")

    def _one_time(self, ticket: str) -> Any:
        grant = self.one_time.take(ticket, self.realm)
        if hasattr(grant, "addCallbacks"):  # the cluster's: asked through NATS
            return grant.addCallbacks(_decided, lambda failure: Deny(str(failure.value) or ONE_TIME_DENIED))
        return _decided(grant)


def _decided(grant) -> Any:
    if grant is None:
        return Deny(ONE_TIME_DENIED)
    return grant.accept()


def _query_ticket(request: JoinRequest) -> str | None:
    values = request.transport.http_query.get("ticket")
    if isinstance(values, (list, tuple)):
        values = values[0] if values else None
    return values if isinstance(values, str) else None
