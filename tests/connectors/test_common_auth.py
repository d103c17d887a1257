"""Every way connectors.common authenticates, against the real router on loopback:
ticket, JWT, a cryptosign key file, a TLS client certificate; ws, wss, rs, rss."""

import os

import pytest
import pytest_twisted
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.python import usage

from connectors.common import ConfigError, ConnectorOptions, RouterConnection
from relayrouter.cli import pki

from ..security_support import HS_SECRET, ISSUER, Pki, start, stop, token
from ..support import within

TICKET = "svc-ticket-0123456789abcdef"


class Options(ConnectorOptions, usage.Options):
    env_prefix = "TEST_CONNECTOR"


@pytest.fixture
def files(tmp_path):
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "device.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    certs = Pki(tmp_path / "pki")
    client_key, client_crt = pki.write(tmp_path / "pki" / "device", "client", certs.clients["device"])
    (tmp_path / "ticket").write_text(TICKET + "\n")
    (tmp_path / "jwt").write_text(token(sub="device-9") + "\n")
    return {"key": key_file, "pub": pub, "certs": certs, "client_key": client_key, "client_crt": client_crt,
            "ticket": tmp_path / "ticket", "jwt": tmp_path / "jwt"}


@pytest.fixture
def router(files, tmp_path, monkeypatch):
    monkeypatch.setenv("SVC_TICKET", TICKET)
    monkeypatch.setenv("JWT_SECRET", HS_SECRET)
    tls = files["certs"].listener_tls("optional")
    auth = {
        "ticket": {"principals": [{"authid": "svc", "role": "service", "secret_env": "SVC_TICKET"}]},
        "cryptosign": {"principals": [{"authid": "device-1", "role": "device", "pubkeys": [files["pub"]]}]},
        "jwt": {"algorithms": ["HS256"], "audience": "relayrouter", "issuer": ISSUER, "authrole": "device",
                "keys": [{"secret_env": "JWT_SECRET"}]},
        "tls": {"rules": [{"subject_cn": "(?P<realm>[^:]+):(?P<authid>.+)", "role": "device"}]},
    }
    listeners = [{"type": t, "endpoint": "tcp:0:interface=127.0.0.1", **extra}
                 for t in ("websocket", "rawsocket") for extra in ({}, {"tls": tls})]
    running = pytest_twisted.blockon(start({"listeners": listeners, "realms": [{"name": "tenant", "auth": auth}]},
                                           tmp_path / "state"))
    ports = {}
    for listening, port in zip(running.service.listeners, pytest_twisted.blockon(running.service.when_listening())):
        scheme = {"websocket": "ws", "rawsocket": "rs"}[listening.listener.kind]
        scheme += "s" if listening.listener.tls else ""
        ports[scheme] = port.getHost().port
    running.urls = {s: f"{s}://localhost:{p}" + ("/ws" if s.startswith("ws") else "") for s, p in ports.items()}
    yield running
    pytest_twisted.blockon(stop(running))


def options(*argv, env=None):
    opts = Options()
    opts.parseOptions([str(a) for a in argv])
    opts.resolve(env=env or {})
    return opts.router_settings()


CASES = {
    "ticket-env": (lambda f: ["--authid", "svc"], {"TEST_CONNECTOR_TICKET": TICKET}, "svc", "ticket"),
    "ticket-file": (lambda f: ["--authid", "svc", "--ticket-file", f["ticket"]], {}, "svc", "ticket"),
    "jwt-file": (lambda f: ["--jwt-file", f["jwt"]], {}, "device-9", "jwt"),
    "cryptosign": (lambda f: ["--authid", "device-1", "--cryptosign-key", f["key"]], {}, "device-1", "cryptosign"),
}


@pytest.mark.parametrize("scheme", ["ws", "rs", "wss", "rss"])
@pytest.mark.parametrize("case", sorted(CASES))
@pytest_twisted.inlineCallbacks
def test_joins_with_each_credential_over_each_transport(router, files, case, scheme):
    argv, env, authid, method = CASES[case]
    extra = ["--ca-cert", files["certs"].ca_crt] if scheme.endswith("s") else []
    settings = options("--router", router.urls[scheme], "--realm", "tenant", *argv(files), *extra, env=env)
    assert settings.credentials.method == method
    conn = RouterConnection(settings)
    conn.startService()
    try:
        session = yield within(conn.when_ready(), 20)
        details = session.session_details
        assert (details.realm, details.authid, details.authmethod) == ("tenant", authid, method)
        assert conn.describe()["authid"] == authid
    finally:
        yield conn.stopService()


@pytest.mark.parametrize("scheme", ["wss", "rss"])
@pytest_twisted.inlineCallbacks
def test_tls_client_certificate(router, files, scheme):
    settings = options("--router", router.urls[scheme], "--realm", "tenant", "--ca-cert", files["certs"].ca_crt,
                       "--tls-cert", files["client_crt"], "--tls-key", files["client_key"])
    assert settings.credentials.method == "tls"
    conn = RouterConnection(settings)
    conn.startService()
    try:
        session = yield within(conn.when_ready(), 20)
        assert (session.session_details.authid, session.session_details.authmethod) == ("device-7", "tls")
    finally:
        yield conn.stopService()


