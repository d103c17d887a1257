"""JWT authentication, sans-IO.

Two ways in, one check:

* authmethod ``ticket``: we CHALLENGE, the client answers with the token as
  its ticket, so every WAMP client can present a JWT;
* authmethod ``jwt``: the token rides in ``authextra.token`` of HELLO (no round
  trip), or, if absent, answers a ``jwt`` CHALLENGE like a ticket.

The check, in order: the header's ``alg`` must be one the realm accepts (never
``none``) *and* one the selected key is for, so an HS-signed token can never be
checked against an RSA key as an HMAC secret; the key comes from a
:class:`KeySource` by ``kid``; pyjwt verifies the signature only; then we
check ``exp``, ``nbf``, ``iat``, ``aud`` and ``iss`` against our own clock
(so tests use a fake one), with a leeway.  Claims become authid, authrole,
``permissions`` (a frozen copy of all claims) and ``expires_at`` (``exp``).

When the ``kid`` is unknown, a refreshable source (a JWKS URL) may fetch again:
``hello`` then returns a Deferred-like object that fires with the decision
after that one refresh.  Refreshes are rate-limited by the source.
"""

import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Protocol

import jwt as pyjwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import load_pem_x509_certificate

from ..core.auth import Accept, Challenge, Deny, JoinRequest
from ._pending import Pending

ALGORITHMS_BY_FAMILY = {
    "oct": ("HS256", "HS384", "HS512"),
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512"),
    "OKP": ("EdDSA",),
}
ALL_ALGORITHMS = frozenset(a for algs in ALGORITHMS_BY_FAMILY.values() for a in algs)
# RFC 7518 3.2: "a key of the same size as the hash output ... or larger MUST be used"
MIN_HMAC_SECRET = {"HS256": 32, "HS384": 48, "HS512": 64}

UNKNOWN_KEY = "token signed with an unknown key"
BAD_SIGNATURE = "token signature invalid"
NOT_ACCEPTED = "algorithm not accepted"


# ---------------------------------------------------------------------- keys

@dataclass(frozen=True, slots=True)
class JwtKey:
    """One verification key: an HMAC secret (bytes) or a public key object."""

    key: Any
    family: str  # JWK "kty": "oct", "RSA", "EC", "OKP"
    kid: str | None = None
    algorithms: tuple[str, ...] = ()  # empty: every algorithm of the family

    def __post_init__(self) -> None:
        if self.family not in ALGORITHMS_BY_FAMILY:
            raise ValueError(f"unknown key family '{self.family}' (have {', '.join(ALGORITHMS_BY_FAMILY)})")
        algorithms = tuple(self.algorithms) or ALGORITHMS_BY_FAMILY[self.family]
        wrong = [a for a in algorithms if a not in ALGORITHMS_BY_FAMILY[self.family]]
        if wrong:
            raise ValueError(f"algorithm {wrong[0]} cannot be used with a key of type {self.family}")
        object.__setattr__(self, "algorithms", algorithms)

    def __repr__(self) -> str:
        shown = "<hidden>" if self.family == "oct" else type(self.key).__name__
        return f"JwtKey({shown}, family={self.family!r}, kid={self.kid!r}, algorithms={self.algorithms!r})"

    @classmethod
    def hmac(cls, secret: bytes | str, kid: str | None = None, algorithms: Iterable[str] = ()) -> "JwtKey":
        secret = secret.encode("utf8") if isinstance(secret, str) else bytes(secret)
        if b"-----BEGIN" in secret:
            raise ValueError(f"the HMAC secret for kid {kid!r} looks like a PEM key; configure it as a public key")
        long_enough = tuple(a for a, n in MIN_HMAC_SECRET.items() if len(secret) >= n)
        algorithms = tuple(algorithms) or long_enough
        short = [a for a in algorithms if a in MIN_HMAC_SECRET and a not in long_enough]
        if not algorithms or short:
            alg = short[0] if short else "HS256"
            raise ValueError(f"the HMAC secret for kid {kid!r} is {len(secret)} bytes; "
                             f"{alg} needs at least {MIN_HMAC_SECRET[alg]}")
        return cls(secret, "oct", kid, algorithms)

    @classmethod
    def from_pem(cls, pem: bytes | str, kid: str | None = None, algorithms: Iterable[str] = ()) -> "JwtKey":
        """A public key, or the public key of a certificate, in PEM."""
        pem = pem.encode("ascii") if isinstance(pem, str) else pem
        if b"PRIVATE KEY" in pem:
            raise ValueError(f"the key for kid {kid!r} is a private key; the router needs only the public key")
        if b"BEGIN CERTIFICATE" in pem:
            public = load_pem_x509_certificate(pem).public_key()
        else:
            public = serialization.load_pem_public_key(pem)
        return cls(public, _family(public, kid), kid, tuple(algorithms))

    @classmethod
    def from_jwk(cls, jwk: dict) -> "JwtKey":
        try:
            parsed = pyjwt.PyJWK(jwk)
        except pyjwt.PyJWTError as e:
            raise ValueError(f"unusable JWK with kid {jwk.get('kid')!r}: {e}") from None
        algorithms = (jwk["alg"],) if jwk.get("alg") else ()
        if parsed.key_type == "oct":
            return cls.hmac(parsed.key, parsed.key_id, algorithms)
        return cls(parsed.key, parsed.key_type, parsed.key_id, algorithms)


