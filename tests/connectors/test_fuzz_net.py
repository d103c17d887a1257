"""The fuzz net (tests/fuzz_net.py) over the router and every connector, each a
real process: every HTTP resource their code mounts gets the fixed hostile set
and Hypothesis-made requests; no undocumented 5xx, no error or traceback in
any process's output, and every process still answers afterwards."""

import json
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .. import fuzz_net
from .processes import JsonLines, RouterProcess, listener

pytestmark = pytest.mark.timeout(600)

JWT_SECRET = "fuzz-net-hmac-secret-0123456789abcdef-0123456789"
SECRETS = {"NET_JWT_SECRET": JWT_SECRET, "NET_BRIDGE_SECRET": "bridge-secret-0123456789abcdef",
           "NET_GITHUB_SECRET": "github-secret-0123456789abcdef", "NET_MAILBOX_SECRET": "mailbox-secret-0123456789abcdef",
           "NET_METRICS_SECRET": "metrics-secret-0123456789abcdef"}
EXAMPLES = 20  # Hypothesis examples per path (a fixed seed: the same requests every run)

ROUTER_TOML = listener() + """
[metrics]
secret_env = "NET_METRICS_SECRET"
loopback_open = false

[revocation]
admin_roles = ["admin"]
admin_realm = "management"

[tenants]
admin_roles = ["admin"]

[[realms]]
name = "management"
[realms.auth.jwt]
algorithms = ["HS256"]
as_ticket = true
authrole_claim = "role"
authrole = "user"
keys = [{secret_env = "NET_JWT_SECRET"}]
[realms.auth.one_time_tickets]
lifetime = 30
[[realms.roles]]
name = "admin"
rules = [{uri = "", match = "prefix", allow = ["call", "publish", "subscribe", "register"]}]
[[realms.roles]]
name = "webhook"
rules = [{uri = "com.example.", match = "prefix", allow = ["publish"]}]
[[realms.mailboxes]]
uri = "mailbox.{authid}"
http = "token"
token_secret_env = "NET_MAILBOX_SECRET"

[[realms]]
name = "lab"
[realms.auth.jwt]
algorithms = ["HS256"]
audience = "https://relay.example.org/access"
authrole = "relay"
as_ticket = true
keys = [{secret_env = "NET_JWT_SECRET"}]

[[realms]]
name = "pairs"
pairing = {}
[realms.auth.anonymous]
role = "peer"

[[realm_templates]]
name = "tenant"
[realm_templates.auth.jwt]
algorithms = ["HS256"]
as_ticket = true
authrole = "user"
realm_claim = "service"
keys = [{secret_env = "NET_JWT_SECRET"}]

[relay]
realm = "lab"

[http_bridge]
keys = [{key = "foobar", secret_env = "NET_BRIDGE_SECRET", realm = "management", role = "admin"}]
[[http_bridge.webhooks]]
name = "open"
realm = "management"
topic = "com.example.hook"
[[http_bridge.webhooks]]
name = "github"
realm = "management"
topic = "com.example.gh"
github_secret_env = "NET_GITHUB_SECRET"
"""


def admin_token(lifetime: float = 3600) -> str:
    import jwt as pyjwt

    now = int(time.time())
    return pyjwt.encode({"sub": "ops", "role": "admin", "iat": now, "exp": now + lifetime}, JWT_SECRET,
                        algorithm="HS256")


# ------------------------------------------------------------------ the net


