"""``twistd decrypt-search``: options and the service.

Everything structured lives in the ``--config`` TOML file; the options say
where the router, the state and the keys are.  The organisation's private
keys come from ``--key-file`` (refused unless chmod 600) or, as the key
file's JSON itself, from the environment variable ``DECRYPT_SEARCH_KEY``;
neither is ever logged.

A ``--config`` file that lists ``[[organisations]]`` instead runs one service
per organisation in this process (:mod:`.organisations`): each with its own
router session, state subdirectory, store, key and HTTP API; one that cannot
start refuses the whole start.
"""

import dataclasses
import os

from twisted.application import service as service_module
from twisted.python import usage

from connectors.common import ConnectorOptions, RouterConnection, open_state_dir
from relayrouter.api import (ConfigError, Credentials, check_private_file, e2e_keys, extras, load_cryptosign_key,
                             read_secret_file, runfiles)

from . import config as cfg
from . import organisations as orgs_module
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
            self.organisations = None
            if orgs_module.is_listing(self["config"]):
                self.organisations = self._build_organisations()
                self.state_dir = open_state_dir(self["state-dir"])
                return
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


    def _build_organisations(self) -> list:
        """One :class:`Prepared` per listed organisation, each checked whole before any starts."""
        env = getattr(self, "_env", os.environ)
        for name, given in (("key-file", self["key-file"]), ("http", self["http"])):
            if given:
                raise ConfigError(f"{self.describe_option(name)}: not with a listing of organisations (each "
                                  "organisation's own file names its key and HTTP listeners)")
        if env.get(KEY_ENV):
            raise ConfigError(f"{KEY_ENV}: not with a listing of organisations (each organisation's own file "
                              "names its key: organisation.key_file or key_env)")
        return [self._prepare(org) for org in orgs_module.load(self["config"])]

    def _prepare(self, org) -> "Prepared":
        config = org.config
        try:
            if config.store_backend == "postgresql":
                extras.require('store.backend = "postgresql"', "postgresql")
            if config.http_auth is not None:
                Bearer(config.http_auth)
            keys = load_keys(self, config, from_options=False)
            cfg.check_rotation(config, keys)
            hooks = load_hooks(config.hooks)
            settings = dataclasses.replace(self.settings, credentials=organisation_credentials(self, org),
                                           realm=org.identity.realm or self.settings.realm)
        except (ConfigError, e2e_keys.KeyFileError) as e:
            raise ConfigError(f"{org.where} ({org.config_file}): {e}") from None
        return Prepared(org, keys, hooks, settings)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """One listed organisation, ready to start: its configuration, keys, hooks and router settings."""
    organisation: object  # organisations.Organisation
    keys: object
    hook_functions: list
    settings: object


def organisation_credentials(options, org) -> Credentials:
    """The entry's router identity; the command line's when the entry gives none."""
    identity = org.identity
    if not identity.given:
        return options.settings.credentials
    where = org.where
    for key in ("ticket_file", "jwt_file", "cryptosign_key"):
        path = getattr(identity, key)
        if path is not None:
            check_private_file(path, f"{where}.{key}")
    ticket = read_secret_file(identity.ticket_file, f"{where}.ticket_file") if identity.ticket_file else None
    jwt = read_secret_file(identity.jwt_file, f"{where}.jwt_file") if identity.jwt_file else None
    given = [m for m, v in (("ticket", ticket), ("jwt", jwt), ("cryptosign", identity.cryptosign_key)) if v]
    if identity.auth is None and len(given) > 1:
        raise ConfigError(f"{where}.auth: credentials for {' and '.join(given)} are given; say which to use")
    method = identity.auth or (given[0] if given else "anonymous")
    key = None
    if method == "cryptosign":
        if identity.cryptosign_key is None:
            raise ConfigError(f"{where}.cryptosign_key: required with auth = \"cryptosign\"")
        key = load_cryptosign_key(identity.cryptosign_key, f"{where}.cryptosign_key")
    try:
        return Credentials(method=method, authid=identity.authid, secret={"ticket": ticket, "jwt": jwt}.get(method),
                           key=key, secret_file={"jwt": identity.jwt_file}.get(method))
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def load_keys(options, config, from_options: bool = True) -> e2e_keys.FileKeys:
    """From --key-file, else DECRYPT_SEARCH_KEY, else the file's organisation.key_file / key_env."""
    env = getattr(options, "_env", os.environ)
    if from_options and options["key-file"]:
        keys = e2e_keys.load_private(options["key-file"])
    elif from_options and env.get(KEY_ENV):
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


def reread(options):
    """The configuration and keys read again, as at start (SIGHUP, one organisation per process; with a
    listing of organisations the keys change at a restart); ConfigError / KeyFileError when unusable."""
    config = cfg.load(options["config"])
    if options["http"]:
        config = dataclasses.replace(config, http_listen=config.http_listen + (options["http"],))
    keys = load_keys(options, config)
    cfg.check_rotation(config, keys)
    return config, keys


def makeService(options):
    if getattr(options, "organisations", None) is not None:
        return organisations_service(options)
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
                         hook_functions=options.hook_functions, reread=lambda: reread(options))


def organisations_service(options) -> service_module.MultiService:
    """One :class:`DecryptSearch` per listed organisation, named by it, each under its own state
    subdirectory; a store that cannot open refuses the whole start, naming the organisation."""
    runfiles.lock_state_dir(options.state_dir)
    top = service_module.MultiService()
    for prepared in options.organisations:
        org = prepared.organisation
        state_dir = os.path.join(options.state_dir, org.state_name)
        runfiles.lock_state_dir(state_dir, f"{org.where}.state_dir")
        os.chmod(state_dir, 0o700)
        organisation_service(org, prepared, state_dir).setServiceParent(top)
    return top


def organisation_service(org, prepared, state_dir: str) -> DecryptSearch:
    from twisted.internet import reactor

    config = org.config
    try:
        store = open_store(config, state_dir)
    except RuntimeError as e:
        raise runfiles.ConfigurationRefused("decrypt-search", f"{org.where} ({config.org}): {e}") from None

    def router_factory(on_join, on_leave):
        return RouterConnection(prepared.settings, on_join=on_join, on_leave=on_leave, reactor=reactor)

    def http_factory(api):
        listeners = http_services(config, api, reactor)
        for listener in listeners:
            listener.name_for_log = f"decrypt-search {config.org}"
        return listeners

    search = DecryptSearch(config, prepared.keys, store, router_factory, http_factory=http_factory,
                           reactor=reactor, hook_functions=prepared.hook_functions)
    search.setName(f"organisation {config.org}")
    return search
