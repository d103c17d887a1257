"""Re-reading the configuration while the router runs: SIGHUP, or the admin
procedure ``relayrouter.config.reload``.

The new file is parsed and checked whole first; an invalid one is refused
with the key named and nothing changes.  Then what can change without
dropping a session is applied to the running realms:

* roles and their rules (live sessions' next actions are decided by them),
* authentication: methods, principals, keys (the next login; sessions that
  joined stay joined; one-time tickets already issued stay valid),
* session limits, outbound limits and disclosure settings of each realm
  (live sessions' rate and counts included),
* the deny-list settings ([revocation]: deniable claims, admins, TTL, grace),
* event history rules, and the limits of the same mailbox patterns;

and the rest (listeners, state_dir, storage, [limits], [metrics],
[http_bridge], [http], [auth_limits], [tenants], [relay], realms added or
removed, pairing, new mailbox patterns) is logged as needing a restart and
keeps its running value.
"""

from dataclasses import fields, replace

from twisted.logger import Logger

from .configcheck import ConfigError
from .core import errors
from .core.procedures import ProcedureError
from .opsconfig import ConsoleConfig

log = Logger(namespace="relayrouter")

RELOAD = "relayrouter.config.reload"
INVALID_CONFIG = "relayrouter.error.invalid_config"

# Top-level settings read once, at start.
_RESTART_ONLY = ("listeners", "state_dir", "storage", "limits", "metrics", "http_bridge", "tenants", "relay")


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
        for key in _RESTART_ONLY:
            if getattr(old, key) != getattr(new, key):
                restart.append(key)
        in_force = replace(old, security=self._security(old, new, changed, restart, steps))
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
            restart.append("http")
        if before.auth_limits != after.auth_limits:
            restart.append("auth_limits")
        if before.revocation != after.revocation:
            changed.append("revocation: deny-list settings applied")
            steps.append(lambda: security.reload_revocation(after.revocation))
            steps.append(lambda: self._mailbox_admins())
        return replace(before, revocation=after.revocation)

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
                changed.append(f"{what}: mailbox limits applied")
                steps.append(lambda: service.durable.reload_mailboxes(
                    realm, after.mailboxes, service.security.admin))
                applied = replace(applied, mailboxes=after.mailboxes)
            else:
                restart.append(f"{what}: mailboxes (patterns added or removed)")
        # pairing, and any setting this module does not know how to apply live
        for name in (f.name for f in fields(before)):
            if name not in _LIVE_REALM_KEYS and getattr(before, name) != getattr(after, name):
                restart.append(f"{what}: {name}")
        return applied


_LIVE_REALM_KEYS = {"name", "auth", "anonymous", "anonymous_role", "roles", "limits", "outbound",
                    "disclose_caller", "disclose_publisher", "max_retained_events", "history", "mailboxes"}


def _apply_policy(realm, rc) -> None:
    realm.policy = replace(realm.policy, limits=rc.limits, outbound=rc.outbound,
                           disclose_caller=rc.disclose_caller, disclose_publisher=rc.disclose_publisher,
                           max_retained_events=rc.max_retained_events)
    for session in list(realm.sessions.values()):
        limiter = getattr(session, "limiter", None)
        if limiter is not None:
            limiter.limits = rc.limits