class Component:
    """A running process, the paths its code serves, and how to check it."""

    def __init__(self, child, port: int, tapname: str, args: list, env: dict, alive: bytes,
                 credentials: list, site: int | None = None) -> None:
        self.child, self.port, self.alive = child, port, alive
        self.credentials = credentials
        service = fuzz_net.built_service(tapname, args, env)
        self.targets, self.unknown = fuzz_net.targets(service, site)
        self.mark = len(child.all_output)

    @classmethod
    def of(cls, child, tapname: str, port: int, scratch, alive: bytes, credentials: list, site=None):
        """The component ``child`` runs: its tree built from its own arguments and environment
        (another state directory)."""
        args = [str(a) for a in child.argv]
        args = args[args.index(tapname) + 1:]
        if "--state-dir" in args:
            args[args.index("--state-dir") + 1] = str(scratch)
        return cls(child, port, tapname, args, child.env, alive, credentials, site)

    def drive(self, method: bytes, target: bytes, headers: list, body: bytes, length=None) -> None:
        status, answer = fuzz_net.send(self.port, method, target, headers, body, length)
        what = f"{method.decode('latin-1')} {target[:120]!r} {headers!r} {body[:200]!r}"
        try:
            fuzz_net.check_answer(status, answer, what)
        except AssertionError as e:
            time.sleep(0.2)  # what the process printed about it: let its output thread catch up
            raise AssertionError(f"{e}\n{self.child.name} printed:\n" + "\n\n".join(self.errors())) from None

    def errors(self) -> list[str]:
        return fuzz_net.new_errors(self.child, self.mark)


def run_net(component: Component) -> int:
    assert not component.unknown, (
        "the fuzz net does not know how to reach these resources; add their classes to "
        f"tests/fuzz_net.py REACH: {component.unknown}")
    count = 0
    for target in component.targets:
        for credentials in [[], component.credentials] if component.credentials else [[]]:
            for method, path, headers, body, length in fuzz_net.hostile_requests(target.path, credentials):
                component.drive(method, path, headers, body, length)
                count += 1
        assert component.child.running, component.child.describe()
    fuzz_net.still_serves(component.port, component.alive)
    assert not component.errors(), "\n\n".join(component.errors())
    return count


# ------------------------------------------------ Hypothesis-made requests

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=10), children, max_size=4), max_leaves=20)
fields = st.sampled_from(["realm", "topic", "procedure", "name", "template", "claim", "value", "ttl", "expires_at",
                          "options", "args", "kwargs", "document", "recipients", "attrs", "data", "ts", "id",
                          "label", "before", "limit", "q", "ticket", "token"])
bodies = st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                   st.dictionaries(fields, json_values, max_size=5).map(lambda v: json.dumps(v).encode()),
                   st.binary(max_size=200))
queries = st.lists(st.tuples(fields | st.text(max_size=5), st.binary(max_size=12)), max_size=4).map(
    lambda pairs: b"?" + b"&".join(k.encode() + b"=" + "".join(f"%{b:02x}" for b in v).encode()
                                   for k, v in pairs) if pairs else b"")
header_values = st.binary(min_size=1, max_size=40).filter(lambda v: b"\r" not in v and b"\n" not in v
                                                          and v[:1] not in (b" ", b"\t"))
headers = st.lists(st.tuples(st.sampled_from([b"Authorization", b"Content-Type", b"Origin", b"Accept",
                                              b"Content-Encoding", b"X-Hub-Signature-256", b"Cookie"]),
                             header_values), max_size=3)
methods = st.sampled_from(fuzz_net.METHODS)


def hypothesis_net(component: Component) -> int:
    count = [0]

    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(method=methods, query=queries, extra=headers, body=bodies, authenticated=st.booleans())
    def one(path, method, query, extra, body, authenticated):
        credentials = component.credentials if authenticated else []
        component.drive(method, path + query, credentials + extra, body)
        count[0] += 1

    for target in component.targets:
        one(target.path.encode())
    fuzz_net.still_serves(component.port, component.alive)
    assert not component.errors(), "\n\n".join(component.errors())
    return count[0]


# ------------------------------------------------------------------ router


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("net-router")
    proc = RouterProcess(tmp, ROUTER_TOML, env=SECRETS)
    proc.start()
    scratch = tmp / "built"
    scratch.mkdir()
    config = scratch / "router.toml"
    config.write_text(ROUTER_TOML.replace("{port}", "0").replace("{state}", str(scratch / "state")))
    component = Component(proc, proc.port, "relayrouter", ["--config", config], SECRETS,
                          b"/health", [(b"Authorization", b"Bearer " + admin_token().encode())])
    yield component
    proc.stop()


