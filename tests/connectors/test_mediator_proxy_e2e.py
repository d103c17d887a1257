"""``twistd mediator-proxy`` end to end: the real router with a mailbox, the real
proxy process, a real twisted.web agent (agent.py), all on loopback.

Messages are put the way an outside DIDComm agent puts them: ``POST`` to the
public endpoint the proxy hands out (the router's ``/mailbox/{name}`` URL).
"""

import urllib.error
import urllib.request

import pytest

from .processes import AgentProcess, ProxyProcess, RouterProcess, http_json, listener

TICKETS = {"agentb": "agentb-ticket-0123456789abcdef", "agenta": "agenta-ticket-0123456789abcdef"}
MAILBOX_SECRET = "mailbox-token-secret-0123456789"
DIDCOMM = "application/didcomm-envelope-enc"
CONFIG = listener() + """
[[realms]]
name = "lab"
[realms.auth.ticket]
[[realms.auth.ticket.principals]]
authid = "agentb"
role = "agent"
secret_env = "AGENTB_TICKET"
[[realms.auth.ticket.principals]]
authid = "agenta"
role = "agent"
secret_env = "AGENTA_TICKET"

# With roles, the proxy's role needs this (README: twistd mediator-proxy): its own
# mailbox, and the mailboxes it sends to by name
[[realms.roles]]
name = "agent"
[[realms.roles.rules]]
uri = "relayrouter.mailbox."
match = "prefix"
allow = ["call"]
[[realms.roles.rules]]
uri = "mailbox.{authid}"
allow = ["publish"]
[[realms.roles.rules]]
uri = "mailbox.agenta"
allow = ["publish"]

[[realms.mailboxes]]
uri = "mailbox.{authid}"
visibility_timeout = 60
http = "token"
token_secret_env = "MAILBOX_TOKEN_SECRET"
"""


@pytest.fixture
def router(tmp_path):
    proc = RouterProcess(tmp_path, CONFIG, env={"AGENTB_TICKET": TICKETS["agentb"],
                                                "AGENTA_TICKET": TICKETS["agenta"],
                                                "MAILBOX_TOKEN_SECRET": MAILBOX_SECRET})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def agent():
    proc = AgentProcess()
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def started():
    procs = []
    yield procs
    for proc in procs:
        proc.stop()


def start_proxy(tmp_path, router, agent, started, authid="agentb", args=()):
    proxy = ProxyProcess(tmp_path / authid, [
        "--router", router.ws_url, "--realm", "lab", "--authid", authid, "--agent-endpoint", agent.url,
        "--agent-retry-initial", "0.05", "--agent-retry-max", "0.5", "--retry-initial", "0.05",
        "--retry-max", "0.5", *args], env={"MEDIATOR_PROXY_TICKET": TICKETS[authid]})
    (tmp_path / authid).mkdir(exist_ok=True)
    started.append(proxy)
    proxy.start()
    proxy.wait_status(lambda s: s["status"] == "ready", what="ready")
    return proxy


def endpoint(proxy) -> str:
    code, body, _ = proxy.request("GET", "/endpoint")
    assert code == 200, body
    assert body["mailbox"] == "mailbox.agentb" and body["realm"] == "lab"
    return body["endpoint"]


def put(url: str, body: bytes, content_type: str = DIDCOMM) -> int:
    """POST to the public endpoint like an outside agent; the message id of the 202."""
    code, answer, _ = http_json("POST", url, body, {"Content-Type": content_type})
    assert code == 202, (code, answer)
    return answer["id"]


def first_seen(messages) -> list[int]:
    ids = []
    for m in messages:
        if m["id"] not in ids:
            ids.append(m["id"])
    return ids


def test_each_message_reaches_the_agent_in_order_as_it_was_put(tmp_path, router, agent, started):
    proxy = start_proxy(tmp_path, router, agent, started)
    url = endpoint(proxy)
    assert url.startswith(router.http_url + "/mailbox/mailbox.agentb/") and "?" not in url
    ids = [put(url, b"hello %d" % i) for i in range(20)]
    ids.append(put(url, b'{"plain": "json"}', "application/json"))
    seen = agent.wait_messages(lambda ms: len(ms) >= 21)
    assert [m["id"] for m in seen] == ids
    assert [m["body"] for m in seen] == [f"hello {i}" for i in range(20)] + ['{"plain": "json"}']
    assert [m["content_type"] for m in seen] == [DIDCOMM] * 20 + ["application/json"]
    assert {m["mailbox"] for m in seen} == {"mailbox.agentb"} and {m["attempt"] for m in seen} == {1}
    status = proxy.wait_status(lambda s: s["agent"]["delivered"] == 21)
    assert status["mailbox"]["pending"] == 0 and status["mailbox"]["router"]["depth"] == 0
    assert status["dead_letters"]["count"] == 0
    token = url.rsplit("/", 1)[1]
    assert MAILBOX_SECRET not in proxy.output() and token not in proxy.output() and token not in router.output()


