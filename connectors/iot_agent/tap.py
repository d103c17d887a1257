"""``twistd iot-agent``: options and the service maker.

Every option also reads ``IOT_AGENT_<OPTION>`` (see ``--help``); secrets
(the MQTT password, the API JWT secret) come from files or the environment,
never the command line.
"""

import os

from twisted.python import usage

from connectors.common import ConfigError, ConnectorOptions
from relayrouter.api import extras, read_secret_file, runfiles

from .dojot_filter import COMPAT_MODES
from .service import AgentConfig, IotAgent

AGENT_DEFAULTS = {
    "listen": ("tcp:8090:interface=127.0.0.1", str),
    "database": (None, str),
    "sqlite-synchronous": ("full", str),
    "tenants": (None, str),
    "device-tls-listen": (None, str),
    "device-tls-cert": (None, str),
    "device-tls-key": (None, str),
    "device-tls-ca": (None, str),
    "mqtt-host": ("127.0.0.1", str),
    "mqtt-port": (1883, int),
    "mqtt-username": (None, str),
    "mqtt-password-file": (None, str),
    "mqtt-client-id": ("iot-agent", str),
    "mqtt-workers": (4, int),
    "mqtt-share-group": ("iot-agent", str),
    "mqtt-receive-maximum": (1000, int),
    "mqtt-worker-protocol": ("3.1.1", str),
    "legacy-topics": (True, bool),
    "api-jwt-secret-file": (None, str),
    "api-jwt-public-key": (None, str),
    "api-jwt-algorithms": (None, str),
    "api-jwt-audience": (None, str),
    "api-jwt-issuer": (None, str),
    "api-tenant-claim": ("service", str),
    "ticket-lifetime": (60.0, float),
    "kafka-ws-max-lifetime": (7200.0, float),
    "kafka-ws-jwt-exp": (False, bool),
    "compat": ("relayrouter", str),
}


