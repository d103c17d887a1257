"""Re-reading the configuration while the router runs: SIGHUP, or the admin
procedure ``relayrouter.config.reload``.

The new file is parsed and checked whole first; an invalid one is refused
with the key named and nothing changes.  Then what can change without
dropping a session is applied to the running router:

* roles and their rules (live sessions' next actions are decided by them),
* authentication: methods, principals, keys (the next login; sessions that
  joined stay joined; one-time tickets already issued stay valid),
* session limits, outbound limits and disclosure settings of each realm
  (live sessions' rate and counts included),
* the deny-list settings ([revocation]: deniable claims, admins, TTL, grace),
  [auth_limits] (the failed-login budgets), [http] (allowed origins,
  trusted proxies, the public URL), [console] (console roles), [http_bridge] when it was
  configured at start and still is (keys, webhooks, limits),
* event history rules, mailbox rules (patterns added or removed included),
  and pairing (who is a peer, on_conflict, the Micronets meetup and pings);

and the rest is logged as needing a restart, each with why, keeping its
running value: listeners, state_dir, storage, [limits], [metrics], [tenants]
and [realm_templates], [relay], [cluster], realms added or removed, an
[http_bridge] added or removed, a Micronets path, pairing removed, history
or mailboxes where no store was opened at start.
"""

from dataclasses import fields, replace

from twisted.logger import Logger

from ..config.check import ConfigError
from ..core import errors
from ..core.procedures import ProcedureError
from ..config.ops import ConsoleConfig

log = Logger(namespace="relayrouter")

RELOAD = "relayrouter.config.reload"
INVALID_CONFIG = "relayrouter.error.invalid_config"

# Top-level settings read once, at start, and why they cannot change live.
_RESTART_ONLY = {
    "listeners": "the router binds its listeners at start",
    "state_dir": "the stores are open in it",
    "storage": "the durable store is open",
    "limits": "the listeners' factories hold them",
    "metrics": "the endpoints are mounted at start",
    "tenants": "tenant realms are made from the templates at start and kept as made",
    "relay": "the relay's streams are set up at start",
    "cluster": "the NATS connection is made at start",
}


