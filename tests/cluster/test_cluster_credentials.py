"""Authenticating to NATS: user/password, token, nkey seed, creds file (a user
JWT of an operator-mode server) and TLS, each against our own nats-server
configured for it; a wrong credential is refused without the secret showing."""

import base64
import hashlib
import json
import time

import nkeys
import pytest_twisted

from relayrouter.cli import main as cli_main

from ..connectors.processes import RouterProcess
from ..support import connect_ws
from .harness import NatsServer, Node, sleep, stop_all

BEATS = "heartbeat_interval = 0.25\nheartbeat_ttl = 1.0\n"



def private(path, text: str):
    path.write_text(text)
    path.chmod(0o600)
    return path


def new_keys(role: int):
    """(seed, public key) of a fresh nkey, ``role`` one of nkeys.PREFIX_BYTE_USER/ACCOUNT/OPERATOR."""
    import os

    seed = nkeys.encode_seed(os.urandom(32), role).decode()
    return seed, nkeys.from_seed(bytearray(seed.encode())).public_key.decode()


def jwt(issuer_seed: str, subject: str, claims: dict, name: str) -> str:
    """A NATS JWT (v2): ed25519-nkey signed by the issuer."""
    issuer = nkeys.from_seed(bytearray(issuer_seed.encode()))

    def part(data) -> str:
        return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")

    body = {"iat": int(time.time()), "iss": issuer.public_key.decode(), "name": name, "sub": subject,
            "nats": {**claims, "version": 2}}
    body["jti"] = base64.b32encode(hashlib.sha256(json.dumps(body).encode()).digest()).decode().rstrip("=")
    signing_input = part({"typ": "JWT", "alg": "ed25519-nkey"}) + "." + part(body)
    signature = base64.urlsafe_b64encode(issuer.sign(signing_input.encode())).decode().rstrip("=")
    return signing_input + "." + signature


UNLIMITED = {"subs": -1, "data": -1, "payload": -1}


def operator_mode(tmp_path):
    """nats-server configuration of an operator with one account, and a creds file of a user in it."""
    op_seed, op_pub = new_keys(nkeys.PREFIX_BYTE_OPERATOR)
    acc_seed, acc_pub = new_keys(nkeys.PREFIX_BYTE_ACCOUNT)
    user_seed, user_pub = new_keys(nkeys.PREFIX_BYTE_USER)
    operator = jwt(op_seed, op_pub, {"type": "operator"}, "test-operator")
    account = jwt(op_seed, acc_pub, {"type": "account", "limits": {
        **UNLIMITED, "imports": -1, "exports": -1, "wildcards": True, "conn": -1, "leaf": -1}}, "routers")
    user = jwt(acc_seed, user_pub, {"type": "user", "pub": {}, "sub": {}, **UNLIMITED}, "router")
    (tmp_path / "operator.jwt").write_text(operator)
    config = (f'operator: "{tmp_path / "operator.jwt"}"\nresolver: MEMORY\n'
              f'resolver_preload: {{ {acc_pub}: "{account}" }}\n')
    creds = private(tmp_path / "router.creds",
                    f"-----BEGIN NATS USER JWT-----\n{user}\n------END NATS USER JWT------\n\n"
                    "************************* IMPORTANT *************************\n"
                    "NKEY Seed printed below can be used to sign and prove identity.\n\n"
                    f"-----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------\n")
    return config, creds


def two_nodes(tmp_path, nats, extra: str, env=None):
    nodes = {}
    for name in ("a", "b"):
        nodes[name] = Node(tmp_path, name, nats.url, extra=BEATS + extra, env=env)
        nodes[name].start()
    return nodes


@pytest_twisted.inlineCallbacks
def crosses(nodes):
    """A session on b sees a's session in wamp.session.list: both authenticated to NATS."""
    sa = yield connect_ws(nodes["a"])
    sb = yield connect_ws(nodes["b"])
    for _ in range(200):
        listed = yield sb.call("wamp.session.list")
        if len(listed) == 2:
            break
        yield sleep(0.05)
    assert sorted(listed) == sorted([sa.details.session, sb.details.session])
    yield sa.leave()  # until closed: a node stopped later need not wait its shutdown timeout for them
    yield sb.leave()


def refused(tmp_path, nats, extra: str, secret: str, env=None) -> None:
    """A node with a wrong credential says NATS refused it, and never shows the secret."""
    node = Node(tmp_path, "wrong", nats.url, extra=extra, env=env)
    RouterProcess.start(node)  # up, but not connected to NATS
    try:
        node.wait_output(r"cluster: NATS refused node wrong's credentials", 30)
        assert secret not in node.output()
    finally:
        node.stop()


