"""Compatibility with the Micronets websocket proxy (cablelabs/micronets-ws-proxy),
case by case from its source: the proxy ``bin/websocket-proxy.py``, its test client
``bin/websocket-test-client.py``, its certificate scripts ``bin/gen-*-cert`` and the
certificates in ``lib/`` (read for their shape only: nothing of the proxy is used here).

The router runs as ``twistd relayrouter`` over mTLS with certificates made here in
the seed's shape (a root and leaves that name only an organisation, ``O=``, no CN,
EC P-256), paired by the identity rules the README's worked example gives. Peers
are plain WebSocket clients speaking the proxy's JSON frames, and one is a
subprocess written from the test client's documented protocol.
"""

import datetime
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytest_twisted
import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, endpoints, reactor, ssl, threads

from ..connectors.processes import ROOT, Child, RouterProcess
from ..support import connect_ws, within

SUB, BOX = "8675309", "00224dd149bb"
PREFIX = "/micronets/v1/ws-proxy/"
MEETUP = f"{PREFIX}sub/{SUB}/{BOX}"
CLIENT = Path(__file__).with_name("micronets_test_client.py")

# The seed's certificates name an organisation only (lib/*.cert.pem).
ORGS = {"root": "Micronets-WS-Root", "proxy": "Micronets Websocket Proxy Cert",
        "manager": "Micronets Manager Cert", "test-client": "Micronets Websocket Test Client Cert",
        "dpp-client": "Micronets DPP Websocket Client Cert"}


# ----------------------------------------------------------------- certificates


def _name(org: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])


