"""``twistd mediator-proxy didcomm`` in place of Indicio's proxy-mediator, with real ACA-Py 0.12.8 agents.

Three ACA-Py agents, as a proxy-mediator deployment has them: M, the
external mediator (``--open-mediation``, HTTP and WebSocket inbound); B, the
agent behind the proxy (it uses the proxy as its mediator, so outside peers
reach it through M); A, an outside peer. The proxy is set up from M's
invitation exactly as the seed's ``proxy_mediator/__main__.py`` does it
(mediation request and key registration, then its own out-of-band
invitation for the agent, ``GET /retrieve_agent_invitation``), and is
driven through the seed's HTTP surface (``proxy_mediator/admin.py``).
"""

import base64
import json
import time
from urllib.parse import parse_qs, urlparse

import pytest

from .processes import Child, HTTP_LINE, http_json, twistd
from .test_mediator_proxy_acapy import AcaPy, Webhooks, acapy_installed, free_port  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.timeout(900)
CONNECTIONS = "https://didcomm.org/connections/1.0"
DIDEXCHANGE = "https://didcomm.org/didexchange/1.0"


class DidcommProxy(Child):
    """``twistd mediator-proxy didcomm`` with the seed's environment variables."""

    def __init__(self, tmp_path, env) -> None:
        self.port = free_port()
        super().__init__("mediator-proxy didcomm", twistd("mediator-proxy", "didcomm"), env=dict(
            {"PORT": f"tcp:{self.port}:interface=127.0.0.1", "ENDPOINT": f"http://127.0.0.1:{self.port}/",
             "POLL_INTERVAL": "1", "MEDIATOR_PROXY_STATE_DIR": str(tmp_path / "didcomm-state"),
             "MEDIATOR_PROXY_AGENT_RETRY_MAX": "1"}, **env))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        super().start()
        self.wait_for(HTTP_LINE)

    def status(self) -> str:
        return http_json("GET", self.url + "/status")[1]["status"]

    def counters(self) -> dict:
        return http_json("GET", self.url + "/status")[1]

    def wait_status(self, wanted: str, seconds: float = 90.0) -> None:
        deadline = time.monotonic() + seconds
        while self.status() != wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"status never {wanted!r} (is {self.status()!r})\n{self.describe()}")
            time.sleep(0.1)


