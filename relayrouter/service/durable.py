"""Wiring of the durable store and what uses it into a running router.

Built by :class:`relayrouter.service.RouterService` from the configuration:
the store (SQLite in the state directory, or PostgreSQL), opened at start
only when something needs it, its completions handed to the reactor thread.
"""

from dataclasses import replace

from twisted.internet import task
from twisted.logger import Logger

from ..core.history import FEATURE as EVENT_HISTORY, GET_EVENTS, READ, History
from ..core.mailbox import Mailboxes, MessageIds
from ..core.procedures import AdminPolicy
from ..core.records import StoreError
from ..core.router import welcome_roles
from ..store import open_store

log = Logger(namespace="relayrouter")


class Durable:
    def __init__(self, config, router, reactor) -> None:
        self.config = config
        self.router = router
        self.reactor = reactor
        self.store = None
        if self.needed(config):
            self.store = open_store(config.storage, config.state_dir, reactor.callFromThread)
            try:
                self.store.start()
            except StoreError as e:
                raise StoreError(f"storage: {self.store.describe()}: {e}") from None
            except Exception as e:  # noqa: BLE001 - a driver's error: say where, not the DSN
                raise StoreError(f"storage: cannot open {self.store.describe()}: "
                                 f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}") from None
            log.info("Durable store: {where}", where=self.store.describe())
        # Set by the service before realms are built: the admin policy in force
        # (security.CurrentAdmin; else [revocation] as at start) and the console's users.
        self.admin = None
        self.viewers = None
        self.histories: list[History] = []
        self.mailboxes_by_realm: dict[str, Mailboxes] = {}
        self._sweep = None
        self._ids = None
        # The other nodes of a cluster (cluster/mailboxes.MailboxPeers), once share_with is called.
        self.peers = None
        # Kept messages by realm, until that realm's mailboxes exist (tenants come later).
        self._kept: dict[str, list] = {}
        self._kept_counters: dict[str, dict] = {}  # realm -> mailbox URI -> counters
        if self.store is not None:
            state = self.store.mailbox_load()
            self._ids = MessageIds(self.store, state.next_id)
            for message in state.messages:
                self._kept.setdefault(message.realm, []).append(message)
            for (realm, mailbox), counters in state.counters.items():
                self._kept_counters.setdefault(realm, {})[mailbox] = counters

    def report_unclaimed(self) -> None:
        """Once every realm is built (tenants restored too): say what no realm took."""
        if self._kept:
            log.warn("Mailboxes: stored messages of realms with no mailboxes now ({realms}); "
                     "left in the store untouched", realms=", ".join(sorted(self._kept)))

    @staticmethod
    def needed(config) -> bool:
        storage = config.storage
        templates = config.tenants.templates if config.tenants is not None else ()
        return bool(storage is not None and storage.dsn) or any(
            r.history or r.mailboxes for r in (*config.realms, *templates))

    def install_realm(self, realm, rc) -> None:
        """History and mailboxes of a realm (realms.RealmBuilder)."""
        self._install(realm, rc)

    def forget_realm(self, realm) -> None:
        self.histories = [h for h in self.histories if h.realm is not realm]
        self.mailboxes_by_realm.pop(realm.name, None)
        if self.peers is not None:
            self.peers.forget(realm.name)

    def share_with(self, peers) -> None:
        """Clustered: the store is the PostgreSQL database every node shares
        (the configuration refuses a cluster without one).  It numbers each
        mailbox's messages at commit, and every realm's mailboxes, now and
        later, are kept in step with the other nodes' (core/mailbox_sync.py)."""
        self.peers = peers
        if self.store is None:
            return
        self.store.shared = True
        self._ids = None
        for mailboxes in self.mailboxes_by_realm.values():
            mailboxes.ids = None
            peers.share(mailboxes)

    def purge_realm(self, name: str, done) -> bool:
        """Drop everything stored for realm ``name`` (a deleted tenant's): its
        history, mailbox messages and counters; ``done()`` once that has
        committed.  False when no store is open (nothing is done)."""
        self._kept.pop(name, None)
        self._kept_counters.pop(name, None)
        if self.store is None:
            return False

        def committed(outcome) -> None:
            if isinstance(outcome, Exception):
                log.error("Stored data of deleted realm {realm}: purge failed ({error}); "
                          "tried again at the next start", realm=name, error=str(outcome))
                return
            log.info("Stored data of deleted realm {realm} purged (history, mailboxes)", realm=name)
            done()

        self.store.realm_purge(name, committed)
        return True

    def _install(self, realm, rc) -> None:
        if rc.history:
            history = History(realm, rc.history, self.store)
            realm.broker.history = history
            # "A Broker that implements event history must indicate ... features.event_history"
            realm.welcome_roles = welcome_roles(broker_extra=(EVENT_HISTORY,))
            self.histories.append(history)
        if rc.mailboxes:
            self._install_mailboxes(realm, rc.mailboxes)

    def _install_mailboxes(self, realm, rules) -> None:
        mailboxes = Mailboxes(realm, rules, self.store, self._ids, self.admin or self._admin(),
                              _public_base(self.config))
        mailboxes.viewers = self.viewers
        mailboxes.report = lambda error, realm=realm.name: log.error(
            "Mailboxes of realm {realm}: the store failed: {error}", realm=realm, error=str(error))
        self.mailboxes_by_realm[realm.name] = mailboxes
        self._load_kept(mailboxes)
        if self.peers is not None:
            self.peers.share(mailboxes)

    def reload_public_url(self, security_config) -> None:
        """[http] public_url: the base of the mailbox endpoint URLs handed out from now on."""
        self.config = replace(self.config, security=security_config)
        for mailboxes in self.mailboxes_by_realm.values():
            mailboxes.public_base = _public_base(self.config)

    # -------------------------------------------------------------- reload

    def can_reload_history(self, old_rules, new_rules) -> bool:
        """Whether new history rules can apply live (not when they need a store none opened)."""
        return self.store is not None or not new_rules

    def reload_history(self, realm, rules) -> None:
        """History rules of a running realm replaced (kept events stay where they are)."""
        old = realm.broker.history
        if old is not None:
            realm.procedures.remove(GET_EVENTS)
            realm.procedures.remove(READ)
            self.histories.remove(old)
            realm.broker.history = None
            realm.welcome_roles = None
        if rules:
            history = History(realm, rules, self.store)
            realm.broker.history = history
            realm.welcome_roles = welcome_roles(broker_extra=(EVENT_HISTORY,))
            self.histories.append(history)
        self._ensure_sweep()

    def can_reload_mailboxes(self, old_rules, new_rules) -> bool:
        """Mailbox rules apply live, patterns added or removed included; not
        when they need a store none opened at start."""
        return self.store is not None or not new_rules

    def reload_mailboxes(self, realm, rules, admin) -> None:
        """A running realm's mailbox rules replaced (core.mailbox.Mailboxes.replace_rules);
        the first rules of a realm make its mailboxes, none left detaches them."""
        mailboxes = self.mailboxes_by_realm.get(realm.name)
        if mailboxes is None:
            if rules:
                self._install_mailboxes(realm, rules)
                self._ensure_sweep()
            return
        if rules:
            mailboxes.replace_rules(rules, admin)
            mailboxes.attach()
        else:
            mailboxes.detach()
        self._ensure_sweep()

    def _ensure_sweep(self) -> None:
        if self._sweep is None and self.store is not None:
            self.start()

    def _admin(self) -> AdminPolicy:
        security = self.config.security
        revocation = getattr(security, "revocation", None)
        if revocation is None:
            return AdminPolicy()
        return AdminPolicy(frozenset(revocation.admin_roles), revocation.admin_scope)

    def _load_kept(self, mailboxes) -> None:
        for uri, counters in self._kept_counters.pop(mailboxes.realm.name, {}).items():
            mailboxes.restore_counters(uri, counters)
        messages = self._kept.pop(mailboxes.realm.name, [])
        orphans = sum(1 for message in messages if not mailboxes.load(message))
        if messages:
            log.info("Mailboxes of realm {realm}: {count} messages kept from before",
                     realm=mailboxes.realm.name, count=len(messages) - orphans)
        if orphans:
            log.warn("Mailboxes of realm {realm}: {orphans} stored messages belong to mailboxes no "
                     "rule names now; left in the store untouched", realm=mailboxes.realm.name, orphans=orphans)

    def http_resources(self) -> dict:
        # With a store open, mailboxes may come later (a tenant, a reload): /mailbox is there for them.
        if self.store is None:
            return {}
        from ..transport.mailbox_http import MailboxResource

        return {b"mailbox": MailboxResource(self.mailboxes_by_realm)}

    def start(self) -> None:
        """The store's thread in a daemonized process, then periodic work: history and mailbox expiry."""
        if self.store is not None:
            self.store.after_fork()
        ages = [rule.max_age for h in self.histories for rule in h.rules if rule.max_age]
        ages += [rule.max_age for mbs in self.mailboxes_by_realm.values() for rule in mbs.rules if rule.max_age]
        if ages:
            self._sweep = task.LoopingCall(self._expire)
            self._sweep.clock = self.reactor
            self._sweep.start(min(60.0, max(1.0, min(ages) / 10)), now=True)

    def _expire(self) -> None:
        for history in self.histories:
            history.expire()
        for mailboxes in self.mailboxes_by_realm.values():
            mailboxes.expire()

    def stop(self) -> None:
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        self._sweep = None
        if self.store is not None:
            self.store.close()
            self.store = None


def _public_base(config) -> str | None:
    """https://host from http.public_url (wss://host/ws), for mailbox endpoint URLs."""
    http = getattr(config.security, "http", None)
    url = getattr(http, "public_url", None)
    if not url:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"
