"""Wiring of authentication, authorization and revocation into a running router.

Built by :class:`relayrouter.service.RouterService` from the configuration:
per realm the authenticators (each behind the failure rate limiter), the
role authorizer, the one-time ticket vault and the deny-list procedures;
router-wide the deny list (SQLite in the state directory) and the session
guard; for the HTTP site the ticket and deny-list endpoints.
"""

import dataclasses
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from ..auth.cryptosign import CryptosignAuthenticator
from ..auth.jwks import jwks_fetcher
from ..auth.jwt import FetchedKeys, JwtAuthenticator, StaticKeys
from ..auth.onetime import OneTimeTickets
from ..auth.ratelimit import FailureLimiter, RateLimited
from ..auth.ticket import TicketAuthenticator
from ..auth.ticketing import TicketMethods
from ..auth.tls import TlsAuthenticator
from ..auth.wampcra import WampCraAuthenticator
from ..config.auth import JwtConfig, SecurityConfig
from ..core.auth import AnonymousAuthenticator, Deny
from ..core.authorization import RoleAuthorizer
from ..core.procedures import AdminPolicy
from ..core.revocation import AUTHID, DenyList, DenyListApi, SessionGuard
from ..proxies import TrustedProxies
from ..store.denylist import SqliteDenyListStore
from ..transport.origins import OriginPolicy
from ..transport.tickets import DenyListResource, TicketResource

MISSING_KEYS_CHECK = 1.0  # seconds between looks for JWKS that have no key loaded

log = Logger(namespace="relayrouter")


def _admin_policy(revocation) -> AdminPolicy:
    return AdminPolicy(frozenset(revocation.admin_roles), revocation.admin_scope)


def _key_source(jwt: JwtConfig) -> tuple:
    return (jwt.keys, jwt.jwks_url, jwt.refresh_interval)


class CombinedKeys:
    """Configured keys first, then those of a JWKS URL (which may refresh)."""

    def __init__(self, static: StaticKeys | None, fetched: FetchedKeys) -> None:
        self.static = static
        self.fetched = fetched

    def key_for(self, kid):
        key = self.static.key_for(kid) if self.static is not None else None
        return key if key is not None else self.fetched.key_for(kid)

    def refresh(self):
        return self.fetched.refresh()


class CurrentAdmin:
    """The admin policy in force: every holder asks through this, a reload swaps ``policy``."""

    def __init__(self, policy: AdminPolicy) -> None:
        self.policy = policy

    def admits(self, authrole, claims) -> bool:
        return self.policy.admits(authrole, claims)