class Options(ConnectorOptions, usage.Options):
    synopsis = "[options]"
    longdesc = ("Take device data over HTTP (dojot's HTTP agent API) and MQTT (through Mosquitto, whose device"
                " accounts it provisions), store it, publish it on device-data in each tenant's realm, and serve"
                " dojot's device registry, history and Kafka-WS APIs. Every option also reads"
                " IOT_AGENT_<OPTION>.")
    env_prefix = "IOT_AGENT"
    connector_defaults = AGENT_DEFAULTS
    state_dir_default = "./iot-agent-state"

    optParameters = [
        ["listen", None, None, "HTTP endpoint (Twisted endpoint string; default tcp:8090:interface=127.0.0.1)."],
        ["database", None, None, "postgresql://... for PostgreSQL (put a password in the environment variable);"
                                 " default SQLite in --state-dir."],
        ["sqlite-synchronous", None, None, "full (default: every commit fsynced, survives power loss) or normal"
                                           " (survives the agent being killed, not a power loss; faster)."],
        ["tenants", None, None, "Serve these tenants (comma-separated realms) instead of following the router's."],
        ["device-tls-listen", None, None, "HTTP agent on TLS requiring a client certificate (CN tenant:deviceid),"
                                          " an endpoint string such as tcp:8443:interface=0.0.0.0."],
        ["device-tls-cert", None, None, "Server certificate (PEM) of --device-tls-listen."],
        ["device-tls-key", None, None, "Its private key (PEM, chmod 600)."],
        ["device-tls-ca", None, None, "CA certificates (PEM) that device certificates must chain to."],
        ["mqtt-host", None, None, "Mosquitto's host (default 127.0.0.1; empty: no MQTT)."],
        ["mqtt-port", None, None, "Mosquitto's port (default 1883)."],
        ["mqtt-username", None, None, "A dynamic-security admin account of Mosquitto (required with MQTT)."],
        ["mqtt-password-file", None, None, "File with its password (or IOT_AGENT_MQTT_PASSWORD)."],
        ["mqtt-client-id", None, None, "Client id prefix: <id>-control and <id>-<n> (default iot-agent)."],
        ["mqtt-workers", None, None, "MQTT connections sharing the device subscription (default 4)."],
        ["mqtt-share-group", None, None, "The shared subscription's group (default iot-agent)."],
        ["mqtt-receive-maximum", None, None, "Unacknowledged messages the broker may send each worker (default 1000)."],
        ["mqtt-worker-protocol", None, None, "3.1.1 (default) or 5 for the ingesting connections: 3.1.1 costs less"
                                             " per message (the broker's max_inflight_messages bounds the flow), 5"
                                             " announces --mqtt-receive-maximum."],
        ["legacy-topics", None, None, "Also publish actuation on /<tenant>/<device>/config (default true)."],
        ["api-jwt-secret-file", None, None, "HMAC secret that signs callers' JWTs (or IOT_AGENT_API_JWT_SECRET)."],
        ["api-jwt-public-key", None, None, "PEM public key that verifies callers' JWTs (RS*/ES*/EdDSA)."],
        ["api-jwt-algorithms", None, None, "Accepted JWT algorithms, comma-separated (default HS256, or RS256,ES256,EdDSA"
                                           " with a public key)."],
        ["api-jwt-audience", None, None, "Required 'aud' of callers' JWTs (default: not checked)."],
        ["api-jwt-issuer", None, None, "Required 'iss' of callers' JWTs (default: not checked)."],
        ["api-tenant-claim", None, None, "The JWT claim naming the caller's tenant (default service, dojot's)."],
        ["ticket-lifetime", None, None, "Seconds a Kafka-WS ticket is good for (default 60)."],
        ["kafka-ws-max-lifetime", None, None, "Seconds a Kafka-WS connection may last (default 7200; -1: no limit)."],
        ["kafka-ws-jwt-exp", None, None, "Let a Kafka-WS connection last until its JWT's exp if later (default false)."],
        ["compat", None, None, "relayrouter (default) or dojot: also where relayrouter deliberately differs from"
                               " dojot v0.8.0, behave as dojot does (README: Differences from dojot)."],
    ]

    def build(self) -> None:
        self.resolve()
        env = os.environ
        if self["realm"] == "realm1" and self.sources.get("realm") == "default":
            self["realm"] = "management"
        if self["sqlite-synchronous"] not in ("full", "normal"):
            raise ConfigError(f"{self.describe_option('sqlite-synchronous')}: full or normal, "
                              f"not {self['sqlite-synchronous']!r}")
        self.require_above_zero("mqtt-workers", "mqtt-receive-maximum", "ticket-lifetime")
        if self["mqtt-worker-protocol"] not in ("5", "3.1.1"):
            raise ConfigError(f"{self.describe_option('mqtt-worker-protocol')}: 5 or 3.1.1, "
                              f"not {self['mqtt-worker-protocol']!r}")
        if ":" in self["mqtt-client-id"] or not self["mqtt-client-id"]:  # device client ids are tenant:id
            raise ConfigError(f"{self.describe_option('mqtt-client-id')}: a non-empty id without ':' (devices' "
                              f"client ids are tenant:id), not {self['mqtt-client-id']!r}")
        if not 0 < self["mqtt-port"] < 65536:
            raise ConfigError(f"{self.describe_option('mqtt-port')}: not a port")
        mqtt_password = env.get("IOT_AGENT_MQTT_PASSWORD") or None
        if self["mqtt-password-file"]:
            mqtt_password = read_secret_file(self["mqtt-password-file"], "--mqtt-password-file")
        if self["mqtt-host"] and not (self["mqtt-username"] and mqtt_password):
            raise ConfigError(f"{self.describe_option('mqtt-username')} and --mqtt-password-file "
                              "(IOT_AGENT_MQTT_PASSWORD): required with MQTT (a dynamic-security admin account);"
                              " or --mqtt-host '' for none")
        if (self["database"] or "").startswith(("postgresql://", "postgres://")):
            extras.require("--database postgresql://...", "postgresql")
        tls = [self[n] for n in ("device-tls-listen", "device-tls-cert", "device-tls-key", "device-tls-ca")]
        if any(tls) and not all(tls):
            raise ConfigError("--device-tls-listen, --device-tls-cert, --device-tls-key and --device-tls-ca "
                              "go together")
        if self["compat"] not in COMPAT_MODES:
            raise ConfigError(f"{self.describe_option('compat')}: {' or '.join(COMPAT_MODES)}, not {self['compat']!r}")
        key, algorithms = self._jwt_key(env)
        tenants = tuple(t.strip() for t in self["tenants"].split(",") if t.strip()) if self["tenants"] else None
        self["config"] = AgentConfig(
            router=self.router_settings(), state_dir=self["state-dir"], listen=self["listen"],
            database=self["database"], sqlite_synchronous=self["sqlite-synchronous"], tenants=tenants,
            device_tls_listen=self["device-tls-listen"], device_tls_cert=self["device-tls-cert"],
            device_tls_key=self["device-tls-key"], device_tls_ca=self["device-tls-ca"],
            mqtt_host=self["mqtt-host"] or None, mqtt_port=self["mqtt-port"], mqtt_username=self["mqtt-username"],
            mqtt_password=mqtt_password, mqtt_client_id=self["mqtt-client-id"], mqtt_workers=self["mqtt-workers"],
            mqtt_share_group=self["mqtt-share-group"], mqtt_receive_maximum=self["mqtt-receive-maximum"],
            mqtt_worker_protocol=self["mqtt-worker-protocol"],
            legacy_topics=self["legacy-topics"], api_jwt_key=key, api_jwt_algorithms=algorithms,
            api_jwt_audience=self["api-jwt-audience"], api_jwt_issuer=self["api-jwt-issuer"],
            api_tenant_claim=self["api-tenant-claim"], ticket_lifetime=self["ticket-lifetime"],
            kafka_ws_max_lifetime=self["kafka-ws-max-lifetime"], kafka_ws_jwt_exp=self["kafka-ws-jwt-exp"],
            compat=self["compat"])

    def _jwt_key(self, env):
        secret = env.get("IOT_AGENT_API_JWT_SECRET") or None
        if self["api-jwt-secret-file"]:
            secret = read_secret_file(self["api-jwt-secret-file"], "--api-jwt-secret-file")
        public = None
        if self["api-jwt-public-key"]:
            try:
                with open(self["api-jwt-public-key"], "rb") as f:
                    public = f.read()
            except OSError as e:
                raise ConfigError(f"--api-jwt-public-key: cannot read {self['api-jwt-public-key']}: {e.strerror}")
        if secret and public:
            raise ConfigError("--api-jwt-secret-file and --api-jwt-public-key: give one")
        if secret is not None and len(secret.encode()) < 32:
            raise ConfigError("--api-jwt-secret-file (IOT_AGENT_API_JWT_SECRET): at least 32 bytes")
        default = "HS256" if public is None else "RS256,ES256,EdDSA"
        algorithms = tuple(a.strip() for a in (self["api-jwt-algorithms"] or default).split(",") if a.strip())
        if public is None and any(not a.startswith("HS") for a in algorithms):
            raise ConfigError("--api-jwt-algorithms: an HMAC secret verifies only HS256/HS384/HS512")
        if public is not None and any(a.startswith("HS") for a in algorithms):
            raise ConfigError("--api-jwt-algorithms: a public key never verifies HS* (that would accept forgeries)")
        return (public if public is not None else secret), algorithms


def makeService(options):
    runfiles.lock_state_dir(options["state-dir"])
    return IotAgent(options["config"])