class Reloader:
    def __init__(self, service, read_config) -> None:
        """``read_config()``: the configuration as at start (file + command line), read again."""
        self.service = service
        self.read_config = read_config

    def install_realm(self, realm, rc) -> None:
        """The reload procedure on a realm, configured or a tenant (realms.RealmBuilder)."""
        realm.procedures.add(RELOAD, self._procedure)

    def _procedure(self, call) -> dict:
        session = call.session
        if not self.service.security.admin.admits(session.authrole, session.permissions):
            raise ProcedureError(errors.NOT_AUTHORIZED,
                                 f"session '{session.authid}' with role '{session.authrole}' "
                                 "may not reload the configuration")
        try:
            return self.reload(f"{RELOAD} by '{session.authid}'")
        except ConfigError as e:
            raise ProcedureError(INVALID_CONFIG, f"configuration error: {e}; nothing changed") from None

    # ----------------------------------------------------------------- reload

    def reload(self, why: str) -> dict:
        """Apply the file as it is now: {"changed": [...], "restart_needed": [...]}.
        Raises ConfigError (logged) when the new configuration is invalid."""
        try:
            new = self.read_config()
        except ConfigError as e:
            log.error("Configuration reload ({why}) refused: configuration error: {error}; "
                      "the running configuration stays in force", why=why, error=str(e))
            raise
        old = self.service.config
        changed: list[str] = []
        restart: list[str] = []
        steps: list = []
        for key, reason in _RESTART_ONLY.items():
            if getattr(old, key) != getattr(new, key):
                restart.append(f"{key} ({reason})")
        in_force = replace(old, security=self._security(old, new, changed, restart, steps))
        in_force = replace(in_force, http_bridge=self._http_bridge(old, new, changed, restart, steps))
        if old.console != new.console:
            changed.append("console: console roles applied to every session's next console call")
            steps.append(lambda: self.service.console_access.reload(new.console or ConsoleConfig()))
            in_force = replace(in_force, console=new.console)
        realms = self._realms(old, new, changed, restart, steps)
        in_force = replace(in_force, realms=realms)
        for step in steps:
            step()
        self.service.config = in_force
        for what in changed:
            log.info("Configuration reload ({why}): {what}", why=why, what=what)
        for what in restart:
            log.warn("Configuration reload ({why}): {what} changed in the file: needs a restart "
                     "(the running value stays)", why=why, what=what)
        if not changed and not restart:
            log.info("Configuration reload ({why}): nothing changed", why=why)
        return {"changed": changed, "restart_needed": restart}

    def _security(self, old, new, changed, restart, steps):
        security = self.service.security
        before, after = security.config, new.security or type(security.config)()
        if before.http != after.http:
            changed.append("http: allowed origins and trusted proxies for the next upgrade or request, "
                           "public_url for the next ticket and mailbox endpoint")
            steps.append(lambda: security.reload_http(after.http))
            steps.append(lambda: self.service.durable.reload_public_url(security.config))
        if before.auth_limits != after.auth_limits:
            changed.append("auth_limits: failed-login budgets applied (spent buckets keep what they hold)")
            steps.append(lambda: security.reload_auth_limits(after.auth_limits))
        if before.revocation != after.revocation:
            changed.append("revocation: deny-list settings applied")
            steps.append(lambda: security.reload_revocation(after.revocation))
            steps.append(lambda: self._mailbox_admins())
        return after

    def _http_bridge(self, old, new, changed, restart, steps):
        before, after = old.http_bridge, new.http_bridge
        if before == after:
            return before
        bridge = self.service.http_bridge
        if before is None or after is None:
            restart.append("http_bridge ({} at start: /publish, /call and /webhook are mounted "
                           "then)".format("not configured" if before is None else "configured"))
            return before
        changed.append("http_bridge: keys, webhooks and limits applied to the next request")
        steps.append(lambda: bridge.reload(after))
        return after

    def _mailbox_admins(self) -> None:
        for mailboxes in self.service.durable.mailboxes_by_realm.values():
            mailboxes.admin = self.service.security.admin

    def _realms(self, old, new, changed, restart, steps) -> tuple:
        old_by_name = {r.name: r for r in old.realms}
        new_by_name = {r.name: r for r in new.realms}
        for name in new_by_name.keys() - old_by_name.keys():
            restart.append(f"realm {name} (added)")
        for name in old_by_name.keys() - new_by_name.keys():
            restart.append(f"realm {name} (removed)")
        in_force = []
        for name, before in old_by_name.items():
            after = new_by_name.get(name)
            if after is None:
                in_force.append(before)
                continue
            in_force.append(self._realm(before, after, changed, restart, steps))
        return tuple(in_force)

    def _realm(self, before, after, changed, restart, steps):
        service = self.service
        realm = service.router.realms[before.name]
        applied = before
        what = f"realm {before.name}"
        if (before.auth, before.anonymous, before.anonymous_role) != (after.auth, after.anonymous,
                                                                       after.anonymous_role):
            changed.append(f"{what}: authentication (methods, principals, keys) applied to new logins")
            steps.append(lambda: service.security.reload_realm_auth(realm, before, after))
            applied = replace(applied, auth=after.auth, anonymous=after.anonymous,
                              anonymous_role=after.anonymous_role)
        if before.roles != after.roles:
            changed.append(f"{what}: roles applied to every session's next action")
            steps.append(lambda: service.security.reload_roles(realm, after.roles))
            applied = replace(applied, roles=after.roles)
        policy_keys = ("limits", "outbound", "disclose_caller", "disclose_publisher", "max_retained_events")
        if any(getattr(before, k) != getattr(after, k) for k in policy_keys):
            names = ", ".join(k for k in policy_keys if getattr(before, k) != getattr(after, k))
            changed.append(f"{what}: {names} applied")
            steps.append(lambda: _apply_policy(realm, after))
            applied = replace(applied, **{k: getattr(after, k) for k in policy_keys})
        if before.history != after.history:
            if service.durable.can_reload_history(before.history, after.history):
                changed.append(f"{what}: history rules applied")
                steps.append(lambda: service.durable.reload_history(realm, after.history))
                applied = replace(applied, history=after.history)
            else:
                restart.append(f"{what}: history (the router opened no store at start)")
        if before.mailboxes != after.mailboxes:
            if service.durable.can_reload_mailboxes(before.mailboxes, after.mailboxes):
                changed.append(f"{what}: mailbox rules applied{_pattern_changes(before, after)}")
                steps.append(lambda: service.durable.reload_mailboxes(
                    realm, after.mailboxes, service.security.admin))
                applied = replace(applied, mailboxes=after.mailboxes)
            else:
                restart.append(f"{what}: mailboxes (the router opened no store at start)")
        if before.pairing != after.pairing:
            applied = self._pairing(realm, before, after, applied, changed, restart, steps)
        # any setting this module does not know how to apply live
        for name in (f.name for f in fields(before)):
            if name not in _LIVE_REALM_KEYS and getattr(before, name) != getattr(after, name):
                restart.append(f"{what}: {name}")
        return applied


    def _pairing(self, realm, before, after, applied, changed, restart, steps):
        what = f"realm {before.name}"
        old, new = before.pairing, after.pairing
        if new is None:
            restart.append(f"{what}: pairing (removed: its peers are connected as pairs)")
            return applied
        configured = before.name in self.service.pairing.configured
        path = old.legacy.path if old is not None else ""
        if new.legacy.path != path and configured:
            restart.append(f"{what}: pairing.micronets_path (the Micronets endpoint is mounted at start; "
                           f"it stays {'/' + path if path else 'off'})")
        new = replace(new, legacy=replace(new.legacy, path=path))
        changed.append(f"{what}: pairing applied to the next joins" + (
            " (the realm pairs from now on)" if old is None else ""))
        steps.append(lambda: self.service.pairing.reload_realm(realm, old, new))
        return replace(applied, pairing=new)


def _pattern_changes(before, after) -> str:
    old = {r.uri for r in before.mailboxes or ()}
    new = {r.uri for r in after.mailboxes or ()}
    parts = [f"{label} {', '.join(sorted(uris))}" for label, uris in (("added", new - old), ("removed", old - new))
             if uris]
    return f" (patterns {'; '.join(parts)})" if parts else ""


_LIVE_REALM_KEYS = {"name", "auth", "anonymous", "anonymous_role", "roles", "limits", "outbound",
                    "disclose_caller", "disclose_publisher", "max_retained_events", "history", "mailboxes",
                    "pairing"}


def _apply_policy(realm, rc) -> None:
    realm.policy = replace(realm.policy, limits=rc.limits, outbound=rc.outbound,
                           disclose_caller=rc.disclose_caller, disclose_publisher=rc.disclose_publisher,
                           max_retained_events=rc.max_retained_events)
    for session in list(realm.sessions.values()):
        limiter = getattr(session, "limiter", None)
        if limiter is not None:
            limiter.limits = rc.limits
