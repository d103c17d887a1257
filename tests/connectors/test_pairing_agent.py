"""``twistd pairing-agent`` end to end: the real router over mTLS, a gateway agent and a
manager agent as processes with `relayrouter pki` certificates, a REST service beside
each, and plain HTTP clients on both sides."""

import hashlib
import json
import re

import pytest
import pytest_twisted
import treq
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.internet import defer, endpoints, reactor, task, threads
from twisted.web import resource, server

from relayrouter.cli import pki

from .processes import Child, RouterProcess, twistd

SUB, BOX = "8675309", "00224dd149bb"
WSS_LINE = re.compile(r"relayrouter listening: WebSocket at wss://127\.0\.0\.1:(\d+)/")
BLOB = hashlib.sha256(b"seed").digest() * (5 * 1024 * 1024 // 32)  # 5 MiB


class TlsRouter(RouterProcess):
    def start(self) -> None:
        config = self.dir / "router.toml"
        config.write_text(self.toml.replace("{port}", str(self.port)).replace("{state}", str(self.dir / "state")))
        self.argv = twistd("relayrouter", "--config", config)
        Child.start(self)
        self.port = int(self.wait_for(WSS_LINE).group(1))


def write_pki(root):
    ca = pki.make_ca("pairing test CA", 30)
    pki.write(root / "ca", "ca", ca)
    server_cert = pki.make_leaf(ca, "localhost", [x509.DNSName("localhost")], ExtendedKeyUsageOID.SERVER_AUTH, 30)
    pki.write(root / "server", "server", server_cert)
    for cls in ("gateway", "manager"):
        issued = pki.make_leaf(ca, pki.pair_cn(f"{SUB}/{BOX}", cls), [], ExtendedKeyUsageOID.CLIENT_AUTH, 30)
        pki.write(root / cls, "client", issued)
    return root


CONFIG = """state_dir = "{state}"

[[listeners]]
type = "websocket"
endpoint = "tcp:{port}:interface=127.0.0.1"
[listeners.tls]
certificate = "PKI/server/server.crt"
key = "PKI/server/server.key"
ca = "PKI/ca/ca.crt"
client_certificates = "required"

[[realms]]
name = "micronets"
[realms.auth.tls]
rules = [{ subject_cn = "(?P<authid>(?P<cls>gateway|manager):[^:]+:[^:]+)", role = "{cls}" }]
[realms.pairing]
"""


class Service(resource.Resource):
    """A peer's own REST service: a few routes, and a record of what it was asked."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen = []
        self.stalled = []
        self.down = False

    def render(self, request):
        if self.down:  # a service that went away: its kept-alive connections die too
            request.channel.transport.abortConnection()
            return server.NOT_DONE_YET
        body = request.content.read()
        self.seen.append((request.method, request.uri, dict(request.requestHeaders.getAllRawHeaders()), body))
        path = request.path
        if path == b"/json":
            request.setHeader("content-type", "application/json")
            request.setHeader("x-service", "gw")
            return json.dumps({"subnets": [{"id": "s1"}], "query": request.args.get(b"a", [b""])[0].decode()}).encode()
        if path == b"/blob":
            request.setHeader("content-type", "application/octet-stream")
            return BLOB
        if path == b"/upload":
            request.setHeader("content-type", "application/json")
            return json.dumps({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode()
        if path == b"/boom":
            request.setResponseCode(500)
            request.setHeader("content-type", "text/plain")
            return b"it broke"
        if path == b"/slow":
            self.stalled.append(request)
            return server.NOT_DONE_YET
        request.setResponseCode(404)
        request.setHeader("content-type", "application/json")
        return b'{"error": "no such thing"}'


class Events(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received = defer.DeferredQueue()

    def render_POST(self, request):
        self.received.put((request.getHeader("x-pair-event"), request.getHeader("content-type"),
                           request.content.read()))
        return b""


def agent(tmp_path, name, router_port, pki_dir, local_port, event_port):
    return Child(f"{name} agent", twistd(
        "pairing-agent", "--router", f"wss://localhost:{router_port}/ws", "--realm", "micronets",
        "--auth", "tls", "--tls-cert", pki_dir / name / "client.crt", "--tls-key", pki_dir / name / "client.key",
        "--ca-cert", pki_dir / "ca" / "ca.crt", "--local-service", f"http://127.0.0.1:{local_port}",
        "--listen", "tcp:0:interface=127.0.0.1", "--control", "tcp:0:interface=127.0.0.1",
        "--event-endpoint", f"http://127.0.0.1:{event_port}/", "--request-timeout", "20",
        "--state-dir", tmp_path / f"{name}-state", "--retry-initial", "0.2", "--retry-max", "1"))


def start_agent(child) -> dict:
    child.start()
    rest_port = int(child.wait_for(r"REST port listening: http://127\.0\.0\.1:(\d+)/").group(1))
    control = int(child.wait_for(r"control listening: http://127\.0\.0\.1:(\d+)/").group(1))
    child.wait_for(r"pairing-agent: the (gateway|manager) of pair 8675309/00224dd149bb", 60)
    return {"rest": f"http://127.0.0.1:{rest_port}", "control": f"http://127.0.0.1:{control}"}


def listen(site_resource):
    return pytest_twisted.blockon(endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
                                  .listen(server.Site(site_resource)))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pairing")
    pki_dir = write_pki(tmp / "pki")
    router = TlsRouter(tmp, CONFIG.replace("PKI", str(pki_dir)))
    router.start()
    services = {"gateway": Service(), "manager": Service()}
    events = {"gateway": Events(), "manager": Events()}
    ports = {name: listen(services[name]) for name in services}
    event_ports = {name: listen(events[name]) for name in events}
    agents, urls = {}, {}
    for name in ("gateway", "manager"):
        agents[name] = agent(tmp, name, router.port, pki_dir, ports[name].getHost().port,
                             event_ports[name].getHost().port)
        urls[name] = start_agent(agents[name])
    yield {"router": router, "agents": agents, "urls": urls, "services": services, "events": events,
           "ports": ports, "tmp": tmp, "pki": pki_dir, "event_ports": event_ports}
    # Nothing failed while the pair worked (checked before shutdown: see the shutdown note in README).
    for child in [router, *agents.values()]:
        assert "Traceback" not in child.output(), child.describe()
    for child in agents.values():
        child.stop()
    router.stop()
    for port in list(ports.values()) + list(event_ports.values()):
        port.stopListening()


@defer.inlineCallbacks
def request(method, url, **kwargs):
    response = yield treq.request(method, url, timeout=60, **kwargs)
    body = yield treq.content(response)
    return response, body


@pytest_twisted.inlineCallbacks
def test_manager_calls_the_gateways_rest_api_through_the_pair(world):
    response, body = yield request("GET", world["urls"]["manager"]["rest"] + "/json?a=1&b=two",
                                   headers={"Accept": ["application/json"], "X-Trace": ["t-1"]})
    assert response.code == 200, body
    assert json.loads(body) == {"subnets": [{"id": "s1"}], "query": "1"}
    assert response.headers.getRawHeaders("x-service") == ["gw"]
    assert len(response.headers.getRawHeaders("server")) == 1 and len(response.headers.getRawHeaders("date")) == 1
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    method, uri, headers, _ = world["services"]["gateway"].seen[-1]
    assert (method, uri) == (b"GET", b"/json?a=1&b=two")
    assert headers[b"X-Trace"] == [b"t-1"] and headers[b"Accept"] == [b"application/json"]


@pytest_twisted.inlineCallbacks
def test_binary_bodies_of_megabytes_arrive_byte_exact_both_ways(world):
    response, body = yield request("GET", world["urls"]["manager"]["rest"] + "/blob")
    assert response.code == 200 and body == BLOB
    response, body = yield request("POST", world["urls"]["gateway"]["rest"] + "/upload", data=BLOB,
                                   headers={"Content-Type": ["application/octet-stream"]})
    assert response.code == 200
    assert json.loads(body) == {"length": len(BLOB), "sha256": hashlib.sha256(BLOB).hexdigest()}


@pytest_twisted.inlineCallbacks
def test_errors_of_the_remote_service_pass_through(world):
    response, body = yield request("GET", world["urls"]["manager"]["rest"] + "/nothing-here")
    assert response.code == 404 and json.loads(body) == {"error": "no such thing"}
    response, body = yield request("GET", world["urls"]["manager"]["rest"] + "/boom")
    assert response.code == 500 and body == b"it broke"


@pytest_twisted.inlineCallbacks
def test_notifications_reach_the_other_peer(world):
    response, body = yield request("POST", world["urls"]["gateway"]["control"] + "/events/DPP:DPPOnboardingStartedEvent",
                                   data=b'{"deviceId": "d1"}', headers={"Content-Type": ["application/json"]})
    assert response.code == 202, body
    name, content_type, payload = yield world["events"]["manager"].received.get()
    assert name == "DPP:DPPOnboardingStartedEvent" and content_type == "application/json"
    assert json.loads(payload) == {"deviceId": "d1"}
    response, body = yield request("POST", world["urls"]["gateway"]["control"] + "/events/bad.name", data=b"x")
    assert response.code == 404 and json.loads(body)["error"] == "not_found"


@pytest_twisted.inlineCallbacks
def test_json_too_deep_to_decode_crosses_the_pair_untouched(world):
    # Like any body that is not the JSON it claims to be: passed on byte-exact, never a 500.
    deep = b"[" * 5000
    response, body = yield request("POST", world["urls"]["gateway"]["control"] + "/events/deep", data=deep,
                                   headers={"Content-Type": ["application/json"]})
    assert response.code == 202, body
    name, content_type, payload = yield world["events"]["manager"].received.get()
    assert (name, content_type, payload) == ("deep", "application/json", deep)
    response, body = yield request("POST", world["urls"]["gateway"]["rest"] + "/upload", data=deep,
                                   headers={"Content-Type": ["application/json"]})
    assert response.code == 200, body
    assert json.loads(body) == {"length": len(deep), "sha256": hashlib.sha256(deep).hexdigest()}


@pytest_twisted.inlineCallbacks
def test_status_tells_the_pair_and_the_peer(world):
    response, body = yield request("GET", world["urls"]["gateway"]["control"] + "/status")
    status = json.loads(body)
    assert status["status"] == "ready" and status["peer_present"] is True
    assert status["pair"]["peer_class"] == "gateway" and status["pair"]["box"] == BOX
    assert status["router"]["authid"] == f"gateway:{SUB}:{BOX}"


@pytest_twisted.inlineCallbacks
def test_a_local_service_that_is_down_is_a_502_never_a_hang(world):
    port, service = world["ports"]["manager"], world["services"]["manager"]
    yield port.stopListening()
    service.down = True
    started = reactor.seconds()
    response, body = yield request("GET", world["urls"]["gateway"]["rest"] + "/anything")
    assert response.code == 502 and json.loads(body)["error"] == "bad_gateway", body
    assert "the local service at http://127.0.0.1:" in json.loads(body)["message"]
    assert reactor.seconds() - started < 10


@pytest_twisted.inlineCallbacks
def test_peer_leaving_mid_call_answers_at_once_then_it_comes_back(world):
    gateway = world["agents"]["gateway"]
    pending = request("GET", world["urls"]["manager"]["rest"] + "/slow")
    yield _until(lambda: world["services"]["gateway"].stalled)
    started = reactor.seconds()
    yield threads.deferToThread(gateway.kill9)
    response, body = yield pending
    assert response.code == 502 and "wamp.error.canceled" in json.loads(body)["message"]
    assert reactor.seconds() - started < 10
    # Its peer away, the manager's agent answers 503 at once, naming why.
    response, body = yield request("GET", world["urls"]["manager"]["rest"] + "/json")
    assert response.code == 503 and "relayrouter.error.peer_absent" in json.loads(body)["message"]
    assert json.loads(body)["error"] == "unavailable"  # a slug, as every error body of the connectors
    world["urls"]["gateway"] = yield threads.deferToThread(start_agent, gateway)
    response, body = yield request("GET", world["urls"]["manager"]["rest"] + "/json")
    assert response.code == 200


@defer.inlineCallbacks
def _until(predicate, seconds=30):
    deadline = reactor.seconds() + seconds
    while not predicate():
        assert reactor.seconds() < deadline, "condition not reached"
        yield task.deferLater(reactor, 0.05, lambda: None)
