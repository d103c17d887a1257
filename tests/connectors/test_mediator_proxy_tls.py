"""The mediator-proxy over wss:// with a TLS client certificate as its credential,
process to process, with the router's CA given by --ca-cert."""

import ssl
import urllib.request

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from relayrouter.cli import pki

from ..security_support import Pki
from .processes import AgentProcess, ProxyProcess, RouterProcess

CONFIG = """
state_dir = "{state}"

[[listeners]]
type = "websocket"
endpoint = "tcp:{port}:interface=127.0.0.1"
[listeners.tls]
certificate = "%(crt)s"
key = "%(key)s"
ca = "%(ca)s"
client_certificates = "optional"   # the proxy presents one; outside senders need none

[[realms]]
name = "lab"
[realms.auth.tls]
[[realms.auth.tls.rules]]
subject_cn = "(?P<realm>[^:]+):(?P<authid>.+)"
role = "agent"

[[realms.mailboxes]]
uri = "mailbox.{authid}"
http = "token"
token_secret_env = "MAILBOX_TOKEN_SECRET"
"""


@pytest.fixture
def certs(tmp_path):
    certs = Pki(tmp_path / "pki")
    issued = pki.make_leaf(certs.ca, "lab:agentb", [], ExtendedKeyUsageOID.CLIENT_AUTH, 30)
    certs.proxy_key, certs.proxy_crt = pki.write(tmp_path / "pki" / "proxy", "client", issued)
    return certs


def test_proxy_joins_by_client_certificate_over_wss_and_delivers(tmp_path, certs):
    toml = CONFIG % {"crt": certs.server_crt, "key": certs.server_key, "ca": certs.ca_crt}
    router = RouterProcess(tmp_path, toml, env={"MAILBOX_TOKEN_SECRET": "mailbox-token-secret-0123456789"})
    agent = AgentProcess()
    proxy = ProxyProcess(tmp_path, [])
    try:
        router.start()
        agent.start()
        proxy.start(args=["--router", f"wss://localhost:{router.port}/ws", "--realm", "lab",
                          "--ca-cert", certs.ca_crt, "--tls-cert", certs.proxy_crt, "--tls-key", certs.proxy_key,
                          "--agent-endpoint", agent.url])
        status = proxy.wait_status(lambda s: s["status"] == "ready", what="ready")
        assert (status["router"]["authmethod"], status["router"]["authid"]) == ("tls", "agentb")
        endpoint = proxy.get("/endpoint")[1]["endpoint"]
        assert endpoint.startswith(f"https://localhost:{router.port}/mailbox/mailbox.agentb/")
        context = ssl.create_default_context(cafile=str(certs.ca_crt))
        request = urllib.request.Request(endpoint, data=b"over tls", method="POST",
                                         headers={"Content-Type": "application/didcomm-envelope-enc"})
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            assert response.status == 202
        seen = agent.wait_messages(lambda ms: len(ms) >= 1)
        assert seen[0]["body"] == "over tls" and seen[0]["content_type"] == "application/didcomm-envelope-enc"
    finally:
        proxy.stop()
        agent.stop()
        router.stop()
