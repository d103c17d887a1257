"""``twistd decrypt-search``: options and the service.

Everything structured lives in the ``--config`` TOML file; the options say
where the router, the state and the keys are.  The organisation's private
keys come from ``--key-file`` (refused unless chmod 600) or, as the key
file's JSON itself, from the environment variable ``DECRYPT_SEARCH_KEY``;
neither is ever logged.
"""

import dataclasses
import os

from twisted.python import usage

from connectors.common import ConnectorOptions, RouterConnection, open_state_dir
from relayrouter.api import ConfigError, e2e_keys, extras, runfiles

from . import config as cfg
from .bearer import Bearer
from .hooks import load as load_hooks
from .http import http_services
from .service import DecryptSearch
from .store import open_store

KEY_ENV = "DECRYPT_SEARCH_KEY"


class Options(ConnectorOptions, usage.Options):
    env_prefix = "DECRYPT_SEARCH"
    state_dir_default = "./decrypt-search-state"
    connector_defaults = {"config": (None, str), "key-file": (None, str), "http": (None, str)}
    optParameters = ConnectorOptions.optParameters + [
        ["config", None, None, "The TOML configuration file (required)."],
        ["key-file", None, None, "The organisation's private key file (relayrouter keys new); chmod 600. "
                                 f"Or put the file's JSON in {KEY_ENV}."],
        ["http", None, None, "An HTTP API listener (Twisted endpoint), adding to http.listen of the file."],
    ]

    def build(self) -> None:
        try:
            self.resolve()
            if not self["config"]:
                raise ConfigError(f"{self.describe_option('config')}: required")
            self.settings = dataclasses.replace(self.router_settings(), payload_passthru=True)
            self.config = cfg.load(self["config"])
            if self.config.store_backend == "postgresql":
                extras.require('store.backend = "postgresql"', "postgresql")
            if self["http"]:
                self.config = dataclasses.replace(self.config, http_listen=self.config.http_listen + (self["http"],))
                if self.config.http_auth is None:
                    raise ConfigError("http.auth: required when the HTTP API listens (--http)")
            if self.config.http_auth is not None:
                Bearer(self.config.http_auth)  # checks the keys and algorithms now, naming the key
            self.keys = load_keys(self, self.config)
            cfg.check_rotation(self.config, self.keys)
            self.hook_functions = load_hooks(self.config.hooks)
            self.state_dir = open_state_dir(self["state-dir"])
        except e2e_keys.KeyFileError as e:
            raise ConfigError(str(e)) from None


def load_keys(options, config) -> e2e_keys.FileKeys:
    """From --key-file, else DECRYPT_SEARCH_KEY, else the file's organisation.key_file / key_env."""
    env = getattr(options, "_env", os.environ)
    if options["key-file"]:
        keys = e2e_keys.load_private(options["key-file"])
    elif env.get(KEY_ENV):
        keys = e2e_keys.load_private_env(KEY_ENV, env)
    elif config.key_file:
        keys = e2e_keys.load_private(config.key_file)
    elif config.key_env:
        keys = e2e_keys.load_private_env(config.key_env, env)
    else:
        raise ConfigError(f"no private key: give --key-file, {KEY_ENV}, or organisation.key_file in the "
                          "configuration file")
    if keys.public.org and keys.public.org != config.org:
        raise ConfigError(f"organisation.name: the key file is {keys.public.org!r}'s, the configuration "
                          f"says {config.org!r}")
    return keys


def makeService(options):
    from twisted.internet import reactor

    config = options.config
    runfiles.lock_state_dir(options.state_dir)
    try:
        store = open_store(config, options.state_dir)
    except RuntimeError as e:
        raise runfiles.ConfigurationRefused("decrypt-search", e) from None

    def router_factory(on_join, on_leave):
        return RouterConnection(options.settings, on_join=on_join, on_leave=on_leave, reactor=reactor)

    return DecryptSearch(config, options.keys, store, router_factory,
                         http_factory=lambda api: http_services(config, api, reactor), reactor=reactor,
                         hook_functions=options.hook_functions)
