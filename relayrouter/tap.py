"""``twistd relayrouter``: options and the service maker."""

import os

from twisted.python import usage

from . import config as cfg
from . import extras, logs, runfiles


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the relayrouter WAMP router. With no options: WebSocket at "
        "ws://127.0.0.1:8080/ws, realm 'realm1' open to anonymous clients "
        "(a local development default)."
    )
    optParameters = [
        ["config", "c", None, "TOML configuration file (listeners, realms, limits)."],
        ["state-dir", None, None, "Directory for what the router persists (default ./relayrouter-state)."],
        ["max-message-size", None, None, "Largest WAMP message accepted, in bytes (default 16 MiB)."],
        ["log-format", None, None,
         f"Log lines as 'text' (default) or 'json', one object per line (env {logs.ENV})."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["websocket"] = []
        self["rawsocket"] = []
        self["realm"] = []

    def opt_websocket(self, endpoint: str) -> None:
        """A WebSocket listener as a Twisted endpoint string, e.g. tcp:8080:interface=127.0.0.1. Repeatable; replaces the default."""
        self["websocket"].append(endpoint)

    def opt_rawsocket(self, endpoint: str) -> None:
        """A RawSocket listener as a Twisted endpoint string (tcp:..., unix:..., ssl:...). Repeatable."""
        self["rawsocket"].append(endpoint)

    def opt_realm(self, name: str) -> None:
        """A realm open to anonymous clients. Repeatable; replaces the default realm1."""
        self["realm"].append(name)

    def postOptions(self) -> None:
        runfiles.own_twistd_files(self.parent, "relayrouter")
        self._log_format()
        try:
            self["parsed_config"] = build_config(self)
        except cfg.ConfigError as e:
            raise runfiles.ConfigurationRefused("relayrouter", e) from None
        require_extras(self["parsed_config"])

    def _log_format(self) -> None:
        given = self["log-format"]
        where = "--log-format" if given is not None else logs.ENV
        chosen = given if given is not None else os.environ.get(logs.ENV, "text")
        if chosen not in logs.FORMATS:
            raise usage.UsageError(f"{where}: must be one of {', '.join(logs.FORMATS)}, not {chosen!r}")
        self["log-format"] = chosen
        if chosen == "json" and self.parent is not None:
            try:
                logs.use_json_with_twistd(self.parent)
            except ValueError as e:
                raise usage.UsageError(str(e)) from None


def build_config(options) -> cfg.Config:
    config = cfg.load(options["config"]) if options["config"] else cfg.Config()
    listeners = [cfg.Listener("websocket", e) for e in options["websocket"]]
    listeners += [cfg.Listener("rawsocket", e) for e in options["rawsocket"]]
    if listeners:
        config = cfg.replace(config, listeners=tuple(listeners))
    if options["realm"]:
        known = {r.name for r in config.realms}
        extra = tuple(cfg.RealmConfig(n) for n in dict.fromkeys(options["realm"]) if n not in known)
        config = cfg.replace(config, realms=config.realms + extra)
    if options["state-dir"]:
        config = cfg.replace(config, state_dir=options["state-dir"])
    if options["max-message-size"]:
        try:
            size = int(options["max-message-size"])
        except ValueError:
            raise cfg.ConfigError("--max-message-size: must be a whole number of bytes") from None
        if size < 512:
            raise cfg.ConfigError("--max-message-size: must be at least 512 bytes")
        config = cfg.replace(config, limits=cfg.replace(config.limits, max_message_size=size))
    return config.with_defaults()


def require_extras(config: cfg.Config) -> None:
    """One line and exit 1 when a configured feature's extra is not installed."""
    if config.cluster is not None:
        extras.require("[cluster]", "cluster")
    if config.storage is not None and config.storage.dsn is not None:
        extras.require("[storage] dsn (PostgreSQL)", "postgresql")


def makeService(options):
    from .service import RouterService
    from .core.records import StoreError

    runfiles.lock_state_dir(options["parsed_config"].state_dir)
    try:
        reload_config = (lambda: build_config(options)) if options["config"] else None
        return RouterService(options["parsed_config"], handle_signals=True, reload_config=reload_config)
    except StoreError as e:
        # The database cannot be opened or upgraded: say so in one line, exit 1.
        raise SystemExit(f"relayrouter: {e}") from None
    except cfg.ConfigError as e:
        # What only the running process can check (cluster.loop against the reactor twistd installed).
        raise SystemExit(f"relayrouter: configuration error: {e}") from None
