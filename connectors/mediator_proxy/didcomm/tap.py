"""``twistd mediator-proxy didcomm``: the options, named as Indicio's proxy-mediator names them.

Each option reads the seed's environment variable (``PORT``, ``ENDPOINT``,
``MEDIATOR_INVITE``, ``POLL_INTERVAL``, ``ENABLE_STORE``, ``REPO_URI``,
``REPO_KEY``, ``LOG_LEVEL``), so a deployment that ran the proxy-mediator
with those variables runs this process with the same environment.
"""

import os

from twisted.python import usage

from relayrouter.api import runfiles

from ...common import ConfigError, load_api_token
from ...common.state import open_state_dir
from .. import check_listen_port
from .service import DidcommConfig

SEED_ENV = {"port": "PORT", "endpoint": "ENDPOINT", "mediator-invite": "MEDIATOR_INVITE",
            "poll-interval": "POLL_INTERVAL", "repo-uri": "REPO_URI", "repo-key": "REPO_KEY",
            "log-level": "LOG_LEVEL"}
OWN_ENV = {"state-dir": "MEDIATOR_PROXY_STATE_DIR", "max-attempts": "MEDIATOR_PROXY_MAX_ATTEMPTS",
           "agent-retry-max": "MEDIATOR_PROXY_AGENT_RETRY_MAX", "api-token-file": "MEDIATOR_PROXY_API_TOKEN_FILE",
           "max-spooled": "MEDIATOR_PROXY_MAX_SPOOLED"}
TOKEN_ENV = "MEDIATOR_PROXY_API_TOKEN"


class DidcommOptions(usage.Options):
    synopsis = "didcomm [options]"
    longdesc = ("DIDComm mode, in place of Indicio's proxy-mediator: connect to an external DIDComm mediator"
                " from its invitation, offer an invitation to the agent, retrieve what waits at the mediator"
                " over a WebSocket and post it to the agent, spooled on disk until the agent took it.")
    optFlags = [["enable-store", None, "The proxy-mediator's ENABLE_STORE: at the first start (empty --state-dir)"
                                       " its connections are read from the Askar store at REPO_URI (REPO_KEY);"
                                       " this proxy keeps them in --state-dir from then on."]]
    optParameters = [
        ["port", None, None, "Port for DIDComm inbound and the admin routes (PORT; required)."],
        ["endpoint", None, None, "This proxy's URL as the agent reaches it (ENDPOINT; required)."],
        ["mediator-invite", None, None, "The external mediator's invitation URL, c_i= or oob= (MEDIATOR_INVITE);"
                                        " else POST /receive_mediator_invitation."],
        ["poll-interval", None, None, "Seconds between polls of the mediator (POLL_INTERVAL; default 20)."],
        ["repo-uri", None, None, "The proxy-mediator's Askar store, read once with ENABLE_STORE (REPO_URI)."],
        ["repo-key", None, None, "Its key (REPO_KEY; never logged nor kept)."],
        ["log-level", None, None, "LOG_LEVEL of the proxy-mediator (accepted; twistd logs at info)."],
        ["state-dir", None, None, "Keys, connections, spool and dead letters (MEDIATOR_PROXY_STATE_DIR;"
                                  " default ./mediator-proxy-state)."],
        ["max-attempts", None, None, "Refusals by the agent before a message becomes a dead letter (default 5)."],
        ["agent-retry-max", None, None, "Most seconds between posts to an agent that is down (default 30)."],
        ["max-spooled", None, None, "Messages the spool holds for an agent that is not taking them; beyond,"
                                    " the mediator keeps the rest (no polls, 503 to its posts) (default 100000)."],
        ["api-token-file", None, None, "File (chmod 600) with a token the admin routes then ask for"
                                       " (Authorization: Bearer); or the token in MEDIATOR_PROXY_API_TOKEN;"
                                       " default: open, as the proxy-mediator's."],
    ]

    def postOptions(self) -> None:
        try:
            self["config"] = self.build(os.environ)
        except ConfigError as e:
            raise runfiles.ConfigurationRefused("mediator-proxy", e) from None

    def value(self, env, name: str, default=None):
        given = self[name]
        variable = SEED_ENV.get(name) or OWN_ENV.get(name)
        return given if given is not None else (env.get(variable) or default)

    def name(self, name: str) -> str:
        return f"--{name} ({SEED_ENV.get(name) or OWN_ENV.get(name)})"

    def build(self, env) -> DidcommConfig:
        port, endpoint = self.value(env, "port"), self.value(env, "endpoint")
        if not port:
            raise ConfigError(f"{self.name('port')}: required")
        if not endpoint:
            raise ConfigError(f"{self.name('endpoint')}: required (this proxy's URL, as the agent reaches it)")
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"{self.name('endpoint')}: {endpoint!r} is not an http:// or https:// URL")
        store = self["enable-store"] or str(env.get("ENABLE_STORE", "")).lower() in ("1", "true", "yes", "on")
        if store and not self.value(env, "repo-uri"):
            raise ConfigError(f"{self.name('repo-uri')}: required when the store is enabled")
        if store and not self.value(env, "repo-key"):
            raise ConfigError(f"{self.name('repo-key')}: required when the store is enabled")
        numbers = {name: self._number(env, name, kind, default) for name, kind, default in (
            ("poll-interval", float, 20.0), ("max-attempts", int, 5), ("agent-retry-max", float, 30.0),
            ("max-spooled", int, 100000))}
        state_dir = open_state_dir(self.value(env, "state-dir", "./mediator-proxy-state"))
        token_file = self.value(env, "api-token-file")
        token = load_api_token(token_file, env.get(TOKEN_ENV), TOKEN_ENV, state_dir) \
            if token_file or env.get(TOKEN_ENV) else None
        seed_store = (self.value(env, "repo-uri"), self.value(env, "repo-key")) if store else None
        return DidcommConfig(api_token=token, seed_store=seed_store, port=check_listen_port(port, self.name("port")), endpoint=endpoint,
                             state_dir=state_dir, mediator_invite=self.value(env, "mediator-invite"),
                             poll_interval=numbers["poll-interval"], max_attempts=numbers["max-attempts"],
                             agent_retry_max=numbers["agent-retry-max"], max_spooled=numbers["max-spooled"],
                             agent_retry_initial=min(0.5, numbers["agent-retry-max"]))

    def _number(self, env, name: str, kind, default):
        raw = self.value(env, name, default)
        try:
            value = kind(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{self.name(name)}: {raw!r} is not a valid {kind.__name__}") from None
        if value <= 0:
            raise ConfigError(f"{self.name(name)}: must be above 0")
        return value
