"""Relay tokens: the relay realm's JWTs, checked without needing a ``sub``.

The seed's tokens carry ``topic``, ``prefix`` (connection type), ``scopes``
and ``booking_id`` (or ``bid``), and no ``sub``.  A session authenticated by
one gets ``sub`` as its authid when there is one, else the booking id, else
``relay:{prefix}/{topic}``.  The same check serves the access endpoint and,
in the relay realm, WAMP joins (authmethods ``jwt`` and ``ticket``), so a
token means the same on every path.
"""

from typing import Mapping

from ..auth.jwt import JwtAuthenticator
from ..core.auth import Accept, Deny

BID = "bid"
BOOKING_ID = "booking_id"  # the seed's claim name for the booking id


class RelayTokenChecker(JwtAuthenticator):
    """The relay realm's JWT checks, for tokens that need not carry a ``sub``."""

    def __init__(self, keys, policy, clock, *, authmethod: str = "ticket", authprovider: str = "relay",
                 authrole: str | None = None) -> None:
        super().__init__(keys, policy, authmethod=authmethod, clock=clock, authprovider=authprovider)
        self.fixed_role = authrole

    def _accept(self, claims: dict) -> Accept | Deny:
        claims = with_bid(claims)
        authrole = self.fixed_role
        if authrole is None and self.policy.authrole_claim:
            authrole = claims.get(self.policy.authrole_claim)
        if not isinstance(authrole, str) or not authrole:
            authrole = self.policy.authrole or "relay"
        exp = claims.get("exp")
        return Accept(relay_authid(claims, self.policy.authid_claim), authrole, self.authmethod,
                      authprovider=self.authprovider, permissions=claims,
                      expires_at=float(exp) if exp is not None else None)


def relay_authid(claims: Mapping, authid_claim: str = "sub") -> str:
    """``sub`` (the realm's authid claim), else the booking id, else ``relay:{prefix}/{topic}``."""
    authid = claims.get(authid_claim)
    if isinstance(authid, str) and authid:
        return authid
    bid = claims.get(BID) or claims.get(BOOKING_ID)
    if isinstance(bid, str) and bid:
        return bid
    return f"relay:{claims.get('prefix')}/{claims.get('topic')}"


def with_bid(claims: Mapping) -> dict:
    """The claims with ``bid`` and ``booking_id`` both set when either is."""
    out = dict(claims)
    bid = out.get(BID) or out.get(BOOKING_ID)
    if isinstance(bid, str) and bid:
        out.setdefault(BID, bid)
        out.setdefault(BOOKING_ID, bid)
    return out