class Security:
    def __init__(self, config, router, reactor, store=None) -> None:
        self.config: SecurityConfig = config.security or SecurityConfig()
        self.router = router
        self.reactor = reactor
        revocation = self.config.revocation
        self.limiter = FailureLimiter(reactor.seconds, self.config.auth_limits)
        self.origins = OriginPolicy(self.config.http.allowed_origins)
        self.proxies = TrustedProxies(self.config.http.trusted_proxies)
        self.store = store if store is not None else SqliteDenyListStore.in_state_dir(config.state_dir)
        self.denylist = DenyList(self.store, revocation.claims, reactor)
        self.guard = SessionGuard(router, self.denylist, close_grace=revocation.close_grace)
        self.admin = CurrentAdmin(_admin_policy(revocation))
        self.denylist_api = DenyListApi(self.guard, self.admin, revocation.default_ttl)
        self.jwt_by_realm: dict[str, JwtAuthenticator] = {}
        # The relay's realm ([relay]): its JWTs are relay tokens, which need no sub (relay/tokens.py).
        relay = getattr(config, "relay", None)
        self.relay_realm: str | None = relay.realm if relay is not None else None
        self.tickets_by_realm: dict[str, OneTimeTickets] = {}
        self.shared_tickets = None  # the cluster's tickets ([cluster]): every vault's, see share_tickets
        self.fetched_keys: list[FetchedKeys] = []
        self._started = False
        self.guard.revocation_listeners.append(self._void_tickets)

    # -------------------------------------------------------------- realms

    def install_realm(self, realm, rc) -> None:
        """Authenticators, roles, guard and deny-list procedures of a realm
        (realms.RealmBuilder: configured, or a tenant made at run time)."""
        before = len(self.fetched_keys)
        self._install(realm, rc)
        if self._started:  # else start() fetches them all
            for fetched in self.fetched_keys[before:]:
                fetched.refresh()

    def share_tickets(self, shared) -> None:
        """One-time tickets of every realm, those made later included, shared through ``shared``."""
        self.shared_tickets = shared
        for vault in self.tickets_by_realm.values():
            vault.shared = shared

    def forget_realm(self, realm) -> None:
        self.jwt_by_realm.pop(realm.name, None)
        self.tickets_by_realm.pop(realm.name, None)

    def _install(self, realm, rc) -> None:
        methods = self._authenticators(rc)
        realm.authenticators = {name: RateLimited(a, self.limiter) for name, a in methods.items()}
        if rc.roles is not None:
            realm.authorizer = RoleAuthorizer(rc.roles)
        realm.guard = self.guard
        self.denylist_api.add_procedures(realm.procedures)

    # -------------------------------------------------------------- reload

    def reload_realm_auth(self, realm, old, new) -> None:
        """New authenticators for a running realm; one-time tickets already
        issued stay valid, JWT keys are kept when their configuration is the same."""
        name = new.name
        old_jwt = self.jwt_by_realm.pop(name, None)
        vault = self.tickets_by_realm.pop(name, None)
        same_keys = (old.auth is not None and new.auth is not None and old.auth.jwt is not None
                     and new.auth.jwt is not None and _key_source(old.auth.jwt) == _key_source(new.auth.jwt))
        if old_jwt is not None and same_keys:
            self.jwt_by_realm[name] = old_jwt  # _jwt() takes its keys
        before = len(self.fetched_keys)
        methods = self._authenticators(new, vault)
        if not (new.auth is not None and new.auth.jwt is not None):
            self.jwt_by_realm.pop(name, None)
        realm.authenticators = {n: RateLimited(a, self.limiter) for n, a in methods.items()}
        for fetched in self.fetched_keys[before:]:
            fetched.refresh()

    def reload_roles(self, realm, roles) -> None:
        from ..core.realm import AllowAll

        realm.replace_rules(RoleAuthorizer(roles) if roles is not None else AllowAll())

    def reload_revocation(self, revocation) -> None:
        from dataclasses import replace

        self.config = replace(self.config, revocation=revocation)
        self.denylist.claims = tuple(dict.fromkeys((*revocation.claims, AUTHID)))
        self.guard.close_grace = revocation.close_grace
        self.denylist_api.default_ttl = revocation.default_ttl
        self.admin.policy = _admin_policy(revocation)

    def reload_http(self, http) -> None:
        """[http]: allowed origins and trusted proxies for the next upgrade or request,
        public_url for the next ticket."""
        from dataclasses import replace

        self.config = replace(self.config, http=http)
        self.origins.replace(http.allowed_origins)
        self.proxies.replace(http.trusted_proxies)

    def reload_auth_limits(self, limits) -> None:
        """[auth_limits]: the failed-login budgets from now on (buckets spent keep what they hold)."""
        from dataclasses import replace

        self.config = replace(self.config, auth_limits=limits)
        self.limiter.reload(limits)

    def _authenticators(self, rc, vault=None) -> dict:
        auth = rc.auth
        methods: dict[str, Any] = {}
        anonymous_role = auth.anonymous_role if auth is not None else None
        if rc.anonymous or anonymous_role:
            methods["anonymous"] = AnonymousAuthenticator(anonymous_role or rc.anonymous_role)
        if auth is None:
            return methods
        jwt = self._jwt(rc.name, auth.jwt, "jwt") if auth.jwt is not None else None
        if jwt is not None:
            methods["jwt"] = self.jwt_by_realm[rc.name] = jwt
        one_time = None
        if auth.one_time_ticket_lifetime is not None:
            if vault is not None:
                vault.lifetime = auth.one_time_ticket_lifetime
            one_time = self.tickets_by_realm[rc.name] = vault or OneTimeTickets(
                self.reactor.seconds, lifetime=auth.one_time_ticket_lifetime)
            one_time.shared = self.shared_tickets
        ticket_jwt = self._jwt(rc.name, auth.jwt, "ticket") if auth.jwt and auth.jwt.as_ticket else None
        static = TicketAuthenticator(auth.ticket) if auth.ticket else None
        if static or ticket_jwt or one_time:
            methods["ticket"] = TicketMethods(rc.name, static=static, jwt=ticket_jwt, one_time=one_time)
        if auth.wampcra:
            methods["wampcra"] = WampCraAuthenticator(auth.wampcra, clock=self.reactor.seconds)
        if auth.cryptosign:
            methods["cryptosign"] = CryptosignAuthenticator(
                auth.cryptosign, require_channel_binding=auth.cryptosign_channel_binding)
        if auth.tls:
            methods["tls"] = TlsAuthenticator(auth.tls)
        return methods

    def _jwt(self, realm: str, jwt: JwtConfig, authmethod: str) -> JwtAuthenticator:
        existing = self.jwt_by_realm.get(realm)
        keys = existing.keys if existing is not None else self._keys(jwt)
        policy = dataclasses.replace(jwt.policy, realm=realm)  # realm_claim names this realm
        if realm == self.relay_realm:
            from ..relay.tokens import RelayTokenChecker

            return RelayTokenChecker(keys, policy, self.reactor.seconds, authmethod=authmethod,
                                     authprovider="jwt")
        return JwtAuthenticator(keys, policy, authmethod=authmethod, clock=self.reactor.seconds)

    def _keys(self, jwt: JwtConfig):
        static = StaticKeys(jwt.keys) if jwt.keys else None
        if jwt.jwks_url is None:
            return static
        fetched = FetchedKeys(jwks_fetcher(jwt.jwks_url), clock=self.reactor.seconds,
                              min_interval=jwt.refresh_interval)
        self.fetched_keys.append(fetched)
        return CombinedKeys(static, fetched)

    def start(self) -> None:
        """Open the deny list's store and load it; then the first fetch of every
        JWKS URL (later ones happen on unknown kids)."""
        self.store.open()
        self.denylist.load()
        self._started = True
        for fetched in self.fetched_keys:
            fetched.refresh()
        # Readiness waits on these keys: fetch missing ones again on our own schedule.
        self._missing_keys = task.LoopingCall(self.fetch_missing_keys)
        self._missing_keys.clock = self.reactor
        self._missing_keys.start(MISSING_KEYS_CHECK, now=False)

    def fetch_missing_keys(self) -> None:
        """A JWKS that has no key loaded yet is fetched again (FetchedKeys spaces the fetches)."""
        for fetched in self.fetched_keys:
            if not fetched.keys:
                fetched.refresh()

    def stop(self) -> None:
        missing_keys = getattr(self, "_missing_keys", None)
        if missing_keys is not None and missing_keys.running:
            missing_keys.stop()
        self.store.close()

    # ---------------------------------------------------------------- HTTP

    def check_jwt(self, realm: str, token: str) -> defer.Deferred:
        """Accept or Deny for a bearer token, by the realm's JWT settings."""
        authenticator = self.jwt_by_realm.get(realm)
        if authenticator is None:
            return defer.succeed(Deny(f"realm '{realm}' takes no JWT"))
        decision = authenticator.check(token)
        if hasattr(decision, "addBoth") and not isinstance(decision, defer.Deferred):
            d = defer.Deferred()
            decision.addBoth(d.callback)
            return d
        return defer.maybeDeferred(lambda: decision)

    def admin_realm(self) -> str | None:
        configured = self.config.revocation.admin_realm
        if configured is not None:
            return configured
        return next(iter(self.jwt_by_realm)) if len(self.jwt_by_realm) == 1 else None

    def http_resources(self, ws_path: str) -> dict[bytes, Any]:
        return {b"ticket": TicketResource(self, ws_path), b"denylist": DenyListResource(self)}

    # ---------------------------------------------------------- revocation

    def _void_tickets(self, entry) -> None:
        for vault in self.tickets_by_realm.values():
            vault.void(lambda grant: self.denylist.denies(entry, grant.authid, grant.claims))
