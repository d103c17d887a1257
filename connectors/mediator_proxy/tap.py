"""``twistd mediator-proxy``: options and the service maker.

Every option has an environment variable ``MEDIATOR_PROXY_<OPTION>``; what
was given (command line or environment) is remembered in ``--state-dir``, so
a restart with no options resumes with the same configuration.  Secrets are
never remembered: they come from the environment or from files each time;
the local API's token too (``--api-token-file``, ``MEDIATOR_PROXY_API_TOKEN``,
else ``<state-dir>/api-token``).
"""

import os

from twisted.python import usage

from relayrouter.api import extras, runfiles

from ..common import ConfigError, ConnectorOptions, StateStore, load_api_token
from ..common.state import open_state_dir
from .service import MediatorProxy, ProxyConfig

PROXY_DEFAULTS = {
    "agent-endpoint": (None, str),
    "listen": ("tcp:8081:interface=127.0.0.1", str),
    "mailbox": ("mailbox.{authid}", str),
    "public-url": (None, str),
    "max-attempts": (5, int),
    "max-inflight": (32, int),
    "agent-timeout": (30.0, float),
    "agent-retry-initial": (0.5, float),
    "agent-retry-max": (30.0, float),
    "max-outbound-bytes": (1048576, int),
    "max-outbound-messages": (100000, int),
    "api-token-file": (None, str),
}


class Options(ConnectorOptions, usage.Options):
    synopsis = "[options]"
    longdesc = ("Deliver a relayrouter mailbox to a local agent that cannot poll: connect out to the router,"
                " take the mailbox continuously, POST each message to --agent-endpoint, acknowledge after a 2xx."
                " Every option also reads MEDIATOR_PROXY_<OPTION>; options given are remembered in --state-dir.")
    env_prefix = "MEDIATOR_PROXY"
    connector_defaults = PROXY_DEFAULTS
    state_dir_default = "./mediator-proxy-state"

    optParameters = [
        ["agent-endpoint", None, None, "The agent's inbound HTTP URL, where messages are POSTed (required)."],
        ["listen", None, None, "Local HTTP endpoint (status, public endpoint, outbound), a Twisted endpoint"
                               " string (default tcp:8081:interface=127.0.0.1)."],
        ["mailbox", None, None, "Mailbox URI to take; {authid} is our authid (default mailbox.{authid})."],
        ["public-url", None, None, "The router's public http(s) base URL, if outside senders reach it by"
                                   " another name than --router (default: what the router says, else --router)."],
        ["max-attempts", None, None, "Refusals (4xx other than 408/425/429) before a message becomes a dead"
                                     " letter (default 5)."],
        ["max-inflight", None, None, "Messages the router may hand us ahead of their acknowledgement, 1 to 1000"
                                     " (default 32)."],
        ["agent-timeout", None, None, "Seconds to wait for the agent's answer (default 30)."],
        ["agent-retry-initial", None, None, "First delay before posting again to an agent that is down (default 0.5 s)."],
        ["agent-retry-max", None, None, "Most seconds between posts to an agent that is down (default 30)."],
        ["max-outbound-bytes", None, None, "Largest outbound message accepted on /outbound (default 1 MiB)."],
        ["max-outbound-messages", None, None, "Outbound messages the spool holds at most while the router is away;"
                                              " beyond, /outbound answers 507 (default 100000)."],
        ["api-token-file", None, None, "File holding the token the local API asks for (Authorization: Bearer),"
                                       " chmod 600; or put the token in MEDIATOR_PROXY_API_TOKEN; default: made"
                                       " once in <state-dir>/api-token."],
    ]

    subCommands = [["didcomm", None, lambda: _didcomm_options(), "DIDComm mode: in place of Indicio's proxy-mediator"
                                                       " (options and environment named as there)."]]

    def build(self) -> None:
        if self.subCommand == "didcomm":
            return  # the subcommand's options are all it needs
        persisted = _remembered_options(self._state_dir())
        self.resolve(persisted)
        self.require_above_zero("max-attempts", "max-inflight", "agent-timeout", "agent-retry-initial",
                                "agent-retry-max", "max-outbound-bytes", "max-outbound-messages")
        if self["max-inflight"] > 1000:
            raise ConfigError(f"{self.describe_option('max-inflight')}: at most 1000 (the router's bound)")
        if self["agent-retry-initial"] > self["agent-retry-max"]:
            raise ConfigError(f"{self.describe_option('agent-retry-initial')}: above --agent-retry-max")
        self.require_http_url("agent-endpoint", "the agent's inbound URL")
        self.require_http_url("public-url")
        check_listen(self["listen"], self.describe_option("listen"))
        env = getattr(self, "_env", os.environ)
        token = load_api_token(self["api-token-file"], env.get(self.env_name("api-token")),
                               self.env_name("api-token"), open_state_dir(self["state-dir"]))
        self["config"] = ProxyConfig(
            router=self.router_settings(), agent_endpoint=self["agent-endpoint"], state_dir=self["state-dir"],
            listen=self["listen"], mailbox=self["mailbox"], public_url=self["public-url"],
            max_attempts=self["max-attempts"], max_inflight=self["max-inflight"],
            agent_timeout=self["agent-timeout"], agent_retry_initial=self["agent-retry-initial"],
            agent_retry_max=self["agent-retry-max"], max_outbound_bytes=self["max-outbound-bytes"],
            max_outbound_messages=self["max-outbound-messages"], api_token=token)
        remembered = self.remembered()
        remembered.pop("state-dir", None)
        self["remembered"] = remembered

    def _state_dir(self) -> str:
        return self["state-dir"] or os.environ.get(self.env_name("state-dir")) or self.state_dir_default


def check_listen(description: str, what: str) -> None:
    """A Unix socket for the local API must not let other users connect (Twisted's default is 0666)."""
    if not description.startswith("unix:"):
        return
    fields = dict(part.split("=", 1) for part in description.split(":")[1:] if "=" in part)
    try:
        mode = int(fields.get("mode", "666"), 8)
    except ValueError:
        raise ConfigError(f"{what}: mode={fields['mode']!r} is not an octal mode") from None
    if mode & 0o007:
        raise ConfigError(f"{what}: the socket would let every user connect (mode {mode:04o});"
                          " add :mode=600 (or 660 for a group)")


def _remembered_options(state_dir: str) -> dict:
    """The options a previous run was given, if its state directory exists."""
    if not os.path.exists(os.path.join(state_dir, "state.sqlite3")):
        return {}
    open_state_dir(state_dir)
    store = StateStore(state_dir)
    try:
        return dict(store.get("options") or {})
    finally:
        store.close()


def _didcomm_options():
    extras.require("twistd mediator-proxy didcomm", "didcomm")
    from .didcomm.tap import DidcommOptions

    return DidcommOptions()


def makeService(options):
    if options.subCommand == "didcomm":
        from .didcomm.service import DidcommProxy

        config = options.subOptions["config"]
        runfiles.lock_state_dir(config.state_dir)
        return DidcommProxy(config)
    runfiles.lock_state_dir(options["state-dir"])
    return MediatorProxy(options["config"], remembered=options["remembered"])