def test_the_router_tree_is_all_reached(router):
    paths = {t.path for t in router.targets}
    assert {"/ticket", "/denylist", "/realms", "/publish", "/call", "/webhook/open", "/mailbox/mailbox.agentb",
            "/health", "/ready", "/metrics", "/console", "/ws", "/bids/deny", "/status"} <= paths, sorted(paths)
    assert not router.unknown, router.unknown


def test_the_router_under_the_fixed_hostile_set(router):
    assert run_net(router) > 1000


@pytest.mark.scenario  # thousands of hostile frames
def test_the_routers_websockets_under_hostile_frames(router):
    """Each WebSocket resource of the router's tree (WAMP, the Micronets endpoint) gets
    each hostile frame after a HELLO, on a connection of its own: the connection is
    closed (an ABORT naming the problem over WAMP), nothing else happens."""
    sockets = [t for t in router.targets if t.kind in fuzz_net.WEBSOCKETS]
    assert {"/ws", "/micronets/v1/ws-proxy"} <= {t.path for t in sockets}
    hello = (1, b'[1, "management", {"roles": {"caller": {}}, "authmethods": ["ticket"], "authid": "x"}]')
    for target in sockets:
        micronets = target.kind.endswith("_MeetupResource")
        path = target.path.encode() + (b"/m1" if micronets else b"")
        for protocol in (None,) if micronets else (b"wamp.2.json", b"wamp.2.cbor"):
            answered = [fuzz_net.ws_session(router.port, path, protocol, [hello, frame]).startswith(b"HTTP/1.1 ")
                        for frame in fuzz_net.WS_FRAMES]
            # The router may drop a connection it will not keep (too many unauthenticated ones from
            # one address): the point is that nothing else happens.
            assert any(answered), (target.path, protocol)
    fuzz_net.still_serves(router.port, router.alive)
    assert not router.errors(), "\n\n".join(router.errors())


def test_the_router_under_hypothesis(router):
    assert hypothesis_net(router) == EXAMPLES * len(router.targets)


def relay_token(topic: str = "pend00") -> str:
    import jwt as pyjwt

    now = int(time.time())
    return pyjwt.encode({"topic": topic, "prefix": "session", "scopes": ["read", "write"], "booking_id": "bk-net",
                         "aud": ["https://relay.example.org/access"], "iat": now, "nbf": now, "exp": now + 600},
                        JWT_SECRET, algorithm="HS256")


def test_the_relays_raw_websocket_under_hostile_frames(router):
    """The relay's raw stream (``/{prefix}/{topic}?code=``, upgraded by PrefixResource's
    topics): each hostile frame after a real upgrade with a fresh code, on its own connection."""
    assert "relayrouter.relay.access.PrefixResource" in {t.kind for t in router.targets}

    def upgraded_path() -> bytes:
        status, answer = fuzz_net.send(router.port, b"POST", b"/session/pend00",
                                       [(b"Authorization", relay_token().encode())])
        assert status == 200, answer
        uri = answer_json(answer)["uri"]
        return uri[uri.index("/session/"):].encode()

    frames_into(router, upgraded_path)


def answer_json(answer: bytes):
    """The JSON body of a raw HTTP/1.1 answer, chunked or not."""
    head, _, body = answer.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return json.loads(body)
    whole = b""
    while True:
        size, _, body = body.partition(b"\r\n")
        size = int(size.split(b";")[0], 16)
        if not size:
            return json.loads(whole)
        whole, body = whole + body[:size], body[size + 2:]


