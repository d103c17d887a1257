"""Wiring of the durable store and what uses it into a running router.

Built by :class:`relayrouter.service.RouterService` from the configuration:
the store (SQLite in the state directory, or PostgreSQL), opened at start
only when something needs it, its completions handed to the reactor thread.
"""

from twisted.internet import task
from twisted.logger import Logger

from .core.history import FEATURE as EVENT_HISTORY, History
from .core.router import welcome_roles
from .store import StoreError, open_store

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
        self.histories: list[History] = []
        self._sweep = None
        for realm_config in config.realms:
            self._install(router.realms[realm_config.name], realm_config)

    @staticmethod
    def needed(config) -> bool:
        storage = config.storage
        return bool(storage is not None and storage.dsn) or any(
            r.history or r.mailboxes for r in config.realms)

    def _install(self, realm, rc) -> None:
        if rc.history:
            history = History(realm, rc.history, self.store)
            realm.broker.history = history
            # "A Broker that implements event history must indicate ... features.event_history"
            realm.welcome_roles = welcome_roles(broker_extra=(EVENT_HISTORY,))
            self.histories.append(history)

    def start(self) -> None:
        """Periodic work: history expiry."""
        ages = [rule.max_age for h in self.histories for rule in h.rules if rule.max_age]
        if ages:
            self._sweep = task.LoopingCall(self._expire)
            self._sweep.clock = self.reactor
            self._sweep.start(min(60.0, max(1.0, min(ages) / 10)), now=True)

    def _expire(self) -> None:
        for history in self.histories:
            history.expire()

    def stop(self) -> None:
        if self._sweep is not None and self._sweep.running:
            self._sweep.stop()
        self._sweep = None
        if self.store is not None:
            self.store.close()
            self.store = None
