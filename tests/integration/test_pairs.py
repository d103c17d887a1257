"""Pairs end to end: real TLS with `relayrouter pki` certificates, Autobahn peers and
Micronets peers speaking the seed proxy's own protocol."""

import json

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory
from autobahn.wamp.types import SubscribeOptions
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.internet import defer, endpoints, reactor, ssl

from relayrouter.cli import pki
from relayrouter.core.pairs import presence_topic, rest_procedure

from ..security_support import Pki, start, stop
from ..support import ConnectionClosed, LeftBeforeJoining, RawClient, RawProtocol, connect_ws, within

SUB, BOX = "8675309", "00224dd149bb"
MEETUP = f"/micronets/v1/ws-proxy/sub/{SUB}/{BOX}"
PEER_RULE = {"subject_cn": "(?P<authid>(?P<cls>gateway|manager):[^:]+:[^:]+)", "role": "{cls}"}


class PairPki(Pki):
    def __init__(self, root) -> None:
        super().__init__(root)
        for name, pair, cls in (("gateway", f"{SUB}/{BOX}", "gateway"), ("manager", f"{SUB}/{BOX}", "manager"),
                                ("gateway-b", f"{SUB}/ffffffffffff", "gateway")):
            cn = pki.pair_cn(pair, cls)
            self.clients[name] = pki.make_leaf(self.ca, cn, [], ExtendedKeyUsageOID.CLIENT_AUTH, 30)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return PairPki(tmp_path_factory.mktemp("pki"))


