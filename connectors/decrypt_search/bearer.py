"""Bearer JWTs for the HTTP API, checked by the router's own JWT checker.

``Authorization: Bearer <JWT>``; the token must verify with a configured key
(``[[http.auth.keys]]``: an HMAC secret, a public key, a JWKS file, or the
identity provider's JWKS URL, fetched at start and again, at most every
``refresh_interval`` seconds, when a token names a key id we do not have:
the router's own key sources, :mod:`relayrouter.auth.jwt`), be within its
``exp``/``nbf``, match ``audience``/``issuer`` when configured, and carry the
endpoint's scope in ``scope`` (space-separated) or ``scopes`` (a list).
401 for a missing or invalid token (with ``WWW-Authenticate``), 403 for a
valid one without the scope.  Tokens are never logged.
"""

import hmac
import time

from twisted.internet import defer

from relayrouter.api import (Accept, CombinedKeys, ConfigError, Deny, FetchedKeys, JwtAuthenticator, JwtKey, JwtPolicy,
                             StaticKeys, httpinput, jwks_fetcher, keys_from_jwks)
from connectors.common.http import HttpError

from .config import HttpAuth

SCOPES = ("search", "quarantine", "publish", "status")


class Bearer:
    def __init__(self, auth: HttpAuth, clock=time.time) -> None:
        static = _static_keys(auth)
        self.fetched = None
        if auth.jwks_url:
            self.fetched = FetchedKeys(jwks_fetcher(auth.jwks_url), min_interval=auth.refresh_interval)
        source = static if self.fetched is None else CombinedKeys(static, self.fetched)
        try:
            policy = JwtPolicy(algorithms=auth.algorithms, audience=auth.audience, issuer=auth.issuer,
                               leeway=auth.leeway, authrole="http")
        except ValueError as e:
            raise ConfigError(f"http.auth.algorithms: {e}") from None
        self.checker = JwtAuthenticator(source, policy, clock=clock)
        self.refused = 0

    def start(self) -> None:
        """The first fetch of the JWKS URL (later ones come on unknown key ids)."""
        if self.fetched is not None:
            self.fetched.refresh()

    def claims(self, request, scope: str):
        """The token's claims, or HttpError 401 / 403; a Deferred of them while the JWKS is fetched."""
        header = httpinput.header(request, "Authorization") or ""
        kind, _, token = header.partition(" ")
        if not hmac.compare_digest(kind.lower().encode(), b"bearer") or not token.strip():
            self.refused += 1
            raise HttpError(401, "send Authorization: Bearer <JWT>", headers=_challenge("invalid_request"))
        decision = self.checker.check(token.strip())
        if not isinstance(decision, (Accept, Deny)):  # the keys are being fetched: decided after
            d = defer.Deferred()
            decision.addBoth(d.callback)
            return d.addCallback(self._decided, scope)
        return self._decided(decision, scope)

    def _decided(self, decision, scope: str) -> dict:
        if not isinstance(decision, Accept):  # a Deny, or whatever a failed key fetch left
            self.refused += 1
            message = decision.message if isinstance(decision, Deny) else "its key could not be checked"
            raise HttpError(401, f"bearer token refused: {message}", headers=_challenge("invalid_token"))
        claims = dict(decision.permissions)
        if scope not in scopes_of(claims):
            self.refused += 1
            raise HttpError(403, f"the token lacks the scope '{scope}'",
                            headers=_challenge("insufficient_scope", scope))
        return claims


def _static_keys(auth: HttpAuth) -> StaticKeys | None:
    keys = []
    for i, k in enumerate(auth.keys):
        try:
            if k.secret is not None:
                keys.append(JwtKey.hmac(k.secret, kid=k.kid,
                                        algorithms=[a for a in auth.algorithms if a.startswith("HS")]))
            elif k.jwks is not None:
                found = keys_from_jwks(k.jwks)
                if not found:
                    raise ValueError("the JWKS file holds no usable signing key")
                keys.extend(found)
            else:
                keys.append(JwtKey.from_pem(k.public_pem, kid=k.kid))
        except ValueError as e:
            raise ConfigError(f"http.auth.keys[{i}]: {e}") from None
    return StaticKeys(keys) if keys else None


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
