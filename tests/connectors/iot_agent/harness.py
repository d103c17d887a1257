"""Real parts for the IoT agent tests: a Mosquitto of the test's own (free
port, generated config with the dynamic-security plugin, stopped by PID), the
router (``twistd relayrouter``) with a management realm and a tenant
template, and the agent (``twistd iot-agent``)."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from types import SimpleNamespace

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from relayrouter.cli import pki

from ...ports import free_port
from ..processes import STARTED, Child, RouterProcess, twistd

DYNSEC_PLUGIN_PATHS = ("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
                       "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
                       "/usr/lib/mosquitto_dynamic_security.so")
JWT_SECRET = "iot-test-hmac-secret-0123456789abcdef-0123456789"
ADMIN_PASSWORD = "dynsec-admin-secret-for-tests"
AGENT_TICKET = "iot-agent-ticket-for-tests-0123456789"  # the router's principal iot-agent, in every realm
AGENT_LINE = r"iot-agent listening: http://127\.0\.0\.1:(\d+)/"
TLS_LINE = r"iot-agent device TLS listening: https://127\.0\.0\.1:(\d+)/"


def dynsec_plugin() -> str:
    for path in DYNSEC_PLUGIN_PATHS:
        if os.path.exists(path):
            return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("Mosquitto's dynamic-security plugin is not installed (scripts/test.sh installs mosquitto)")
    pytest.skip("Mosquitto's dynamic-security plugin is not installed (apt-get install mosquitto)")


class Mosquitto:
    """Our own broker: ``start()`` / ``stop()`` by PID; ``port``."""

    def __init__(self, directory: Path, extra: str = "") -> None:
        if shutil.which("mosquitto") is None or shutil.which("mosquitto_ctrl") is None:
            dynsec_plugin()  # skips or fails with the install hint
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail("mosquitto and mosquitto_ctrl are required (scripts/test.sh installs them)")
            pytest.skip("mosquitto and mosquitto_ctrl are required")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.plugin = dynsec_plugin()
        self.port = free_port()
        self.extra = extra
        self.proc = None
        self.dynsec = self.dir / "dynamic-security.json"
        subprocess.run(["mosquitto_ctrl", "dynsec", "init", str(self.dynsec), "admin", ADMIN_PASSWORD],
                       check=True, capture_output=True, timeout=30)
        self.log = self.dir / "mosquitto.log"

    def start(self) -> None:
        config = self.dir / "mosquitto.conf"
        config.write_text(
            "per_listener_settings false\n"
            f"listener {self.port} 127.0.0.1\n"
            f"plugin {self.plugin}\n"
            f"plugin_opt_config_file {self.dynsec}\n"
            "max_inflight_messages 1000\n"
            "max_queued_messages 1000000\n"
            "sys_interval 1\n"
            "persistence false\n"
            # Run as root (CI), mosquitto would switch to its own user, which
            # cannot enter the test's private temporary directory.
            + ("user root\n" if os.geteuid() == 0 else "")
            +
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            + self.extra)
        self.proc = subprocess.Popen(["mosquitto", "-c", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.proc.stderr.read().decode()} {self.describe()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)  # the broker binds its port; nothing else to wait on
        raise AssertionError(f"mosquitto did not listen on {self.port}: {self.describe()}")

    def describe(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


ROUTER_TOML = """
state_dir = "{state}"

[[listeners]]
type = "websocket"
endpoint = "tcp:{port}:interface=127.0.0.1"

[[realms]]
name = "management"
[realms.auth.jwt]
algorithms = ["HS256"]
as_ticket = true
authrole_claim = "role"
keys = [{secret_env = "IOT_TEST_JWT_SECRET"}]
[[realms.auth.ticket.principals]]
authid = "iot-agent"
role = "agent"
secret_env = "IOT_TEST_AGENT_TICKET"
[[realms.roles]]
name = "admin"
rules = [{uri = "relayrouter.realm.", match = "prefix", allow = ["call", "subscribe"]}]
[[realms.roles]]
name = "agent"
rules = [{uri = "relayrouter.realm.", match = "prefix", allow = ["call", "subscribe"]}]

[[realm_templates]]
name = "tenant"
[realm_templates.auth.jwt]
algorithms = ["HS256"]
as_ticket = true
authrole_claim = "role"
realm_claim = "service"
keys = [{secret_env = "IOT_TEST_JWT_SECRET"}]
[[realm_templates.auth.ticket.principals]]
authid = "iot-agent"
role = "agent"
secret_env = "IOT_TEST_AGENT_TICKET"
[[realm_templates.roles]]
name = "agent"
rules = [{uri = "", match = "prefix", allow = ["call", "register", "publish", "subscribe"]}]
[[realm_templates.roles]]
name = "user"
rules = [{uri = "", match = "prefix", allow = ["call", "subscribe"]}]

[tenants]
admin_roles = ["admin"]

