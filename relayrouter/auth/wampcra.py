"""WAMP-CRA (challenge-response) against static principals.

The router sends a JSON challenge naming the session it is for; the client
answers with ``base64(HMAC-SHA256(key, challenge))`` where the key is the
secret itself, or, for salted secrets, ``derive_key(secret, salt, iterations,
keylen)`` (PBKDF2, base64) which the client computes from the salt parameters
we send along.  Keys are derived once, when the authenticator is built.

An unknown authid gets a challenge too (with a decoy salt when salting is in
use), and is denied at AUTHENTICATE with the same message as a wrong secret.
"""

import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Mapping

from autobahn.wamp.auth import compute_wcs, derive_key

from ..core.auth import Accept, Challenge, Deny, JoinRequest

DENIED = "wrong authid or WAMP-CRA signature"


@dataclass(frozen=True, slots=True)
class Salt:
    salt: str
    iterations: int = 1000
    keylen: int = 32

    def __post_init__(self) -> None:
        if not self.salt:
            raise ValueError("empty WAMP-CRA salt")
        if self.iterations < 1 or self.keylen < 1:
            raise ValueError(f"WAMP-CRA iterations and keylen must be positive, not "
                             f"{self.iterations} and {self.keylen}")

    def extra(self) -> dict:
        return {"salt": self.salt, "iterations": self.iterations, "keylen": self.keylen}


@dataclass(frozen=True, slots=True)
class WampCraPrincipal:
    secret: str  # the plain secret; resolved by the config layer
    authrole: str
    salt: Salt | None = None

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError(f"empty WAMP-CRA secret for role '{self.authrole}'")

    def __repr__(self) -> str:
        return f"WampCraPrincipal(secret=<hidden>, authrole={self.authrole!r}, salt={self.salt!r})"

    def signing_key(self) -> bytes:
        if self.salt is None:
            return self.secret.encode("utf8")
        return derive_key(self.secret, self.salt.salt, self.salt.iterations, self.salt.keylen)


@dataclass(frozen=True, slots=True)
class _Pending:
    authid: str
    challenge: str


class WampCraAuthenticator:
    authmethod = "wampcra"

    def __init__(self, principals: Mapping[str, WampCraPrincipal], *,
                 clock: Callable[[], float] = time.time, authprovider: str = "static") -> None:
        self.principals_by_authid = dict(principals)
        self.keys_by_authid = {a: p.signing_key() for a, p in self.principals_by_authid.items()}
        self.clock = clock
        self.authprovider = authprovider
        self._decoy_key = secrets.token_bytes(32)
        self._decoy_salt = next((p.salt for p in principals.values() if p.salt), None)
        self._decoy_role = next((p.authrole for p in principals.values()), "")

    def hello(self, request: JoinRequest) -> Challenge | Deny:
        if not request.authid:
            return Deny("WAMP-CRA needs an authid in HELLO")
        principal = self.principals_by_authid.get(request.authid)
        challenge = self._challenge_text(request.authid, principal)
        extra = {"challenge": challenge}
        salt = principal.salt if principal is not None else self._decoy_salt_for(request.authid)
        if salt is not None:
            extra.update(salt.extra())
        return Challenge("wampcra", extra, state=_Pending(request.authid, challenge))

    def authenticate(self, request: JoinRequest, state: _Pending, signature: str,
                     extra: dict) -> Accept | Deny:
        key = self.keys_by_authid.get(state.authid, self._decoy_key)
        expected = compute_wcs(key, state.challenge.encode("utf8"))
        given = signature.encode("ascii", "replace") if isinstance(signature, str) else b""
        principal = self.principals_by_authid.get(state.authid)
        if not hmac.compare_digest(given, expected) or principal is None:
            return Deny(DENIED)
        return Accept(state.authid, principal.authrole, "wampcra", authprovider=self.authprovider)

    def _challenge_text(self, authid: str, principal: WampCraPrincipal | None) -> str:
        # The spec's challenge: a JSON object with these keys.  The session ID is
        # assigned at WELCOME, after this, so it is 0 here.
        when = datetime.fromtimestamp(self.clock(), timezone.utc)
        return json.dumps({
            "authid": authid,
            "authrole": principal.authrole if principal is not None else self._decoy_role,
            "authmethod": "wampcra",
            "authprovider": self.authprovider,
            "nonce": secrets.token_urlsafe(16),
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
            "session": 0,
        }, separators=(",", ":"))

    def _decoy_salt_for(self, authid: str) -> Salt | None:
        # A stable salt per unknown authid, so probing twice shows nothing.
        if self._decoy_salt is None:
            return None
        digest = hmac.new(self._decoy_key, authid.encode("utf8"), "sha256").hexdigest()
        return Salt(digest[:16], self._decoy_salt.iterations, self._decoy_salt.keylen)