def _cluster(tmp_path, config: str, extra: str, env=None, jetstream=True, scheme="nats"):
    nats = NatsServer(tmp_path, config, jetstream=jetstream, scheme=scheme)
    nats.start()
    nodes = {}
    try:
        nodes = two_nodes(tmp_path, nats, extra, env)
    except BaseException:
        nats.stop()
        raise
    return nats, nodes



@pytest_twisted.inlineCallbacks
def test_user_and_password(tmp_path):
    nats, nodes = _cluster(tmp_path, 'authorization { user: "router", password: "pw-4af9e1" }\n',
                           'user = "router"\npassword_env = "NATS_TEST_PASSWORD"\n',
                           env={"NATS_TEST_PASSWORD": "pw-4af9e1"})
    try:
        yield crosses(nodes)
        assert not any("pw-4af9e1" in node.output() for node in nodes.values())
        refused(tmp_path, nats, 'user = "router"\npassword_env = "NATS_TEST_PASSWORD"\n', "pw-wrong-77",
                env={"NATS_TEST_PASSWORD": "pw-wrong-77"})
    finally:
        stop_all(nats, nodes)


@pytest_twisted.inlineCallbacks
def test_token_from_a_file(tmp_path):
    token = private(tmp_path / "token", "tok-3c1d22aa\n")
    nats, nodes = _cluster(tmp_path, 'authorization { token: "tok-3c1d22aa" }\n', f'token_file = "{token}"\n')
    try:
        yield crosses(nodes)
        wrong = private(tmp_path / "wrong-token", "tok-wrong-5\n")
        refused(tmp_path, nats, f'token_file = "{wrong}"\n', "tok-wrong-5")
    finally:
        stop_all(nats, nodes)


@pytest_twisted.inlineCallbacks
def test_nkey_seed_from_env_and_from_a_file(tmp_path):
    seed, public = new_keys(nkeys.PREFIX_BYTE_USER)
    seed_file = private(tmp_path / "router.nk", seed + "\n")
    nats = NatsServer(tmp_path, f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}\n')
    nats.start()
    nodes = {}
    try:
        nodes["a"] = Node(tmp_path, "a", nats.url, extra=BEATS + 'nkey_seed_env = "NATS_TEST_SEED"\n',
                          env={"NATS_TEST_SEED": seed})
        nodes["b"] = Node(tmp_path, "b", nats.url, extra=BEATS + f'nkey_seed_file = "{seed_file}"\n')
        for node in nodes.values():
            node.start()
        yield crosses(nodes)
        assert not any(seed in node.output() for node in nodes.values())
        other, _ = new_keys(nkeys.PREFIX_BYTE_USER)  # a valid seed the server does not know
        refused(tmp_path, nats, 'nkey_seed_env = "NATS_TEST_SEED"\n', other, env={"NATS_TEST_SEED": other})
    finally:
        stop_all(nats, nodes)


@pytest_twisted.inlineCallbacks
def test_creds_file_of_an_operator_mode_server(tmp_path):
    config, creds = operator_mode(tmp_path)
    # No JetStream in this account: testaments stay with their node (said once), the rest works.
    nats, nodes = _cluster(tmp_path, config, f'credentials_file = "{creds}"\n', jetstream=False)
    try:
        yield crosses(nodes)
        seed = [line for line in creds.read_text().splitlines() if line.startswith("SU")][0]
        assert not any(seed in node.output() for node in nodes.values())
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        _, other_creds = operator_mode(elsewhere)  # a user of another operator
        other_seed = [line for line in other_creds.read_text().splitlines() if line.startswith("SU")][0]
        refused(tmp_path, nats, f'credentials_file = "{other_creds}"\n', other_seed)
    finally:
        stop_all(nats, nodes)


@pytest_twisted.inlineCallbacks
def test_tls_to_nats_with_a_certificate_of_our_own_pki(tmp_path):
    pki = tmp_path / "pki"
    assert cli_main(["pki", "ca", "--out", str(pki / "ca")]) in (0, None)
    assert cli_main(["pki", "server", "--ca", str(pki / "ca"), "--name", "localhost", "--san", "DNS:localhost",
                     "--san", "IP:127.0.0.1", "--out", str(pki / "server")]) in (0, None)
    config = (f'tls {{ cert_file: "{pki / "server" / "server.crt"}", key_file: "{pki / "server" / "server.key"}" }}\n')
    nats, nodes = _cluster(tmp_path, config, f'[cluster.tls]\nca = "{pki / "ca" / "ca.crt"}"\n', scheme="tls")
    try:
        yield crosses(nodes)
        connections = nats.connz()
        assert {c["name"] for c in connections} >= {"a", "b"}
        assert all(c.get("tls_version") for c in connections if c["name"] in ("a", "b"))
    finally:
        stop_all(nats, nodes)