[revocation]
admin_realm = "management"
"""


def token(lifetime: float = 3600, **claims) -> str:
    now = int(time.time())
    body = {"sub": claims.pop("sub", "tester"), "iat": now, "exp": now + int(lifetime), **claims}
    return pyjwt.encode(body, JWT_SECRET, algorithm="HS256")


# The secrets ROUTER_TOML names.
ROUTER_ENV = {"IOT_TEST_JWT_SECRET": JWT_SECRET, "IOT_TEST_AGENT_TICKET": AGENT_TICKET}


def start_router(tmp_path: Path) -> RouterProcess:
    router = RouterProcess(tmp_path, ROUTER_TOML, env=ROUTER_ENV)
    router.start()
    return router


class Agent(Child):
    def __init__(self, tmp_path: Path, router: RouterProcess, broker: Mosquitto | None, *extra, env=None) -> None:
        self.state = tmp_path / "agent-state"
        self.dir = tmp_path
        self.router = router
        self.broker = broker
        self.extra = [str(e) for e in extra]
        env = {"IOT_AGENT_TICKET": AGENT_TICKET, "IOT_AGENT_API_JWT_SECRET": JWT_SECRET,
               "IOT_AGENT_MQTT_PASSWORD": ADMIN_PASSWORD, **(env or {})}
        super().__init__("iot-agent", [], env=env)
        self.port = None
        self.tls_port = None

    def start(self) -> None:
        mqtt = (["--mqtt-host", "127.0.0.1", "--mqtt-port", self.broker.port, "--mqtt-username", "admin"]
                if self.broker is not None else ["--mqtt-host", ""])
        self.argv = twistd("iot-agent", "--router", self.router.ws_url, "--realm", "management", "--auth", "ticket",
                     "--authid", "iot-agent", "--state-dir", self.state, "--listen",
                     f"tcp:{self.port or 0}:interface=127.0.0.1", *map(str, mqtt), *self.extra)
        self.argv = [str(a) for a in self.argv]
        super().start()
        if self not in STARTED:
            STARTED.append(self)  # its tracebacks fail the test, as the router's do
        self.port = int(self.wait_for(AGENT_LINE).group(1))

    def new_faults(self) -> list[str]:
        """Faults, less two kinds of known noise of connectors.common's Autobahn
        Component: per-attempt tracebacks it logs at debug level (e.g. for a
        tenant realm the router deleted), and a TransportLost that Autobahn's
        Component leaves unhandled in session_done while the agent shuts down
        (after SIGTERM)."""
        lines = list(self.all_output)
        stopping = next((i for i, line in enumerate(lines) if "Received SIGTERM" in line), len(lines))
        shutdown_noise = "\n".join(lines[stopping:])
        faults = [f for f in super().new_faults() if "#debug]" not in f.splitlines()[0]]
        return [f for f in faults if not ("TransportLost" in f and f.splitlines()[0] in shutdown_noise)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/status", timeout=10) as r:
            return json.load(r)


def make_pki(root: Path, client_cns) -> SimpleNamespace:
    """A CA, a server certificate for localhost and a client certificate per CN (``clients[cn] = (crt, key)``)."""
    root.mkdir(parents=True, exist_ok=True)
    ca = pki.make_ca("iot test CA", 30)
    pki.write(root / "ca", "ca", ca)
    server = pki.make_leaf(ca, "localhost", [x509.DNSName("localhost")], ExtendedKeyUsageOID.SERVER_AUTH, 30)
    server_key, server_crt = pki.write(root / "server", "server", server)
    out = SimpleNamespace(ca_crt=root / "ca" / "ca.crt", server_key=server_key, server_crt=server_crt, clients={})
    for cn in client_cns:
        key, crt = pki.write(root / cn.replace(":", "_"), "client",
                             pki.make_leaf(ca, cn, [], ExtendedKeyUsageOID.CLIENT_AUTH, 30))
        out.clients[cn] = (crt, key)
    return out


def wait_served(agent, tenants, seconds=20.0, mqtt=True) -> None:
    """Until the agent serves ``tenants`` (and has provisioned the broker, with ``mqtt``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = agent.status()
        served = {t for t, s in status["router"]["tenants"].items() if s == "ready"}
        if tenants <= served and (not mqtt or status["mqtt"]["provisioned"]):
            return
        time.sleep(0.05)  # the agent reports through /status only
    raise AssertionError(f"tenants {tenants} not served: {agent.status()}")


ADMIN_TOKEN_CLAIMS = {"role": "admin", "sub": "ops"}


@contextlib.contextmanager
def agent_environment(tmp: Path, tenants, client_cns, *agent_args):
    """Mosquitto, the router with ``tenants`` made, and the agent with a device TLS
    listener (client certificates for ``client_cns``), all stopped at the end."""
    from .clients import http_sync

    broker = Mosquitto(tmp / "mosquitto")
    broker.start()
    router = agent = None
    try:
        router = start_router(tmp)
        for name in tenants:
            status, body = http_sync("POST", f"{router.http_url}/realms", {"name": name},
                                     bearer=token(**ADMIN_TOKEN_CLAIMS))
            assert status == 200, body
        certs = make_pki(tmp / "pki", client_cns)
        agent = Agent(tmp, router, broker, *agent_args, "--device-tls-listen", "tcp:0:interface=127.0.0.1",
                      "--device-tls-cert", certs.server_crt, "--device-tls-key", certs.server_key,
                      "--device-tls-ca", certs.ca_crt)
        agent.start()
        agent.tls_port = int(agent.wait_for(TLS_LINE).group(1))
        wait_served(agent, set(tenants))
        yield SimpleNamespace(broker=broker, router=router, agent=agent, certs=certs, tmp=tmp)
    finally:
        for part in (agent, router):
            if part is not None:
                part.stop()
        broker.stop()
