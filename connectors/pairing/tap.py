"""``twistd pairing-agent``: options (each with a PAIRING_AGENT_* environment variable) and the service."""

from twisted.python import usage

from connectors.common import ConfigError, ConnectorOptions

from .service import PairingAgent


class Options(ConnectorOptions, usage.Options):
    env_prefix = "PAIRING_AGENT"
    connector_defaults = {
        "local-service": (None, str),
        "listen": ("tcp:5001:interface=127.0.0.1", str),
        "control": ("tcp:5002:interface=127.0.0.1", str),
        "event-endpoint": (None, str),
        "request-timeout": (30.0, float),
        "max-body": (16 * 1024 * 1024, int),
    }
    state_dir_default = "./pairing-agent-state"
    optParameters = ConnectorOptions.optParameters + [
        ["local-service", None, None, "Base URL of the REST service beside this peer, which the other peer "
                                      "calls (e.g. http://127.0.0.1:5000). Required."],
        ["listen", None, None, "Endpoint of the local port whose requests go to the other peer's REST API "
                               "(default tcp:5001:interface=127.0.0.1)."],
        ["control", None, None, "Endpoint of GET /status and POST /events/<name> "
                                "(default tcp:5002:interface=127.0.0.1)."],
        ["event-endpoint", None, None, "URL that notifications from the other peer are POSTed to "
                                       "(default: logged only)."],
        ["request-timeout", None, None, "Seconds the local service has to answer (default 30): then 504."],
        ["max-body", None, None, "Largest request or response body carried, in bytes (default 16 MiB)."],
    ]

    def build(self) -> None:
        self.resolve()
        self.require_http_url("local-service", "the URL of the REST service beside this peer")
        self.require_above_zero("request-timeout", "max-body")
        self.settings = self.router_settings()


def makeService(options: Options):
    return PairingAgent(options.settings, options["local-service"], options["listen"], options["control"],
                        options["event-endpoint"], options["request-timeout"], options["max-body"])