def wait_for(what: str, predicate, seconds: float = 90.0):
    deadline = time.monotonic() + seconds
    while not (found := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {seconds:.0f} s")
        time.sleep(0.2)
    return found


def invitation_of(url: str) -> dict:
    value = parse_qs(urlparse(url).query)["oob"][0]
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


@pytest.fixture
def deployment(tmp_path):
    procs = []
    webhooks = Webhooks()
    m_port, m_ws = free_port(), free_port()
    mediator = AcaPy("m", tmp_path / "home-m", [f"http://127.0.0.1:{m_port}", f"ws://127.0.0.1:{m_ws}"], m_port, webhooks, extra=[
        "--inbound-transport", "ws", "127.0.0.1", str(m_ws),
        "--outbound-transport", "ws", "--open-mediation", "--enable-undelivered-queue"])
    procs.append(mediator)
    mediator.start()
    invite = mediator.call("POST", "/connections/create-invitation", {})["invitation_url"]
    proxy = DidcommProxy(tmp_path, {"MEDIATOR_INVITE": invite})
    procs.append(proxy)
    yield mediator, proxy, webhooks, procs, tmp_path
    for proc in reversed(procs):
        proc.stop()
    webhooks.server.shutdown()


def connect_agent_behind_the_proxy(proxy, webhooks, procs, tmp_path, handshakes=None):
    """B takes the proxy's invitation (only ``handshakes`` of it, if given), asks it for mediation and
    makes it its default mediator."""
    b_port = free_port()
    b = AcaPy("b", tmp_path / "home-b", f"http://127.0.0.1:{b_port}", b_port, webhooks)
    procs.append(b)
    b.start()
    url = wait_for("agent invitation", lambda: http_json("GET", proxy.url + "/retrieve_agent_invitation")[1]
                   ["invitation_url"])
    assert url.startswith(proxy.url + "/?oob=")
    invitation = invitation_of(url)
    assert invitation["handshake_protocols"] == [DIDEXCHANGE, CONNECTIONS]
    if handshakes is not None:
        invitation["handshake_protocols"] = handshakes
    b.call("POST", "/out-of-band/receive-invitation", invitation)
    b_proxy = b.active_connection()
    proxy.wait_status("ready")
    record = b.call("POST", f"/mediation/request/{b_proxy}", {})
    wait_for("mediation granted", lambda: b.call("GET", f"/mediation/requests/{record['mediation_id']}")
             ["state"] == "granted")
    b.call("PUT", f"/mediation/{record['mediation_id']}/default-mediator")
    return b


def connect_outside_peer(b, webhooks, procs, tmp_path):
    """A, outside, takes B's invitation (which routes through the mediator and the proxy)."""
    a_port = free_port()
    a = AcaPy("a", tmp_path / "home-a", f"http://127.0.0.1:{a_port}", a_port, webhooks)
    procs.append(a)
    a.start()
    invitation = b.call("POST", "/out-of-band/create-invitation",
                        {"handshake_protocols": [DIDEXCHANGE], "use_public_did": False})["invitation"]
    a.call("POST", "/out-of-band/receive-invitation", invitation)
    a_conn = wait_for("A's connection", lambda: [c["connection_id"] for c in a.call(
        "GET", "/connections?state=active")["results"]])[0]
    return invitation, a, a_conn


def test_status_moves_init_setup_ready_and_two_acapy_agents_talk_through_mediator_and_proxy(deployment):
    mediator, proxy, webhooks, procs, tmp_path = deployment
    proxy.start()
    assert proxy.status() in ("init", "setup")
    b = connect_agent_behind_the_proxy(proxy, webhooks, procs, tmp_path)
    # one agent per proxy: once B is connected, nobody else connects on the invitation
    url = http_json("GET", proxy.url + "/retrieve_agent_invitation")[1]["invitation_url"]
    refused = from_a_stranger(proxy, url, 'messages.connection_request("intruder", envelope.verkey(me), "http://x/")')
    assert refused["description"]["code"] == "request-not-accepted"
    invitation, a, a_conn = connect_outside_peer(b, webhooks, procs, tmp_path)
    service = invitation["services"][0]
    assert service["serviceEndpoint"] == mediator.admin.replace(str(mediator.admin_port), str(mediator.inbound_port))
    assert len(service["routingKeys"]) >= 2  # the proxy's key, then the mediator's
    for i in range(200):
        a.say(a_conn, f"message {i:03d}")
    got = received(webhooks, 200)
    # A's ACA-Py sends its outbound queue concurrently, so the mediator may get them out of
    # order; the proxy adds no reordering (one spool, delivered head first) and no loss.
    assert sorted(got) == [f"message {i:03d}" for i in range(200)] and len(got) == 200
    status = proxy.counters()
    assert status["delivered"] >= 201 and status["spooled"] == 0 and status["dead_letters"] == 0, status
    assert status["agent_keys"] >= 1  # B registered its keys with the proxy, which kept them
    assert status["retrieval"] == "trust-ping"  # M does not disclose messagepickup/2.0
    # B took the first handshake the proxy offers, DID Exchange 1.0 (the seed's); M was invited with c_i=
    assert [c["connection_protocol"] for c in b.call("GET", "/connections")["results"]
            if c["their_label"] == "proxy-mediator"] == ["didexchange/1.0"]


def received(webhooks, count: int, seconds: float = 300) -> list:
    return wait_for(f"{count} basic messages at B", lambda: (lambda ms: ms if len(ms) >= count else None)(
        [body["content"] for topic, body in webhooks.events["b"] if topic == "basicmessages"]), seconds)


def test_nothing_is_lost_when_the_agent_stops_the_proxy_is_killed_and_the_mediator_restarts(deployment):
    """The seed drops what the agent fails to take and exits when the mediator's socket closes
    (proxy_mediator/message_retriever.py); here the agent stopped mid-stream, the proxy killed
    with -9 while messages wait in its spool, and the mediator restarted lose nothing."""
    mediator, proxy, webhooks, procs, tmp_path = deployment
    proxy.start()
    b = connect_agent_behind_the_proxy(proxy, webhooks, procs, tmp_path)
    invitation, a, a_conn = connect_outside_peer(b, webhooks, procs, tmp_path)
    b.active_connection()
    for i in range(20):
        a.say(a_conn, f"first {i:02d}")
    received(webhooks, 20)
    b.stop()  # the agent away: what comes waits in the proxy's spool
    for i in range(30):
        a.say(a_conn, f"while b is down {i:02d}")
    wait_for("messages spooled for the stopped agent", lambda: proxy.counters()["spooled"] >= 30)
    proxy.kill9()
    proxy.start()  # from its state directory: keys, both connections, the spool
    proxy.wait_status("ready")
    assert proxy.counters()["spooled"] >= 30
    b.start()
    got = received(webhooks, 50)
    mediator.stop()
    mediator.start()
    wait_for("the proxy's socket to the mediator again", lambda: proxy.counters()["mediator_socket"], 120)
    for i in range(20):
        a.say(a_conn, f"after the mediator restart {i:02d}")
    got = received(webhooks, 70)
    wanted = ([f"first {i:02d}" for i in range(20)] + [f"while b is down {i:02d}" for i in range(30)]
              + [f"after the mediator restart {i:02d}" for i in range(20)])
    assert sorted(set(got)) == sorted(wanted)  # nothing lost
    assert len(got) - len(set(got)) <= 1  # at most the one in delivery at the kill is repeated
    assert proxy.counters()["dead_letters"] == 0


def test_a_forward_on_another_connection_is_refused_with_the_seeds_problem_report(deployment):
    """proxy_mediator/protocols/routing.py: forward-from-unauthorized-connection."""
    mediator, proxy, webhooks, procs, tmp_path = deployment
    proxy.start()
    proxy.wait_status("setup")
    url = wait_for("agent invitation", lambda: http_json("GET", proxy.url + "/retrieve_agent_invitation")[1]
                   ["invitation_url"])
    answer = from_a_stranger(proxy, url, 'messages.new_message("routing/1.0/forward", to=KEY, msg={"x": 1})')
    assert answer["@type"].endswith("report-problem/1.0/problem-report")
    assert answer["description"]["code"] == "forward-from-unauthorized-connection"


def from_a_stranger(proxy, invitation_url: str, message: str) -> dict:
    """What the proxy answers (return route) to ``message`` (Python, with KEY = its invitation key)
    packed to its invitation key by a key it never met."""
    key = invitation_of(invitation_url)["services"][0]["recipientKeys"][0]
    script = STRANGER.replace("PROXY_URL", proxy.url + "/").replace("THE_KEY", repr(key)).replace("MESSAGE", message)
    child = Child("stranger", [proxy.argv[0], "-c", script])
    child.start()
    try:
        return json.loads(child.wait_for(r"^\{.*").group(0))
    finally:
        child.stop()


STRANGER = r"""
import json, os, urllib.request
from connectors.mediator_proxy.didcomm import envelope, messages
me = envelope.new_key()
KEY = THE_KEY
forward = messages.with_return_route(MESSAGE)
packed = envelope.pack(forward, [envelope.verkey_of(KEY)], me)
request = urllib.request.Request("PROXY_URL", data=packed, headers={"Content-Type": "application/didcomm-envelope-enc"})
with urllib.request.urlopen(request, timeout=30) as response:
    answer = envelope.unpack(response.read(), {envelope.verkey(me): me}).message
os.write(1, (json.dumps(answer) + "\n").encode())
"""


def test_didexchange_only_mediator_invitation_and_an_agent_that_asks_for_connections(tmp_path):
    """The seed takes a mediator's oob= invitation with DID Exchange (proxy_mediator/protocols/
    oob_didexchange.py); an agent that offers only Connections 1.0 is served too."""
    procs = []
    webhooks = Webhooks()
    m_port, m_ws = free_port(), free_port()
    mediator = AcaPy("m", tmp_path / "home-m", [f"http://127.0.0.1:{m_port}", f"ws://127.0.0.1:{m_ws}"], m_port,
                     webhooks, extra=["--inbound-transport", "ws", "127.0.0.1", str(m_ws), "--outbound-transport",
                                      "ws", "--open-mediation", "--enable-undelivered-queue"])
    procs.append(mediator)
    try:
        mediator.start()
        invite = mediator.call("POST", "/out-of-band/create-invitation", {
            "handshake_protocols": [DIDEXCHANGE], "use_public_did": False})["invitation_url"]
        assert invitation_of(invite)["handshake_protocols"] == [DIDEXCHANGE]
        proxy = DidcommProxy(tmp_path, {"MEDIATOR_INVITE": invite})
        procs.append(proxy)
        proxy.start()
        b = connect_agent_behind_the_proxy(proxy, webhooks, procs, tmp_path, handshakes=[CONNECTIONS])
        assert [c["connection_protocol"] for c in b.call("GET", "/connections")["results"]] == ["connections/1.0"]
        at_m = wait_for("M's connection with the proxy completed", lambda: [
            c for c in mediator.call("GET", "/connections")["results"] if c["state"] in ("completed", "active")])
        assert [c["connection_protocol"] for c in at_m] == ["didexchange/1.0"]
        invitation, a, a_conn = connect_outside_peer(b, webhooks, procs, tmp_path)
        for i in range(10):
            a.say(a_conn, f"message {i}")
        assert sorted(received(webhooks, 10)) == [f"message {i}" for i in range(10)]
    finally:
        for proc in reversed(procs):
            proc.stop()
        webhooks.server.shutdown()


def test_a_deployment_that_swaps_the_process_keeps_the_connections_of_the_seeds_askar_store(deployment):
    """ENABLE_STORE/REPO_URI/REPO_KEY: the store as proxy_mediator/store.py writes it (connections named
    by our verkey, connection.py's to_store() values, identifiers 'mediator' and 'agent'), made here from a
    set-up proxy's state; a new process on the same PORT and ENDPOINT with an empty state directory takes
    those connections, and A's messages reach B through the mediator as before."""
    mediator, proxy, webhooks, procs, tmp_path = deployment
    proxy.start()
    b = connect_agent_behind_the_proxy(proxy, webhooks, procs, tmp_path)
    invitation, a, a_conn = connect_outside_peer(b, webhooks, procs, tmp_path)
    a.say(a_conn, "before the swap")
    received(webhooks, 1)
    proxy.stop()
    repo = tmp_path / "seed-store.db"
    write_seed_store(tmp_path / "didcomm-state" / "state.sqlite3", f"sqlite://{repo}", "the-repo-key")
    (tmp_path / "swapped").mkdir()
    swapped = DidcommProxy(tmp_path / "swapped", {"ENABLE_STORE": "true", "REPO_URI": f"sqlite://{repo}",
                                                  "REPO_KEY": "the-repo-key"})
    swapped.port = proxy.port
    swapped.env.update(PORT=proxy.env["PORT"], ENDPOINT=proxy.env["ENDPOINT"])
    procs.append(swapped)
    swapped.start()
    swapped.wait_status("ready")
    assert "the-repo-key" not in swapped.output()
    assert "took the proxy-mediator's connections" in swapped.output()
    for i in range(5):
        a.say(a_conn, f"after the swap {i}")
    got = received(webhooks, 6)
    assert sorted(set(got)) == sorted(["before the swap"] + [f"after the swap {i}" for i in range(5)])
    # a wrong key is refused by name, without the key, and nothing is set up anew
    (tmp_path / "wrong").mkdir()
    wrong = DidcommProxy(tmp_path / "wrong", {"ENABLE_STORE": "1", "REPO_URI": f"sqlite://{repo}",
                                              "REPO_KEY": "not-the-key"})
    procs.append(wrong)
    wrong.start()
    wrong.wait_for("cannot open the proxy-mediator's store")
    assert wrong.status() == "setup" and "not-the-key" not in wrong.output()


def write_seed_store(state_db, uri: str, key: str) -> None:
    """The seed's store (proxy_mediator/store.py, connection.py) with the connections of our state."""
    import asyncio
    import sqlite3

    from aries_askar import Store

    from connectors.mediator_proxy.didcomm import envelope, messages

    with sqlite3.connect(state_db) as db:
        kv = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM kv")}
    secrets, mediator, agent = kv["didcomm.keys"], kv["didcomm.mediator"], kv["didcomm.agent"]

    def entry(role: str, theirs: dict, diddoc) -> tuple[str, dict]:
        ours = envelope.key_from_secret(bytes.fromhex(secrets[role]))
        verkey = envelope.verkey(ours)
        sigkey = ours.get_secret_bytes() + ours.get_public_bytes()  # the 64-byte signing key
        return verkey, {"state": "complete", "multiuse": False, "invitation_key": None,
                        "did": messages.peer_did(verkey), "verkey": verkey, "sigkey": envelope.b58encode(sigkey),
                        "diddoc": diddoc, "target": {"recipients": [theirs["verkey"]],
                                                     "endpoint": theirs["endpoints"][0]}}

    doc = messages.did_doc("did:sov:" + messages.peer_did(mediator["verkey"]), mediator["verkey"],
                           mediator["endpoints"][0])
    doc["service"] += [dict(doc["service"][0], id=f"{doc['id']};ws", serviceEndpoint=e)
                       for e in mediator["endpoints"][1:]]
    connections = dict([entry("mediator", mediator, doc), entry("agent", agent, None)])

    async def write():
        store = await Store.provision(uri, "kdf:argon2i", key, recreate=True)
        async with store.transaction() as txn:
            for verkey, value in connections.items():
                await txn.insert("connections", verkey, json.dumps(value).encode())
            names = {value["target"]["recipients"][0]: verkey for verkey, value in connections.items()}
            await txn.insert("identifiers", "mediator", names[mediator["verkey"]])
            await txn.insert("identifiers", "agent", names[agent["verkey"]])
            await txn.commit()
        await store.close()

    asyncio.run(write())


def test_a_mediator_that_answers_without_end_is_cut_off_by_name(tmp_path):
    """The answers to the proxy's requests (set-up, pickup) are read up to 40 MiB, then the connection
    is dropped: whatever sits at the invitation's address cannot fill the proxy's memory."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from connectors.mediator_proxy.didcomm import envelope

    sent = []

    class Endless(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/didcomm-envelope-enc")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(1600):  # 100 MiB, unless the proxy hangs up first
                    self.wfile.write(chunk)
                    sent.append(len(chunk))
            except OSError:
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}/"
    invitation = {"@type": "https://didcomm.org/connections/1.0/invitation", "@id": "x", "label": "m",
                  "recipientKeys": [envelope.verkey(envelope.new_key())], "serviceEndpoint": endpoint}
    proxy = DidcommProxy(tmp_path, {"MEDIATOR_INVITE": endpoint + "?c_i=" + base64.urlsafe_b64encode(
        json.dumps(invitation).encode()).decode()})
    try:
        proxy.start()
        proxy.wait_for("answer-too-large: the answer is over 41943040 bytes", 120)
        assert proxy.status() == "setup" and sum(sent) < 100 * 1024 * 1024
    finally:
        proxy.stop()
        server.shutdown()