def _family(public, kid) -> str:
    if isinstance(public, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "OKP"
    raise ValueError(f"the key for kid {kid!r} is a {type(public).__name__}; use RSA, EC or Ed25519")


def keys_from_jwks(jwks: dict) -> tuple[JwtKey, ...]:
    """The signing keys of a JWKS document; keys we cannot use are skipped."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise ValueError("a JWKS must be a JSON object with a 'keys' list")
    keys = []
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        try:
            keys.append(JwtKey.from_jwk(jwk))
        except ValueError:
            continue  # e.g. an encryption-only or exotic key next to ours
    return tuple(keys)


class KeySource(Protocol):
    def key_for(self, kid: str | None) -> JwtKey | None:
        """The key for ``kid`` (a kid-less token or key matches when unambiguous)."""

    def refresh(self) -> Any:
        """Start fetching keys again: a Deferred-like that fires when done, or
        None if the source cannot refresh now (static, or rate-limited)."""


def _lookup(keys: tuple[JwtKey, ...], kid: str | None) -> JwtKey | None:
    if kid is not None:
        for key in keys:
            if key.kid == kid:
                return key
    kidless = [key for key in keys if key.kid is None]
    if len(kidless) == 1:
        return kidless[0]
    if kid is None and len(keys) == 1:
        return keys[0]
    return None


class StaticKeys:
    """Keys from configuration: secrets, PEM files, a JWKS file."""

    def __init__(self, keys: Iterable[JwtKey]) -> None:
        self.keys = tuple(keys)
        if not self.keys:
            raise ValueError("no JWT verification key configured")

    def key_for(self, kid: str | None) -> JwtKey | None:
        return _lookup(self.keys, kid)

    def refresh(self) -> None:
        return None


class FetchedKeys:
    """Keys from a JWKS URL, fetched by an injected ``fetch()`` returning a
    Deferred-like that fires with the JWKS dict (see :mod:`.jwks`).

    At most one fetch runs at a time (callers during a fetch wait for it), and
    a new one starts at most every ``min_interval`` seconds, so a flood of
    tokens with made-up kids cannot turn into a flood of fetches.  A failed
    fetch keeps the keys we had and is counted in ``refresh_failures``.
    While no key is loaded at all (the server was down at start), a fetch may
    start every ``UNLOADED_RETRY`` seconds at most (or ``min_interval``, if
    shorter): the owner calls :meth:`refresh` on its own schedule then, so
    readiness does not wait for a client to log in.
    """

    UNLOADED_RETRY = 10.0

    def __init__(self, fetch: Callable[[], Any], *, clock: Callable[[], float] = time.monotonic,
                 min_interval: float = 60.0, keys: Iterable[JwtKey] = ()) -> None:
        self.fetch = fetch
        self.clock = clock
        self.min_interval = min_interval
        self.keys = tuple(keys)
        self.refresh_failures = 0
        self.last_error: str | None = None
        self._last_fetch: float | None = None
        self._waiters: list[Pending] | None = None  # not None while a fetch runs

    def key_for(self, kid: str | None) -> JwtKey | None:
        return _lookup(self.keys, kid)

    def refresh(self) -> Pending | None:
        if self._waiters is not None:
            return self._wait()
        now = self.clock()
        interval = self.min_interval if self.keys else min(self.min_interval, self.UNLOADED_RETRY)
        if self._last_fetch is not None and now - self._last_fetch < interval:
            return None
        self._last_fetch = now
        self._waiters = []
        waiter = self._wait()
        try:
            self.fetch().addBoth(self._fetched)
        except Exception as e:
            self._fetched(e)
        return waiter

    def _wait(self) -> Pending:
        waiter = Pending()
        self._waiters.append(waiter)
        return waiter

    def _fetched(self, result: Any) -> None:
        try:
            self.keys = keys_from_jwks(result)
        except ValueError as e:
            self.refresh_failures += 1
            self.last_error = _describe(result, e)
        waiters, self._waiters = self._waiters, None
        for waiter in waiters:
            waiter.fire(None)
        return None  # the failure is counted (and logged by the fetcher), not passed on


def _describe(result: Any, error: ValueError) -> str:
    """What went wrong: the failed fetch's own message, or why the document it gave is no JWKS."""
    message = getattr(result, "getErrorMessage", None)  # a Twisted Failure
    if message is not None:
        return message()
    return str(result) if isinstance(result, BaseException) else str(error)


# -------------------------------------------------------------------- policy

@dataclass(frozen=True, slots=True)
class JwtPolicy:
    """What a realm accepts, and how claims map to a session."""

    algorithms: tuple[str, ...]
    audience: str | None = None  # None: aud is not checked
    issuer: str | None = None  # None: iss is not checked
    leeway: float = 0.0  # seconds of clock skew forgiven on exp / nbf / iat
    authid_claim: str = "sub"
    authrole_claim: str | None = None  # the role from this claim ...
    authrole: str | None = None  # ... else this fixed role
    require_exp: bool = True
    realm_claim: str | None = None  # a token must name the realm it joins in this claim ...
    realm: str | None = None  # ... this one (set per realm: a template's tenants get their own name)

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithms", tuple(self.algorithms))
        if not self.algorithms:
            raise ValueError("no JWT algorithm accepted: list at least one, e.g. ['RS256']")
        for alg in self.algorithms:
            if alg not in ALL_ALGORITHMS:
                raise ValueError(f"JWT algorithm '{alg}' is not supported "
                                 f"(have {', '.join(sorted(ALL_ALGORITHMS))}; 'none' never)")
        if not (self.authrole or self.authrole_claim):
            raise ValueError("give a fixed authrole or an authrole_claim")
        if self.leeway < 0:
            raise ValueError(f"leeway must not be negative, not {self.leeway}")


# ------------------------------------------------------------- authenticator

class JwtAuthenticator:
    def __init__(self, keys: KeySource, policy: JwtPolicy, *, authmethod: str = "jwt",
                 clock: Callable[[], float] = time.time, authprovider: str = "jwt") -> None:
        if authmethod not in ("jwt", "ticket"):
            raise ValueError(f"a JWT authenticator serves authmethod 'jwt' or 'ticket', not '{authmethod}'")
        self.authmethod = authmethod
        self.keys = keys
        self.policy = policy
        self.clock = clock
        self.authprovider = authprovider

    def hello(self, request: JoinRequest) -> Any:
        token = request.authextra.get("token") if self.authmethod == "jwt" else None
        if token is not None:
            return self.check(token)
        return Challenge(self.authmethod, {})

    def authenticate(self, request: JoinRequest, state, signature: str, extra: dict) -> Any:
        return self.check(signature)

    def check(self, token) -> Any:
        """Accept or Deny for ``token``, or a Deferred-like of one after a key refresh."""
        header = _header(token)
        if isinstance(header, Deny):
            return header
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.policy.algorithms:
            return Deny(f"{NOT_ACCEPTED} (this realm accepts {', '.join(self.policy.algorithms)})")
        if kid is not None and not isinstance(kid, str):
            return Deny("malformed token: kid is not a string")
        key = self.keys.key_for(kid)
        if key is not None:
            return self._check_with(token, alg, key)
        pending = self.keys.refresh()
        if pending is None:
            return Deny(UNKNOWN_KEY)
        return pending.addBoth(lambda _: self._check_with(token, alg, self.keys.key_for(kid)))

    def _check_with(self, token: str, alg: str, key: JwtKey | None) -> Accept | Deny:
        if key is None:
            return Deny(UNKNOWN_KEY)
        if alg not in key.algorithms:
            return Deny(f"{NOT_ACCEPTED} for this key")
        claims = _verified_claims(token, key, alg)
        if isinstance(claims, Deny):
            return claims
        return _check_times(claims, self.clock(), self.policy) or \
            _check_parties(claims, self.policy) or _check_realm(claims, self.policy) or self._accept(claims)

    def _accept(self, claims: dict) -> Accept | Deny:
        policy = self.policy
        authid = claims.get(policy.authid_claim)
        if not isinstance(authid, str) or not authid:
            return Deny(f"token has no '{policy.authid_claim}' claim to take the authid from")
        authrole = claims.get(policy.authrole_claim) if policy.authrole_claim else None
        if not isinstance(authrole, str) or not authrole:
            authrole = policy.authrole
        if not authrole:
            return Deny(f"token has no '{policy.authrole_claim}' claim to take the role from")
        exp = claims.get("exp")
        return Accept(authid, authrole, self.authmethod, authprovider=self.authprovider,
                      permissions=freeze(claims), expires_at=float(exp) if exp is not None else None)


def _header(token) -> dict | Deny:
    if not isinstance(token, str) or token.count(".") != 2:
        return Deny("malformed token: expected a JWT (three dot-separated parts)")
    try:
        header = pyjwt.get_unverified_header(token)
    except pyjwt.PyJWTError:
        return Deny("malformed token: unreadable header")
    return header


_SIGNATURE_ONLY = {
    "verify_signature": True, "verify_exp": False, "verify_nbf": False, "verify_iat": False,
    "verify_aud": False, "verify_iss": False, "verify_sub": False, "verify_jti": False,
    "require": [],
}


def _verified_claims(token: str, key: JwtKey, alg: str) -> dict | Deny:
    try:
        return pyjwt.decode(token, key.key, algorithms=[alg], options=_SIGNATURE_ONLY)
    except pyjwt.InvalidSignatureError:
        return Deny(BAD_SIGNATURE)
    except (pyjwt.InvalidAlgorithmError, pyjwt.InvalidKeyError):
        return Deny(f"{NOT_ACCEPTED} for this key")
    except pyjwt.PyJWTError:
        return Deny("malformed token: unreadable payload or signature")


def _check_times(claims: dict, now: float, policy: JwtPolicy) -> Deny | None:
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return Deny(f"malformed token: '{name}' is not a number")
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    if exp is None and policy.require_exp:
        return Deny("token has no expiry (exp claim)")
    # RFC 7519 4.1.4: "the current date/time MUST be before the expiration date/time"
    if exp is not None and now >= exp + policy.leeway:
        return Deny("token expired")
    if nbf is not None and now + policy.leeway < nbf:
        return Deny("token not yet valid")
    if iat is not None and now + policy.leeway < iat:
        return Deny("token not yet valid (issued in the future)")
    return None


def _check_parties(claims: dict, policy: JwtPolicy) -> Deny | None:
    if policy.audience is not None:
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if policy.audience not in audiences:
            return Deny("wrong audience")
    if policy.issuer is not None and claims.get("iss") != policy.issuer:
        return Deny("wrong issuer")
    return None


def _check_realm(claims: dict, policy: JwtPolicy) -> Deny | None:
    """``realm_claim``: the token names the realm it is for (a string, or a list of realms),
    so one signing key can serve many realms (a template's tenants) without a token of one
    joining another."""
    if policy.realm_claim is None or policy.realm is None:
        return None
    named = claims.get(policy.realm_claim)
    realms = [named] if isinstance(named, str) else named if isinstance(named, list) else []
    if policy.realm not in realms:
        return Deny(f"token is not for realm '{policy.realm}' (its '{policy.realm_claim}' claim does not name it)")
    return None


def freeze(value: Any) -> Any:
    """A read-only deep copy of decoded JSON: dicts become mapping proxies, lists tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value