@pytest_twisted.inlineCallbacks
def test_untrusted_router_certificate_is_a_connect_error(router, files, logged_errors):
    # Autobahn logs the failed handshake itself, at error level.
    logged_errors.expect(r"SSL error: certificate verify failed")
    conn = RouterConnection(options("--router", router.urls["wss"], "--realm", "tenant", "--authid", "svc",
                                    "--retry-initial", "5", "--retry-max", "5",
                                    env={"TEST_CONNECTOR_TICKET": TICKET}))
    conn.startService()
    try:
        from ..support import eventually

        yield eventually(lambda: conn.last_error is not None, 20)
        assert conn.last_error["kind"] == "connect" and conn.status == "connecting"
    finally:
        yield conn.stopService()


def test_key_files_open_to_others_are_refused(files):
    os.chmod(files["key"], 0o644)
    with pytest.raises(ConfigError, match=r"--cryptosign-key \(TEST_CONNECTOR_CRYPTOSIGN_KEY\): .* accessible by group or others \(mode 0644\)"):
        options("--authid", "device-1", "--cryptosign-key", files["key"])
    os.chmod(files["client_key"], 0o640)
    with pytest.raises(ConfigError, match=r"--tls-key \(TEST_CONNECTOR_TLS_KEY\): .*chmod 600"):
        options("--tls-cert", files["client_crt"], "--tls-key", files["client_key"])


def test_bad_options_name_the_option_and_its_variable(files, tmp_path):
    with pytest.raises(ConfigError, match=r"--router \(TEST_CONNECTOR_ROUTER\): 'http://x' must start with ws://"):
        options(env={"TEST_CONNECTOR_ROUTER": "http://x"})
    with pytest.raises(ConfigError, match=r"--retry-max \(TEST_CONNECTOR_RETRY_MAX\): 'soon' is not a valid float"):
        options(env={"TEST_CONNECTOR_RETRY_MAX": "soon"})
    with pytest.raises(ConfigError, match="--auth ticket: --authid is required"):
        options(env={"TEST_CONNECTOR_TICKET": TICKET})
    with pytest.raises(ConfigError, match="credentials for jwt and ticket are given"):
        options("--authid", "svc", "--jwt-file", files["jwt"], env={"TEST_CONNECTOR_TICKET": TICKET})
    (tmp_path / "garbage.key").write_text("not a key")
    (tmp_path / "garbage.key").chmod(0o600)
    with pytest.raises(ConfigError, match="holds no Ed25519 private key"):
        options("--cryptosign-key", tmp_path / "garbage.key")


def test_command_line_beats_environment_beats_remembered_beats_default():
    opts = Options()
    opts.parseOptions(["--realm", "cli"])
    opts.resolve(persisted={"realm": "old", "router": "ws://old:1/ws", "serializer": "json"},
                 env={"TEST_CONNECTOR_ROUTER": "ws://env:2/ws", "TEST_CONNECTOR_REALM": "env"})
    assert (opts["realm"], opts["router"], opts["serializer"], opts["retry-max"]) == ("cli", "ws://env:2/ws",
                                                                                       "json", 30.0)
    assert opts.sources["realm"] == "command line" and opts.sources["serializer"] == "state"
    assert "retry-max" not in opts.remembered() and opts.remembered()["realm"] == "cli"


def test_help_names_every_environment_variable():
    text = " ".join(str(Options()).split())
    assert "File holding the ticket (or put the ticket itself in TEST_CONNECTOR_TICKET)" in text
    for name in ("ROUTER", "REALM", "AUTHID", "AUTH", "TICKET_FILE", "JWT_FILE", "CRYPTOSIGN_KEY", "TLS_CERT",
                 "TLS_KEY", "CA_CERT", "SERIALIZER", "RETRY_MAX", "AUTH_RETRY", "STATE_DIR"):
        assert f"[env TEST_CONNECTOR_{name}]" in text


@pytest_twisted.inlineCallbacks
def test_a_renewed_jwt_file_is_used_when_the_old_token_expires(router, files):
    files["jwt"].write_text(token(sub="device-9", lifetime=2) + "\n")
    conn = RouterConnection(options("--router", router.urls["ws"], "--realm", "tenant", "--jwt-file", files["jwt"],
                                    "--retry-initial", "0.05", "--retry-max", "0.2"))
    conn.startService()
    try:
        first = yield within(conn.when_ready(), 20)
        files["jwt"].write_text(token(sub="device-9", lifetime=600) + "\n")  # renewed by someone else
        from ..support import eventually

        yield eventually(lambda: conn.session is not None and conn.session is not first
                         and conn.status == "ready", 20)
        assert conn.joins == 2 and conn.session.session_details.authid == "device-9"
    finally:
        yield conn.stopService()