def test_agent_down_for_a_while_then_everything_arrives_in_order(tmp_path, router, agent, started):
    proxy = start_proxy(tmp_path, router, agent, started)
    url = endpoint(proxy)
    agent.stop()
    ids = [put(url, b"while away %d" % i) for i in range(15)]
    status = proxy.wait_status(lambda s: s["agent"]["retries"] >= 3, what="retries while the agent is down")
    assert status["agent"]["up"] is False and "message %d" % ids[0] in status["agent"]["last_error"]["message"]
    assert status["mailbox"]["router"]["depth"] == 15  # nothing acknowledged while nobody took it
    agent.start()
    seen = agent.wait_messages(lambda ms: len(first_seen(ms)) >= 15)
    assert first_seen(seen) == ids and len(seen) == 15
    proxy.wait_status(lambda s: s["agent"]["up"] is True and s["mailbox"]["router"]["depth"] == 0)


def test_router_kill_9_mid_stream_loses_no_acknowledged_message(tmp_path, router, agent, started):
    proxy = start_proxy(tmp_path, router, agent, started)
    url = endpoint(proxy)
    acknowledged = []
    for i in range(120):
        if i == 50:
            router.kill9()
            router.start()  # same port and state: the endpoint stays right
        acknowledged.append(put(url, b"stream %d" % i))
    try:
        seen = agent.wait_messages(lambda ms: set(acknowledged) <= {m["id"] for m in ms}, 20,
                                   "every acknowledged message")
    except AssertionError:
        print(proxy.status())
        print(proxy.output()[-5000:])
        print(router.output()[-3000:])
        raise
    order = first_seen(seen)
    assert order == sorted(order)
    assert [m for m in order if m in acknowledged] == acknowledged
    proxy.wait_status(lambda s: s["status"] == "ready" and s["router"]["router"] == router.ws_url)


def test_proxy_kill_9_mid_delivery_repeats_only_the_unacknowledged_message(tmp_path, router, agent, started):
    proxy = start_proxy(tmp_path, router, agent, started)
    url = endpoint(proxy)
    ids = [put(url, body) for body in (b"one", b"two", b"SLOW three", b"four", b"five")]
    agent.wait_messages(lambda ms: ids[2] in [m["id"] for m in ms], what="the slow message in delivery")
    proxy.kill9()
    proxy.start()
    seen = agent.wait_messages(lambda ms: ids[4] in [m["id"] for m in ms], 60)
    assert [m["id"] for m in seen] == [ids[0], ids[1], ids[2], ids[2], ids[3], ids[4]]
    assert [m["attempt"] for m in seen if m["id"] == ids[2]] == [1, 2]


def test_refused_message_becomes_a_dead_letter_and_the_rest_keep_flowing(tmp_path, router, agent, started):
    proxy = start_proxy(tmp_path, router, agent, started, args=["--max-attempts", "3"])
    url = endpoint(proxy)
    ids = [put(url, body) for body in (b"first", b"REFUSE second", b"third")]
    seen = agent.wait_messages(lambda ms: ids[2] in [m["id"] for m in ms])
    assert [m["id"] for m in seen] == [ids[0], ids[1], ids[1], ids[1], ids[2]]
    status = proxy.wait_status(lambda s: s["dead_letters"]["count"] == 1)
    dead = status["dead_letters"]["recent"][0]
    assert (dead["id"], dead["status"], dead["attempts"]) == (ids[1], 400, 3) and "no thanks" in dead["reason"]
    code, letters, _ = proxy.request("GET", "/dead-letters?body=1")
    assert code == 200 and len(letters["inbound"]) == 1 and letters["outbound"] == []
    import base64

    assert base64.b64decode(letters["inbound"][0]["body_base64"]) == b"REFUSE second"
    assert letters["inbound"][0]["content_type"] == DIDCOMM
    proxy.stop()
    proxy.start()
    status = proxy.wait_status(lambda s: s["status"] == "ready")
    assert status["dead_letters"]["count"] == 1 and status["mailbox"]["router"]["depth"] == 0
    assert len(agent.messages()) == 5  # acknowledged after it was kept: not delivered again

    seq = dead["seq"]
    code, body, _ = proxy.request("POST", f"/dead-letters/inbound/{seq}/retry")
    assert code == 502 and "still kept" in body["message"] and proxy.status()["dead_letters"]["count"] == 1
    http_json("POST", agent.url.rsplit("/", 1)[0] + "/control/accept")
    code, body, _ = proxy.request("POST", f"/dead-letters/inbound/{seq}/retry")
    assert (code, body["delivered"], body["id"]) == (200, True, ids[1])
    assert agent.messages()[-1]["id"] == ids[1] and agent.messages()[-1]["body"] == "REFUSE second"
    status = proxy.status()
    assert status["dead_letters"] == {"count": 0, "recent": []}
    assert proxy.request("DELETE", f"/dead-letters/inbound/{seq}")[0] == 404
    assert proxy.request("POST", f"/dead-letters/sideways/1/retry")[0] == 400