def pair_router(certs, tmp_path, on_conflict="refuse"):
    tls = certs.listener_tls("required")
    data = {
        "listeners": [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1", "tls": tls}],
        "realms": [{"name": "micronets", "auth": {"tls": {"rules": [PEER_RULE]}},
                    "pairing": {"on_conflict": on_conflict, "ping_interval": 1, "ping_timeout": 5}}],
    }
    return pytest_twisted.blockon(start(data, tmp_path / "state"))


@pytest.fixture
def router(certs, tmp_path):
    running = pair_router(certs, tmp_path)
    yield running
    pytest_twisted.blockon(stop(running))


def wamp_peer(running, certs, who):
    return connect_ws(running, realm="micronets", authmethods=["tls"], tls=certs.client_options(who))


@defer.inlineCallbacks
def legacy_peer(running, certs, who, path=MEETUP):
    """A Micronets peer: a plain WebSocket to the meetup path with its client certificate."""
    factory = WebSocketClientFactory(f"wss://localhost:{running.ws_port}{path}")
    factory.protocol = RawProtocol
    factory.opened, factory.closed = defer.Deferred(), defer.Deferred()
    factory.inbox, factory.waiting = [], []
    endpoint = endpoints.wrapClientTLS(certs.client_options(who),
                                       endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", running.ws_port))
    first = defer.Deferred()
    for d in (factory.opened, factory.closed):
        d.addBoth(lambda result: (first.called or first.callback(None), result)[1])
    yield endpoint.connect(factory)
    yield within(first)
    if factory.closed.called:
        raise ConnectionClosed(*factory.close_info[1:])
    return RawClient(factory, factory.opened.result)


def hello(peer_class, peer_id):
    return {"message": {"messageId": 0, "messageType": "CONN:HELLO", "requiresResponse": False,
                        "peerClass": peer_class, "peerId": peer_id}}


@defer.inlineCallbacks
def rest_server(session, routes):
    """A WAMP peer's REST API: (method, path) -> response."""
    seen = []

    def handle(request):
        seen.append(request)
        return routes.get((request["method"], request["path"]),
                          {"status": 404, "reason": "Not Found", "headers": [], "body": None})

    me = session.details.authid.split(":")[0]
    yield session.register(handle, rest_procedure(SUB, BOX, me))
    return seen


# ------------------------------------------------------------------ WAMP peers


@pytest_twisted.inlineCallbacks
def test_wamp_gateway_and_manager_pair_and_call_each_other(router, certs):
    gateway = yield wamp_peer(router, certs, "gateway")
    manager = yield wamp_peer(router, certs, "manager")
    assert gateway.details.authid == f"gateway:{SUB}:{BOX}" and gateway.details.authrole == "gateway"
    blob = bytes(range(256)) * 4096  # 1 MiB, every byte value
    yield rest_server(gateway, {("GET", "/micronets/v1/dhcp/subnets"): {
        "status": 200, "reason": "OK", "headers": [["X-Gw", "1"]], "content_type": "application/json",
        "body": {"subnets": []}}, ("GET", "/blob"): {"status": 200, "content_type": "application/octet-stream",
                                                      "body": blob}})
    resp = yield manager.call(rest_procedure(SUB, BOX, "gateway"),
                              {"method": "GET", "path": "/micronets/v1/dhcp/subnets"})
    assert resp["body"] == {"subnets": []} and resp["headers"] == [["X-Gw", "1"]]
    resp = yield manager.call(rest_procedure(SUB, BOX, "gateway"), {"method": "GET", "path": "/blob"})
    assert resp["body"] == blob
    peer = yield gateway.call("relayrouter.pairs.peer")
    assert peer["present"] and peer["authid"] == f"manager:{SUB}:{BOX}"


@pytest_twisted.inlineCallbacks
def test_third_peer_refused_and_foreign_pair_uris_refused(router, certs):
    yield wamp_peer(router, certs, "gateway")
    with pytest.raises(LeftBeforeJoining) as info:
        yield wamp_peer(router, certs, "gateway")
    assert info.value.reason == "relayrouter.error.pair_occupied"
    assert f"pair {SUB}/{BOX} already has its gateway" in info.value.message
    other = yield wamp_peer(router, certs, "gateway-b")
    from autobahn.wamp.exception import ApplicationError
    with pytest.raises(ApplicationError) as info:
        yield other.subscribe(lambda *a: None, presence_topic(SUB, BOX))
    assert info.value.error == "wamp.error.not_authorized"
    assert "belongs to a pair this session is not a peer of" in info.value.args[0]


# ---------------------------------------------------------------- legacy peers


@pytest_twisted.inlineCallbacks
def test_legacy_peers_meet_exchange_hellos_and_relay_verbatim(router, certs):
    gateway = yield legacy_peer(router, certs, "gateway")
    gateway.send(hello("micronets-gw", "gw-1"))
    gateway.send({"message": {"messageId": 1, "messageType": "EVENT:early", "requiresResponse": False}})
    manager = yield legacy_peer(router, certs, "manager")
    manager.send(hello("micronets-manager", "mm-1"))
    assert (yield gateway.next()) == hello("micronets-manager", "mm-1")
    assert (yield manager.next()) == hello("micronets-gw", "gw-1")  # the early EVENT was dropped
    request = {"message": {"messageId": 3, "messageType": "REST:REQUEST", "requiresResponse": True,
                           "method": "GET", "path": "/micronets/v1/dhcp/subnets", "odd": [1, {"x": None}]}}
    manager.send(request)
    assert (yield gateway.next()) == request
    # A third connection to the meetup is closed with the reason.
    third = yield legacy_peer(router, certs, "gateway")
    third.send(hello("micronets-gw", "gw-2"))
    code, reason = yield third.closed()
    assert code == 1008 and "already has its gateway" in reason
    # The survivor is told when its peer goes, the way the seed proxy tells it.
    manager.drop()
    code, reason = yield gateway.closed()
    assert (code, reason) == (1002, "the peer websocket disconnected")


@pytest_twisted.inlineCallbacks
def test_a_certificate_cannot_join_another_pairs_meetup(router, certs):
    with pytest.raises(ConnectionClosed):
        yield legacy_peer(router, certs, "gateway-b")  # pair ffffffffffff's cert on 00224dd149bb's path
    assert router.router.realms["micronets"].counters["pair.refused_foreign_meetup"] == 1
    assert list(router.router.sessions()) == []


@pytest_twisted.inlineCallbacks
def test_a_bad_hello_closes_with_what_is_wrong(router, certs):
    peer = yield legacy_peer(router, certs, "gateway")
    peer.send({"message": {"messageId": "zero", "messageType": "CONN:HELLO", "requiresResponse": False,
                           "peerClass": "gw", "peerId": "1"}})
    code, reason = yield peer.closed()
    assert code == 1008 and reason == "CONN:HELLO field 'messageId' must be a int"


@pytest_twisted.inlineCallbacks
def test_legacy_gateway_with_a_wamp_manager(router, certs):
    gateway = yield legacy_peer(router, certs, "gateway")
    gateway.send(hello("micronets-gw", "gw-1"))
    manager = yield wamp_peer(router, certs, "manager")
    seen = yield rest_server(manager, {("POST", "/portal/v1/register"): {
        "status": 201, "reason": "Created", "headers": [], "content_type": "application/json",
        "body": {"ok": True}}})
    greeting = yield gateway.next()
    assert greeting["message"]["messageType"] == "CONN:HELLO"
    assert greeting["message"]["peerClass"] == "manager"
    assert greeting["message"]["peerId"] == f"manager:{SUB}:{BOX}"

    # manager -> legacy gateway: a CALL becomes REST:REQUEST, REST:RESPONSE the result.
    call = manager.call(rest_procedure(SUB, BOX, "gateway"),
                        {"method": "PUT", "path": "/micronets/v1/dhcp/subnets/s7", "query": [["a", "1"]],
                         "headers": [["Accept", "*/*"], ["Content-Length", "99"]],
                         "content_type": "application/json", "body": {"gateway": "192.168.1.3"}})
    request = (yield gateway.next())["message"]
    assert request["messageType"] == "REST:REQUEST" and request["method"] == "PUT"
    assert request["queryStrings"] == [{"name": "a", "value": "1"}]
    assert request["headers"] == [{"name": "Accept", "value": "*/*"}]  # Content-Length never travels
    assert request["dataFormat"] == "application/json" and request["messageBody"] == {"gateway": "192.168.1.3"}
    gateway.send({"message": {"messageId": 9, "messageType": "REST:RESPONSE", "inResponseTo": request["messageId"],
                              "requiresResponse": False, "statusCode": 200, "reasonPhrase": "OK",
                              "dataFormat": "application/octet-stream", "messageBody": "AAEC/w=="}})
    resp = yield call
    assert resp["status"] == 200 and resp["body"] == b"\x00\x01\x02\xff"

    # legacy gateway -> manager: REST:REQUEST becomes a CALL of the manager's REST procedure.
    gateway.send({"message": {"messageId": 4, "messageType": "REST:REQUEST", "requiresResponse": True,
                              "method": "POST", "path": "/portal/v1/register", "headers": [],
                              "dataFormat": "application/json", "messageBody": {"id": "gw-1"}}})
    answer = (yield gateway.next())["message"]
    assert answer["messageType"] == "REST:RESPONSE" and answer["inResponseTo"] == 4
    assert answer["statusCode"] == 201 and answer["messageBody"] == {"ok": True}
    assert seen[-1]["body"] == {"id": "gw-1"}

    # Events cross both ways.
    got = defer.Deferred()
    yield manager.subscribe(lambda body, **kw: got.callback((body, kw)),
                            f"relayrouter.pair.{SUB}.{BOX}.event.DPP:DPPOnboardingCompleteEvent")
    gateway.send({"message": {"messageId": 5, "messageType": "EVENT:DPP:DPPOnboardingCompleteEvent",
                              "requiresResponse": False, "dataFormat": "application/json",
                              "messageBody": {"deviceId": "d1"}}})
    body, kwargs = yield within(got)
    assert body == {"deviceId": "d1"} and kwargs == {"content_type": "application/json"}
    yield manager.publish(f"relayrouter.pair.{SUB}.{BOX}.event.GatewayService:leaseExpired",
                          {"leaseExpiredEvent": {"deviceId": "d1"}}, content_type="application/json")
    event = (yield gateway.next())["message"]
    assert event["messageType"] == "EVENT:GatewayService:leaseExpired"
    assert event["messageBody"] == {"leaseExpiredEvent": {"deviceId": "d1"}}

    # The WAMP manager leaves: the legacy survivor is closed as the seed proxy would.
    yield manager.leave()
    code, reason = yield gateway.closed()
    assert (code, reason) == (1002, "the peer websocket disconnected")


@pytest_twisted.inlineCallbacks
def test_mixed_pair_drops_what_it_cannot_translate_and_carries_on(router, certs):
    """A Micronets peer paired with a WAMP peer: a frame that is no Micronets message
    (not JSON, {"message": 5}, no messageType, binary) has nothing to become, so it is
    dropped and counted, and the pair carries on."""
    gateway = yield legacy_peer(router, certs, "gateway")
    gateway.send(hello("micronets-gw", "gw-1"))
    manager = yield wamp_peer(router, certs, "manager")
    assert (yield gateway.next())["message"]["messageType"] == "CONN:HELLO"
    got = defer.DeferredQueue()
    yield manager.subscribe(lambda body, **kw: got.put(body), f"relayrouter.pair.{SUB}.{BOX}.event.",
                            options=SubscribeOptions(match="prefix"))
    gateway.send_bytes(b"not json")
    gateway.send({"message": 5})
    gateway.send({"message": {"messageId": 1}})
    gateway.send_bytes(b"\x00\x01", binary=True)
    gateway.send({"message": {"messageId": 2, "messageType": "EVENT:after", "requiresResponse": False,
                              "dataFormat": "application/json", "messageBody": {"n": 2}}})
    assert (yield within(got.get())) == {"n": 2}
    assert router.router.realms["micronets"].counters["pair.micronets_dropped"] == 4
    yield manager.publish(f"relayrouter.pair.{SUB}.{BOX}.event.back", "still paired", content_type="text/plain")
    assert (yield gateway.next())["message"]["messageType"] == "EVENT:back"


@pytest_twisted.inlineCallbacks
def test_an_oversized_frame_gets_close_1009(certs, tmp_path):
    tls = certs.listener_tls("required")
    running = yield start({"limits": {"max_message_size": 4096},
                           "listeners": [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1", "tls": tls}],
                           "realms": [{"name": "micronets", "auth": {"tls": {"rules": [PEER_RULE]}}, "pairing": {}}]},
                          tmp_path / "state")
    try:
        peer = yield legacy_peer(running, certs, "gateway")
        peer.send(hello("micronets-gw", "gw-1"))
        peer.send_bytes(b"x" * 5000)
        code, _ = yield peer.closed()
        assert code == 1009
    finally:
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_admin_lists_pairs_and_kicks_a_peer(certs, tmp_path):
    secret = tmp_path / "ops.secret"
    secret.write_text("s3cret-ops-ticket")
    secret.chmod(0o600)
    tls = certs.listener_tls("optional")
    data = {
        "listeners": [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1", "tls": tls}],
        "revocation": {"admin_roles": ["admin"]},
        "realms": [{"name": "micronets", "auth": {"tls": {"rules": [PEER_RULE]},
                                                  "ticket": {"principals": [{"authid": "ops", "role": "admin",
                                                                             "secret_file": str(secret)}]}},
                    "pairing": {}}],
    }
    running = yield start(data, tmp_path / "state")
    try:
        gateway = yield wamp_peer(running, certs, "gateway")
        admin = yield connect_ws(running, realm="micronets", authmethods=["ticket"], authid="ops",
                                 ticket="s3cret-ops-ticket", tls=certs.client_options(None))
        [entry] = yield admin.call("relayrouter.pairs.list")
        assert entry["subscriber"] == SUB and entry["manager"] is None
        assert entry["gateway"]["authid"] == f"gateway:{SUB}:{BOX}"
        kicked = yield admin.call("relayrouter.pairs.kick", SUB, BOX, "gateway", reason="maintenance")
        assert kicked == {"kicked": True}
        details = yield within(gateway.left)
        assert details.reason == "relayrouter.close.kicked" and details.message == "maintenance"
        from autobahn.wamp.exception import ApplicationError
        other = yield wamp_peer(running, certs, "manager")
        with pytest.raises(ApplicationError) as info:
            yield other.call("relayrouter.pairs.list")
        assert info.value.error == "wamp.error.not_authorized" and "may not administer pairs" in info.value.args[0]
    finally:
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_pki_issues_pair_certificates_the_router_accepts(router, certs, tmp_path):
    from relayrouter.cli import main

    out = tmp_path / "manager"
    assert main(["pki", "client", "--ca", str(certs.root / "ca"), "--pair", f"{SUB}/{BOX}",
                 "--class", "manager", "--out", str(out)]) == 0
    key, crt = (out / "client.key").read_bytes(), (out / "client.crt").read_bytes()
    trust = ssl.Certificate.loadPEM(certs.ca.cert.public_bytes(serialization.Encoding.PEM))
    options = ssl.optionsForClientTLS("localhost", trustRoot=trust,
                                      clientCertificate=ssl.PrivateCertificate.loadPEM(key + crt))
    manager = yield connect_ws(router, realm="micronets", authmethods=["tls"], tls=options)
    assert manager.details.authid == f"manager:{SUB}:{BOX}" and manager.details.authrole == "manager"
    assert main(["pki", "client", "--ca", str(certs.root / "ca"), "--pair", f"{SUB}.x/{BOX}",
                 "--class", "manager", "--out", str(tmp_path / "bad")]) == 2
    assert main(["pki", "client", "--ca", str(certs.root / "ca"), "--pair", f"{SUB}/{BOX}",
                 "--out", str(tmp_path / "bad")]) == 2


@pytest.mark.parametrize("who, alert", [("stranger", "unknown ca"), ("expired", "certificate expired")])
@pytest_twisted.inlineCallbacks
def test_certificates_of_another_ca_or_expired_never_reach_a_meetup(router, certs, who, alert, logged_errors):
    # The TLS handshake fails (the router's alert, logged by the client); no session, no relay.
    logged_errors.expect(rf"SSL error: .*{alert}")
    with pytest.raises(ConnectionClosed):
        yield legacy_peer(router, certs, who)
    assert list(router.router.sessions()) == []
