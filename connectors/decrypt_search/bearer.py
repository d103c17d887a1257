"""Bearer JWTs for the HTTP API, checked by the router's own JWT checker.

``Authorization: Bearer <JWT>``; the token must verify with a configured key
(``[[http.auth.keys]]``: an HMAC secret or a public key), be within its
``exp``/``nbf``, match ``audience``/``issuer`` when configured, and carry the
endpoint's scope in ``scope`` (space-separated) or ``scopes`` (a list).
401 for a missing or invalid token (with ``WWW-Authenticate``), 403 for a
valid one without the scope.  Tokens are never logged.
"""

import hmac
import time

from connectors.common.errors import ConfigError
from connectors.common.http import HttpError
from relayrouter import httpinput
from relayrouter.auth.jwt import JwtAuthenticator, JwtKey, JwtPolicy, StaticKeys
from relayrouter.core.auth import Deny

from .config import HttpAuth

SCOPES = ("search", "quarantine", "publish", "status")


class Bearer:
    def __init__(self, auth: HttpAuth, clock=time.time) -> None:
        keys = []
        for i, k in enumerate(auth.keys):
            try:
                if k.secret is not None:
                    keys.append(JwtKey.hmac(k.secret, kid=k.kid,
                                            algorithms=[a for a in auth.algorithms if a.startswith("HS")]))
                else:
                    keys.append(JwtKey.from_pem(k.public_pem, kid=k.kid))
            except ValueError as e:
                raise ConfigError(f"http.auth.keys[{i}]: {e}") from None
        try:
            policy = JwtPolicy(algorithms=auth.algorithms, audience=auth.audience, issuer=auth.issuer,
                               leeway=auth.leeway, authrole="http")
        except ValueError as e:
            raise ConfigError(f"http.auth.algorithms: {e}") from None
        self.checker = JwtAuthenticator(StaticKeys(keys), policy, clock=clock)
        self.refused = 0

    def claims(self, request, scope: str) -> dict:
        """The token's claims, or HttpError 401 / 403."""
        header = httpinput.header(request, "Authorization") or ""
        kind, _, token = header.partition(" ")
        if not hmac.compare_digest(kind.lower().encode(), b"bearer") or not token.strip():
            self.refused += 1
            raise HttpError(401, "send Authorization: Bearer <JWT>", headers=_challenge("invalid_request"))
        decision = self.checker.check(token.strip())
        if isinstance(decision, Deny):
            self.refused += 1
            raise HttpError(401, f"bearer token refused: {decision.message}", headers=_challenge("invalid_token"))
        claims = dict(decision.permissions)
        if scope not in scopes_of(claims):
            self.refused += 1
            raise HttpError(403, f"the token lacks the scope '{scope}'",
                            headers=_challenge("insufficient_scope", scope))
        return claims


def scopes_of(claims: dict) -> set:
    scopes = set()
    if isinstance(claims.get("scope"), str):
        scopes.update(claims["scope"].split())
    if isinstance(claims.get("scopes"), (list, tuple)):
        scopes.update(s for s in claims["scopes"] if isinstance(s, str))
    return scopes


def _challenge(error: str, scope: str | None = None) -> dict:
    value = f'Bearer realm="decrypt-search", error="{error}"'
    if scope:
        value += f', scope="{scope}"'
    return {"WWW-Authenticate": value}