def frames_into(component: Component, path_for) -> None:
    """Each hostile frame on a WebSocket of its own, upgraded at ``path_for()`` (a fresh
    credential each time): the upgrade succeeds, then nothing but a refusal or a close."""
    for frame in fuzz_net.WS_FRAMES:
        answer = fuzz_net.ws_session(component.port, path_for(), None, [frame])
        assert answer.startswith(b"HTTP/1.1 101"), (frame[1][:40], answer[:300])
    fuzz_net.still_serves(component.port, component.alive)
    assert not component.errors(), "\n\n".join(component.errors())


# -------------------------------------------------------------- connectors


def bearer(token: str) -> list:
    return [(b"Authorization", b"Bearer " + token.encode())]


@pytest.fixture(scope="module")
def decrypt_search(tmp_path_factory):
    from .decrypt_search.support import Connector, World, router_process, token

    tmp = tmp_path_factory.mktemp("net-decrypt-search")
    router_proc = router_process(tmp)
    router_proc.start()
    connector = Connector(tmp, World(tmp), "acme", router_proc)
    try:
        connector.start()
        yield Component.of(connector, "decrypt-search", connector.http_port, tmp / "built-state", b"/status",
                           bearer(token()))
    finally:
        connector.stop()
        router_proc.stop()


@pytest.fixture(scope="module")
def iot_agent(tmp_path_factory):
    from .iot_agent.harness import Agent, Mosquitto, start_router, token
    from .iot_agent.test_agent import make_tenant

    tmp = tmp_path_factory.mktemp("net-iot")
    broker = Mosquitto(tmp / "mosquitto")
    broker.start()
    router_proc = agent = None
    try:
        router_proc = start_router(tmp)
        make_tenant(router_proc, "acme")
        agent = Agent(tmp, router_proc, broker)
        agent.start()
        yield Component.of(agent, "iot-agent", agent.port, tmp / "built-state", b"/status",
                           bearer(token(service="acme", role="user", sub="user-acme")))
    finally:
        for part in (agent, router_proc):
            if part is not None:
                part.stop()
        broker.stop()


@pytest.fixture(scope="module")
def pairing_agents(tmp_path_factory):
    from .test_pairing_agent import CONFIG, TlsRouter, agent, start_agent, write_pki

    tmp = tmp_path_factory.mktemp("net-pairing")
    pki_dir = write_pki(tmp / "pki")
    router_proc = TlsRouter(tmp, CONFIG.replace("PKI", str(pki_dir)))
    router_proc.start()
    local = JsonLines("echo", [sys.executable, str(Path(__file__).with_name("echo_service.py"))])
    local.start()  # the local REST service and event endpoint of both agents: 200 to anything
    local.port = local.wait_events(lambda events: events, what="its port")[0]["port"]
    agents, urls = [], {}
    try:
        for name in ("gateway", "manager"):
            agents.append(agent(tmp, name, router_proc.port, pki_dir, local.port, local.port))
            urls[name] = start_agent(agents[-1])
        gateway = agents[0]
        rest_port, control_port = (int(urls["gateway"][k].rsplit(":", 1)[1]) for k in ("rest", "control"))
        yield (Component.of(gateway, "pairing-agent", rest_port, tmp / "built-state", b"/", [], site=0),
               Component.of(gateway, "pairing-agent", control_port, tmp / "built-state-2", b"/status", [], site=1))
    finally:
        for child in agents:
            child.stop()
        router_proc.stop()
        local.stop()


@pytest.fixture(scope="module")
def mediator_proxy(tmp_path_factory):
    from .processes import ProxyProcess
    from .test_mediator_proxy_basics import MAILBOX_CONFIG, TICKET

    # The proxy as deployed: its router has the mailbox it takes, and the net
    # starts once it is ready (what it logs from then on is the net's doing).
    tmp = tmp_path_factory.mktemp("net-mediator")
    router_proc = RouterProcess(tmp, MAILBOX_CONFIG, env={"AGENTB_TICKET": TICKET,
                                                          "MAILBOX_SECRET": "mailbox-secret-0123456789"})
    router_proc.start()
    proxy = ProxyProcess(tmp, ["--router", router_proc.ws_url, "--realm", "lab", "--authid", "agentb",
                               "--agent-endpoint", f"http://127.0.0.1:{fuzz_net.unused_port()}/inbox"],
                         env={"MEDIATOR_PROXY_TICKET": TICKET})
    try:
        proxy.start()
        proxy.wait_status(lambda s: s["status"] == "ready")
        yield Component.of(proxy, "mediator-proxy", proxy.http_port, tmp / "built-state", b"/status",
                           bearer(proxy.api_token))
    finally:
        proxy.stop()
        router_proc.stop()