def _certificate(subject, issuer, key, signer, ca: bool):
    now = datetime.datetime.now(datetime.timezone.utc)
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=not ca,
                          data_encipherment=False, key_agreement=not ca, key_cert_sign=ca, crl_sign=ca,
                          encipher_only=False, decipher_only=False)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .sign(signer, hashes.SHA256()))


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def seed_shaped_pki(root: Path) -> dict:
    """The seed's layout (bin/gen-root-cert, bin/gen-leaf-cert): ``<name>.cert.pem``,
    ``<name>.key.pem`` and ``<name>.pkeycert.pem`` (certificate then key)."""
    root.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(_name(ORGS["root"]), _name(ORGS["root"]), ca_key, ca_key, ca=True)
    (root / "root.cert.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs = {"root": ca}
    for name in ("proxy", "manager", "test-client", "dpp-client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(_name(ORGS[name]), ca.subject, key, ca_key, ca=False)
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        (root / f"{name}.cert.pem").write_bytes(cert_pem)
        (root / f"{name}.key.pem").write_bytes(_pem(key))
        (root / f"{name}.pkeycert.pem").write_bytes(cert_pem + _pem(key))
        certs[name] = cert
    return certs


def fingerprint(cert) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


# The README's worked example ("Existing Micronets certificates"), with the DPP
# client's certificate pinned by fingerprint to another pair.
CONFIG = """state_dir = "{state}"

[[listeners]]
type = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"
[listeners.tls]
certificate = "PKI/proxy.cert.pem"
key = "PKI/proxy.key.pem"
ca = "PKI/root.cert.pem"
client_certificates = "required"

[[realms]]
name = "micronets"
[realms.auth.tls]
rules = [
  { subject = { o = "Micronets Manager Cert" }, authid = "manager:8675309:00224dd149bb", role = "manager" },
  { subject = { o = "Micronets Websocket Test Client Cert" }, authid = "gateway:8675309:00224dd149bb", role = "gateway" },
  { sha256 = "DPP", authid = "gateway:8675309:ffffffffffff", role = "gateway" },
]
[realms.pairing]
ping_interval = 1
ping_timeout = 1
"""


# The seed's own files (lib/ of cablelabs/micronets-ws-proxy), when a copy is at
# hand: MICRONETS_SEED_LIB=/path/to/lib runs this suite with them as they are.
SEED_FILES = {"root": "micronets-ws-root", "proxy": "micronets-ws-proxy", "manager": "micronets-manager",
              "test-client": "micronets-ws-test-client", "dpp-client": "micronets-ws-dpp-client"}


def seed_pki(lib: Path, root: Path) -> dict:
    """The seed's certificates and keys under this suite's names (a key+certificate
    PEM made where the seed has none); read, never changed."""
    root.mkdir(parents=True, exist_ok=True)
    certs = {}
    for name, seed in SEED_FILES.items():
        cert_pem = (lib / f"{seed}.cert.pem").read_bytes()
        certs[name] = x509.load_pem_x509_certificate(cert_pem)
        (root / f"{name}.cert.pem").write_bytes(cert_pem)
        if name != "root":
            key_pem = (lib / f"{seed}.key.pem").read_bytes()
            (root / f"{name}.key.pem").write_bytes(key_pem)
            (root / f"{name}.key.pem").chmod(0o600)
            (root / f"{name}.pkeycert.pem").write_bytes(cert_pem + key_pem)
    return certs


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("micronets")
    lib = os.environ.get("MICRONETS_SEED_LIB")
    certs = seed_pki(Path(lib), base / "pki") if lib else seed_shaped_pki(base / "pki")
    router = RouterProcess(base, CONFIG.replace("PKI", str(base / "pki"))
                           .replace("DPP", fingerprint(certs["dpp-client"])))
    router.start()
    yield {"router": router, "pki": base / "pki", "certs": certs}
    router.stop()


# ------------------------------------------------------------------ peers


class MicronetsPeer(WebSocketClientProtocol):
    """Sends what the test says and records every frame as (payload, is_binary)."""

    answer_pings = True

    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onPing(self, payload) -> None:
        if self.factory.answer_pings:
            super().onPing(payload)

    def onMessage(self, payload, is_binary) -> None:
        waiting = self.factory.waiting
        (waiting.pop(0).callback if waiting else self.factory.inbox.append)((payload, is_binary))

    def onClose(self, was_clean, code, reason) -> None:
        if not self.factory.closed.called:
            self.factory.closed.callback((code, reason))
        for d in self.factory.waiting:
            d.errback(ConnectionError(code, reason))
        self.factory.waiting = []


class Peer:
    def __init__(self, factory) -> None:
        self.factory = factory

    def send(self, message) -> None:
        self.send_raw(json.dumps(message).encode())

    def send_raw(self, payload: bytes, binary: bool = False) -> None:
        self.factory.opened.result.sendMessage(payload, isBinary=binary)

    def next_raw(self) -> defer.Deferred:
        if self.factory.inbox:
            return defer.succeed(self.factory.inbox.pop(0))
        d = defer.Deferred()
        self.factory.waiting.append(d)
        return within(d)

    @defer.inlineCallbacks
    def next(self):
        payload, _ = yield self.next_raw()
        return json.loads(payload)

    def closed(self) -> defer.Deferred:
        return within(self.factory.closed)

    def drop(self) -> None:
        self.factory.opened.result.dropConnection(abort=True)


def client_tls(pki_dir: Path, who: str):
    pem = (pki_dir / f"{who}.pkeycert.pem").read_bytes()
    private = ssl.PrivateCertificate.loadPEM(pem)
    trust = ssl.Certificate.loadPEM((pki_dir / "root.cert.pem").read_bytes())
    # As the seed's clients do: the chain is checked, the host name is not.
    return ssl.CertificateOptions(privateKey=private.privateKey.original, certificate=private.original,
                                  trustRoot=trust)


@defer.inlineCallbacks
def connect(world, who: str, path: str = MEETUP, answer_pings: bool = True):
    """A Micronets peer, open (Peer) or refused at the upgrade (its close code and reason)."""
    port = world["router"].port
    factory = WebSocketClientFactory(f"wss://localhost:{port}{path}")
    factory.protocol = MicronetsPeer
    factory.opened, factory.closed = defer.Deferred(), defer.Deferred()
    factory.inbox, factory.waiting, factory.answer_pings = [], [], answer_pings
    endpoint = endpoints.wrapClientTLS(client_tls(world["pki"], who),
                                       endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port))
    yield endpoint.connect(factory)
    first = yield within(defer.DeferredList([factory.opened, factory.closed], fireOnOneCallback=True))
    return Peer(factory) if first[1] == 0 else factory.closed.result


def hello(peer_class, peer_id, message_id=0):
    return {"message": {"messageId": message_id, "messageType": "CONN:HELLO", "requiresResponse": False,
                        "peerClass": peer_class, "peerId": peer_id}}


@defer.inlineCallbacks
def paired(world):
    """A manager and a gateway (the test client's certificate), HELLOs exchanged."""
    manager = yield connect(world, "manager")
    manager.send(hello("micronets-manager", "mm-1"))
    gateway = yield connect(world, "test-client")
    gateway.send(hello("micronets-gw", "gw-1"))
    assert (yield manager.next()) == hello("micronets-gw", "gw-1")
    assert (yield gateway.next()) == hello("micronets-manager", "mm-1")
    return manager, gateway


@defer.inlineCallbacks
def gone(*peers):
    for peer in peers:
        peer.drop()
        yield peer.closed()


# ------------------------------------------------------------------ cases


@pytest_twisted.inlineCallbacks
def test_seed_shaped_certificates_pair_and_the_test_client_drives_the_router(world):
    """bin/websocket-test-client.py: HELLO (messageId 0, requiresResponse false), wait for the
    peer's HELLO, then each local HTTP request is a REST:REQUEST and the REST:RESPONSE naming
    it (inResponseTo) the HTTP answer; its certificate comes from one key+certificate PEM
    (lib/micronets-ws-test-client.pkeycert.pem), the server checked against the root only.
    lib/*.cert.pem: O= names only, which the README's identity rules pair as they are."""
    manager = yield connect(world, "manager")
    manager.send(hello("micronets-manager", "mm-1"))
    client = Child("micronets test client", [
        sys.executable, CLIENT, "--http-proxy-address", "127.0.0.1", "--http-proxy-port", "0",
        "--client-cert", world["pki"] / "test-client.pkeycert.pem", "--ca-cert", world["pki"] / "root.cert.pem",
        f"wss://127.0.0.1:{world['router'].port}{MEETUP}"], cwd=ROOT)
    client.start()
    try:
        assert (yield manager.next()) == hello("micronets-ws-test-client", "12345678")
        yield threads.deferToThread(client.wait_for, "HELLO handshake complete: peer micronets-manager mm-1")
        port = int((yield threads.deferToThread(client.wait_for, r"HTTP proxy on (\d+)")).group(1))
        answer = treq.put(f"http://127.0.0.1:{port}/micronets/v1/dhcp/subnets/s7?x=1",
                          data=b'{"gateway": "192.168.1.3"}',
                          headers={"Content-Type": "application/json", "X-Trace": "t1"})
        request = (yield manager.next())["message"]
        assert request["messageType"] == "REST:REQUEST" and request["method"] == "PUT"
        assert request["path"] == "/micronets/v1/dhcp/subnets/s7?x=1"
        assert request["messageBody"] == {"gateway": "192.168.1.3"} and request["dataFormat"] == "application/json"
        assert {"name": "X-Trace", "value": "t1"} in request["headers"]
        manager.send({"message": {"messageId": 7, "messageType": "REST:RESPONSE", "requiresResponse": False,
                                  "inResponseTo": request["messageId"], "statusCode": 201,
                                  "dataFormat": "application/json", "messageBody": {"subnetId": "s7"}}})
        response = yield answer
        assert response.code == 201 and (yield response.json()) == {"subnetId": "s7"}
    finally:
        yield gone(manager)
        yield threads.deferToThread(client.wait_for, "closed 1002 the peer websocket disconnected")
        client.stop()


@pytest_twisted.inlineCallbacks
def test_after_the_hellos_every_frame_is_relayed_verbatim_and_the_pair_carries_on(world):
    """bin/websocket-proxy.py relay_messages_to_peer: each peer's cached HELLO goes to the
    other, then whatever one peer sends is copied to the other, unread (text or binary)."""
    manager, gateway = yield paired(world)
    frames = [(b"not json at all", False), (b'{"message": 5}', False),
              (b'{"message": {"messageId": 1}}', False), (b"[1, 2, 3]", False),
              (bytes(range(256)), True), (b'{"message": {"messageId": 2, "messageType": "EVENT:x"}}', False)]
    for payload, binary in frames:
        manager.send_raw(payload, binary)
        assert (yield gateway.next_raw()) == (payload, binary)
        gateway.send_raw(payload, binary)
        assert (yield manager.next_raw()) == (payload, binary)
    yield gone(manager, gateway)


@pytest_twisted.inlineCallbacks
def test_what_the_first_peer_sends_while_waiting_is_dropped(world):
    """bin/websocket-proxy.py wait_for_peer: a message received while waiting for the peer
    is dropped (the seed then also closes that connection; we keep it: see the differences)."""
    manager = yield connect(world, "manager")
    manager.send(hello("micronets-manager", "mm-1"))
    manager.send({"message": {"messageId": 1, "messageType": "EVENT:early", "requiresResponse": False}})
    manager.send_raw(b"early garbage")
    gateway = yield connect(world, "test-client")
    gateway.send(hello("micronets-gw", "gw-1"))
    assert (yield gateway.next()) == hello("micronets-manager", "mm-1")
    manager.send({"message": {"messageId": 2, "messageType": "EVENT:late", "requiresResponse": False}})
    assert (yield gateway.next())["message"]["messageType"] == "EVENT:late"  # nothing early came first
    yield gone(manager, gateway)


@pytest.mark.parametrize("first, reason", [
    (b"not json", "the message is not valid JSON"),
    (b'{"message": {"messageId": 0, "messageType": "REST:REQUEST", "requiresResponse": false}}',
     "the first message must be CONN:HELLO, not REST:REQUEST"),
    (b'{"message": {"messageId": 0, "messageType": "CONN:HELLO", "requiresResponse": "no",'
     b' "peerClass": "c", "peerId": "i"}}', "CONN:HELLO field 'requiresResponse' must be a bool"),
])
@pytest_twisted.inlineCallbacks
def test_the_first_frame_must_be_a_well_formed_hello(world, first, reason):
    """bin/websocket-proxy.py recv_hello_message: JSON, a 'message' object, an int messageId,
    a bool requiresResponse and messageType CONN:HELLO, or the connection ends."""
    peer = yield connect(world, "manager")
    peer.send_raw(first)
    code, said = yield peer.closed()
    assert code == 1008 and said.startswith(reason)


@pytest_twisted.inlineCallbacks
def test_a_path_outside_the_prefix_is_refused(world):
    """bin/websocket-proxy.py ws_connected: a path that does not start with
    /micronets/v1/ws-proxy/ is closed."""
    refused = yield connect(world, "manager", path="/some/other/path/sub/1/2")
    assert isinstance(refused, tuple) and refused[0] != 1000


@pytest_twisted.inlineCallbacks
def test_a_third_connection_to_a_meetup_is_closed(world):
    """bin/websocket-proxy.py ws_connected: a meetup id holds two clients; a third is closed."""
    manager, gateway = yield paired(world)
    third = yield connect(world, "manager")
    third.send(hello("micronets-manager", "mm-2"))
    code, reason = yield third.closed()
    assert code == 1008 and "already has its manager" in reason
    gateway.send({"message": {"messageId": 3, "messageType": "EVENT:still", "requiresResponse": False}})
    assert (yield manager.next())["message"]["messageType"] == "EVENT:still"
    yield gone(manager, gateway)


@pytest_twisted.inlineCallbacks
def test_the_survivor_is_closed_when_its_peer_goes(world):
    """bin/websocket-proxy.py peer_disconnected: close 1002 'the peer websocket disconnected'."""
    manager, gateway = yield paired(world)
    gateway.drop()
    assert (yield manager.closed()) == (1002, "the peer websocket disconnected")


@pytest_twisted.inlineCallbacks
def test_an_unanswered_ping_closes_the_connection(world):
    """bin/websocket-proxy.py WSClient.ping_peer: a ping every interval; none answered within
    the timeout closes with 1002 'Ping timed out (<timeout> seconds)' (here 1 s and 1 s)."""
    silent = yield connect(world, "manager", answer_pings=False)
    silent.send(hello("micronets-manager", "mm-1"))
    assert (yield within(silent.factory.closed, 20)) == (1002, "Ping timed out (1 seconds)")


@pytest_twisted.inlineCallbacks
def test_a_certificate_meets_only_its_own_pair(world):
    """bin/websocket-proxy.py (end): any certificate of the root may join any meetup id.
    Here a certificate pinned to another pair (by fingerprint) is refused on this one."""
    refused = yield connect(world, "dpp-client")
    assert isinstance(refused, tuple)
    own = yield connect(world, "dpp-client", path=f"{PREFIX}sub/{SUB}/ffffffffffff")
    own.send(hello("micronets-dpp", "dpp-1"))
    own.drop()
    yield own.closed()


# ------------------------------------------- README.md §5: the messages, with a WAMP peer


def wamp_peer(world, who: str):
    """An Autobahn session of the pair, with one of the seed-shaped certificates."""
    port = world["router"].port
    address = SimpleNamespace(ws_url=f"ws://localhost:{port}/ws", ws_port=port)
    return connect_ws(address, realm="micronets", authmethods=["tls"], tls=client_tls(world["pki"], who))


@pytest_twisted.inlineCallbacks
def test_a_rest_request_as_the_readme_writes_it_reaches_a_wamp_peer(world):
    """README.md §5.3 (the example POST request) and §5.4 (REST:RESPONSE naming it with
    inResponseTo): a Micronets manager's request reaches a WAMP gateway's REST procedure."""
    gateway = yield wamp_peer(world, "test-client")
    seen = []

    def rest(request):
        seen.append(request)
        return {"status": 201, "reason": "Created", "headers": [["Location", "/micronets/v1/dhcp/subnets/s7"]],
                "content_type": "application/json", "body": {"subnetId": "mocksubnet007"}}

    yield gateway.register(rest, f"relayrouter.pair.{SUB}.{BOX}.rest.gateway")
    manager = yield connect(world, "manager")
    manager.send(hello("micronets-manager", "mm-1"))
    assert (yield manager.next())["message"]["peerClass"] == "gateway"
    body = {"subnetId": "mocksubnet007", "ipv4Network": {"network": "192.168.1.0", "mask": "255.255.255.0",
                                                         "gateway": "192.168.1.1"}, "nameservers": ["1.2.3.4"]}
    manager.send({"message": {"messageId": 1, "messageType": "REST:REQUEST", "requiresResponse": True,
                              "method": "POST", "path": "/micronets/v1/dhcp/subnets",
                              "headers": [{"name": "Host", "value": "localhost:5001"},
                                          {"name": "Accept", "value": "*/*"}],
                              "dataFormat": "application/json", "messageBody": body}})
    answer = (yield manager.next())["message"]
    assert answer["messageType"] == "REST:RESPONSE" and answer["inResponseTo"] == 1
    assert answer["requiresResponse"] is False and answer["statusCode"] == 201
    assert answer["dataFormat"] == "application/json" and answer["messageBody"] == {"subnetId": "mocksubnet007"}
    assert {"name": "Location", "value": "/micronets/v1/dhcp/subnets/s7"} in answer["headers"]
    [request] = seen
    assert (request["method"], request["path"], request["body"]) == ("POST", "/micronets/v1/dhcp/subnets", body)
    assert ["Accept", "*/*"] in request["headers"] and request["content_type"] == "application/json"
    yield gone(manager)
    yield gateway.leave()


@pytest_twisted.inlineCallbacks
def test_a_response_without_a_body_and_an_octet_stream_event_reach_a_wamp_peer(world):
    """README.md §5.4 (the example DELETE response: statusCode and no body) and §5.5 (EVENT:<name>
    with dataFormat and messageBody, base64 for application/octet-stream)."""
    gateway = yield connect(world, "test-client")
    gateway.send(hello("micronets-gw", "gw-1"))
    manager = yield wamp_peer(world, "manager")
    assert (yield gateway.next())["message"]["peerClass"] == "manager"
    events = defer.DeferredQueue()
    yield manager.subscribe(lambda body, **kw: events.put((body, kw)),
                            f"relayrouter.pair.{SUB}.{BOX}.event.DPP:DPPOnboardingProgressEvent")
    call = manager.call(f"relayrouter.pair.{SUB}.{BOX}.rest.gateway",
                        {"method": "DELETE", "path": "/micronets/v1/dhcp/subnets/mocksubnet007"})
    request = (yield gateway.next())["message"]
    assert (request["messageType"], request["method"]) == ("REST:REQUEST", "DELETE")
    gateway.send({"message": {"messageId": 3, "inResponseTo": request["messageId"],
                              "messageType": "REST:RESPONSE", "requiresResponse": False, "statusCode": 200}})
    response = yield call
    assert response["status"] == 200 and response["body"] in (None, b"", "")
    gateway.send({"message": {"messageId": 4, "messageType": "EVENT:DPP:DPPOnboardingProgressEvent",
                              "requiresResponse": False, "dataFormat": "application/octet-stream",
                              "messageBody": "AAEC/w=="}})
    body, kwargs = yield within(events.get())
    assert body == b"\x00\x01\x02\xff" and kwargs == {"content_type": "application/octet-stream"}
    yield manager.leave()
    yield gateway.closed()


# ------------------------------------------------- relayrouter's own, same router


def test_the_start_up_log_names_the_micronets_endpoint(world):
    port = world["router"].port
    assert f"relayrouter listening: Micronets endpoint at wss://127.0.0.1:{port}{PREFIX}<meetup-id> " \
           "(realm: micronets)" in world["router"].output()


@pytest_twisted.inlineCallbacks
def test_sigterm_closes_micronets_peers_with_a_close_frame(world):
    """Last: it stops the module's router. Micronets has no GOODBYE: each peer gets close
    1001 'the router is shutting down'; a WAMP peer over TLS gets its GOODBYE; the log
    counts them all."""
    manager = yield connect(world, "manager")
    manager.send(hello("micronets-manager", "mm-1"))
    waiting = yield connect(world, "dpp-client", path=f"{PREFIX}sub/{SUB}/ffffffffffff")
    waiting.send(hello("micronets-dpp", "dpp-1"))
    gateway = yield wamp_peer(world, "test-client")  # a WAMP session over TLS too
    assert (yield manager.next())["message"]["messageType"] == "CONN:HELLO"
    router = world["router"]
    router.proc.send_signal(signal.SIGTERM)
    for peer in (manager, waiting):
        assert (yield peer.closed()) == (1001, "the router is shutting down")
    details = yield within(gateway.left)
    assert details.reason == "wamp.close.system_shutdown"  # a GOODBYE, not a dropped TLS connection
    yield threads.deferToThread(router.wait_for, r"Shutdown: all sessions closed cleanly, 0 dropped")
    assert (yield threads.deferToThread(router.proc.wait, 30)) == 0


def test_the_documented_rules_are_the_ones_tested_here():
    """README "Existing Micronets certificates, as they are" and docs/compatibility/micronets.md
    give the rules this module's router runs with (the pinned fingerprint aside)."""
    import tomllib

    tested = tomllib.loads(CONFIG)["realms"][0]["auth"]["tls"]["rules"][:2]
    readme = (ROOT / "docs/reference/pairs.md").read_text()
    section = readme[readme.index("## Existing Micronets certificates, as they are"):]
    page = (ROOT / "docs/compatibility/micronets.md").read_text()
    for text in (section, page):
        block = tomllib.loads(re.search(r"```toml\n(.*?)```", text, re.S).group(1))
        realms = block["realms"]  # a list with [[realms]], the table alone with [realms.auth.tls]
        realm = realms[0] if isinstance(realms, list) else realms
        assert realm["auth"]["tls"]["rules"][:2] == tested