def test_outbound_reaches_another_agents_mailbox(tmp_path, router, agent, started):
    other = AgentProcess()
    other.start()
    try:
        proxy_b = start_proxy(tmp_path, router, agent, started)
        start_proxy(tmp_path, router, other, started, authid="agenta")
        for i in range(3):
            code, body, _ = proxy_b.request("POST", "/outbound/mailbox.agenta", b"to a %d" % i,
                                      {"Content-Type": DIDCOMM})
            assert code == 202
        seen = other.wait_messages(lambda ms: len(ms) >= 3)
        assert [m["body"] for m in seen] == ["to a 0", "to a 1", "to a 2"]
        assert {m["content_type"] for m in seen} == {DIDCOMM} and {m["mailbox"] for m in seen} == {"mailbox.agenta"}
        proxy_b.wait_status(lambda s: s["outbound"]["sent"] == 3 and s["outbound"]["spooled"] == 0)
    finally:
        other.stop()


def test_outside_senders_without_the_token_are_refused(tmp_path, router, agent, started):
    proxy = start_proxy(tmp_path, router, agent, started)
    url = endpoint(proxy)
    bare = url.rsplit("/", 1)[0] + "?realm=lab"
    request = urllib.request.Request(bare, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 401
    assert agent.messages() == []


def test_public_url_replaces_the_routers_address_in_the_endpoint(tmp_path, router, agent, started):
    proxy = start_proxy(tmp_path, router, agent, started)
    path = "/mailbox/" + endpoint(proxy).split("/mailbox/", 1)[1]
    proxy.stop()
    proxy.start(args=["--public-url", "https://relay.example.com/"])  # remembered options, one changed
    proxy.wait_status(lambda s: s["status"] == "ready", what="ready")
    assert proxy.request("GET", "/endpoint")[1]["endpoint"] == "https://relay.example.com" + path


def test_outbound_the_router_refuses_becomes_an_outbound_dead_letter(tmp_path, router, agent, started):
    proxy = start_proxy(tmp_path, router, agent, started, args=["--max-outbound-bytes", "3000000"])
    too_large = b"x" * 1_100_000  # over the mailbox's max_message_bytes (1 MiB)
    for body in (too_large, b"fine"):
        assert proxy.request("POST", "/outbound/mailbox.agenta", body,
                         {"Content-Type": "text/plain"})[0] == 202
    status = proxy.wait_status(lambda s: s["outbound"]["dead_letters"] == 1 and s["outbound"]["sent"] == 1)
    assert "mailbox_message_too_large" in status["outbound"]["last_error"]["message"]
    letters = proxy.request("GET", "/dead-letters")[1]["outbound"]
    assert len(letters) == 1 and letters[0]["size"] == len(too_large) and letters[0]["mailbox"] == "mailbox.agenta"
    seq = letters[0]["seq"]
    code, body, _ = proxy.request("POST", f"/dead-letters/outbound/{seq}/retry")
    assert code == 202 and body["mailbox"] == "mailbox.agenta"
    proxy.wait_status(lambda s: s["outbound"]["dead_letters"] == 1 and s["outbound"]["spooled"] == 0
                      and proxy.request("GET", "/dead-letters")[1]["outbound"][0]["seq"] != seq)
    again = proxy.request("GET", "/dead-letters")[1]["outbound"][0]["seq"]
    assert proxy.request("DELETE", f"/dead-letters/outbound/{again}")[1] == {"removed": again}
    assert proxy.status()["outbound"]["dead_letters"] == 0