@pytest.fixture(scope="module")
def didcomm_proxy(tmp_path_factory):
    """The DIDComm mode with no mediator yet: its seed-compatible surface, admin routes guarded."""
    from .processes import HTTP_LINE, Child, twistd

    tmp = tmp_path_factory.mktemp("net-didcomm")
    port, token = fuzz_net.unused_port(), "didcomm-admin-token-0123456789"
    child = Child("mediator-proxy didcomm", twistd("mediator-proxy", "didcomm", "--state-dir", tmp / "state"),
                  env={"PORT": f"tcp:{port}:interface=127.0.0.1", "ENDPOINT": f"http://127.0.0.1:{port}/",
                       "MEDIATOR_PROXY_API_TOKEN": token})
    child.env.pop("MEDIATOR_INVITE", None)
    try:
        child.start()
        child.wait_for(HTTP_LINE)
        yield Component.of(child, "mediator-proxy", port, tmp / "built-state", b"/status", bearer(token))
    finally:
        child.stop()


# Each twistd plugin this package ships, and each mode of one, and the fixtures that put it in the net.
IN_THE_NET = {"relayrouter": "router", "decrypt-search": "decrypt_search", "iot-agent": "iot_agent",
              "pairing-agent": "pairing_agents", "mediator-proxy": "mediator_proxy",
              "mediator-proxy didcomm": "didcomm_proxy"}


def test_every_component_we_ship_is_in_the_net():
    """A new connector (a twistd plugin) or a new mode of one cannot escape the net: the plugins
    are found the way twistd finds them, and each must be driven by a fixture here."""
    import twisted.plugins
    from twisted.application.service import IServiceMaker
    from twisted.plugin import getPlugins

    shipped = set()
    for maker in getPlugins(IServiceMaker, twisted.plugins):
        if getattr(maker, "module", "").split(".")[0] in ("relayrouter", "connectors"):
            shipped.add(maker.tapname)
            shipped.update(f"{maker.tapname} {sub[0]}" for sub in getattr(maker.options(), "subCommands", None) or [])
    assert shipped == set(IN_THE_NET), sorted(shipped ^ set(IN_THE_NET))


@pytest.mark.parametrize("name", ["decrypt_search", "iot_agent", "pairing_agents", "mediator_proxy",
                                  "didcomm_proxy"])
def test_each_connector_under_the_fixed_hostile_set_and_hypothesis(request, name):
    found = request.getfixturevalue(name)
    for component in found if isinstance(found, tuple) else (found,):
        assert component.targets and not component.unknown, (component.targets, component.unknown)
        assert run_net(component) > 100
        assert hypothesis_net(component) == EXAMPLES * len(component.targets)


def test_the_iot_agents_kafka_ws_under_hostile_frames(iot_agent):
    """dojot's Kafka-WS (``/kafka-ws/v1/topics/<tenant>.<subject>?ticket=``): each hostile
    frame after a real upgrade with a fresh single-use ticket, on its own connection."""
    assert "connectors.iot_agent.http_api._AnyTopic" in {t.kind for t in iot_agent.targets}

    def upgraded_path() -> bytes:
        status, answer = fuzz_net.send(iot_agent.port, b"GET", b"/kafka-ws/v1/ticket", iot_agent.credentials)
        assert status == 200, answer
        ticket = answer_json(answer)["ticket"]
        return b"/kafka-ws/v1/topics/acme.device-data?ticket=" + ticket.encode()

    frames_into(iot_agent, upgraded_path)
