"""Wiring of the durable store and what uses it into a running router.

Built by :class:`relayrouter.service.RouterService` from the configuration:
the store (SQLite in the state directory, or PostgreSQL), opened at start
only when something needs it, its completions handed to the reactor thread.
"""

from twisted.logger import Logger

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

    @staticmethod
    def needed(config) -> bool:
        storage = config.storage
        return bool(storage is not None and storage.dsn)

    def stop(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None
