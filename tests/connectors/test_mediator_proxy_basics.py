"""``twistd mediator-proxy`` as a process: options, remembered configuration,
the outbound spool while the router is away, a refused credential."""

import json
import sys
import time

import pytest
from .processes import ProxyProcess, RouterProcess, http_json, listener, twistd, Child

TICKET = "agentb-ticket-0123456789abcdef-secret"
CONFIG = listener() + """
[[realms]]
name = "lab"
[realms.auth.ticket]
[[realms.auth.ticket.principals]]
authid = "agentb"
role = "agent"
secret_env = "AGENTB_TICKET"
[realms.auth.anonymous]
role = "guest"
"""


@pytest.fixture
def router(tmp_path):
    proc = RouterProcess(tmp_path, CONFIG, env={"AGENTB_TICKET": TICKET})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def proxies():
    started = []
    yield started
    for proxy in started:
        proxy.stop()


def proxy_for(tmp_path, router_url, proxies, ticket=TICKET, args=(), env=None):
    env = dict({"MEDIATOR_PROXY_TICKET": ticket}, **(env or {}))
    proxy = ProxyProcess(tmp_path, ["--router", router_url, "--realm", "lab", "--authid", "agentb",
                                    "--agent-endpoint", "http://127.0.0.1:9/inbox", *args], env=env)
    proxies.append(proxy)
    return proxy


def test_help_names_every_option_and_its_variable():
    child = Child("help", twistd("mediator-proxy", "--help"))
    child.start()
    child.proc.wait(60)
    text = " ".join(child.output().split())
    for option in ("agent-endpoint", "listen", "mailbox", "public-url", "max-attempts", "max-inflight",
                   "agent-timeout", "agent-retry-initial", "agent-retry-max", "max-outbound-bytes",
                   "max-outbound-messages", "router",
                   "realm", "authid", "auth", "ticket-file", "jwt-file", "cryptosign-key", "tls-cert", "tls-key",
                   "ca-cert", "state-dir", "retry-max", "auth-retry"):
        assert f"--{option}=" in text
        assert f"[env MEDIATOR_PROXY_{option.upper().replace('-', '_')}]" in text


@pytest.mark.parametrize("args, message", [
    ([], "--agent-endpoint (MEDIATOR_PROXY_AGENT_ENDPOINT): required"),
    (["--agent-endpoint", "ftp://x"], "--agent-endpoint (MEDIATOR_PROXY_AGENT_ENDPOINT): 'ftp://x' is not an http"),
    (["--agent-endpoint", "http://a", "--max-attempts", "0"], "--max-attempts (MEDIATOR_PROXY_MAX_ATTEMPTS): must be above 0"),
    (["--agent-endpoint", "http://a", "--max-inflight", "5000"], "--max-inflight (MEDIATOR_PROXY_MAX_INFLIGHT): at most 1000"),
    (["--agent-endpoint", "http://a", "--router", "http://r"], "--router (MEDIATOR_PROXY_ROUTER): 'http://r' must start"),
])
def test_bad_configuration_names_the_option(tmp_path, args, message):
    child = Child("proxy", twistd("mediator-proxy", "--state-dir", tmp_path / "s", *args))
    child.start()
    assert child.proc.wait(60) != 0
    assert "configuration error: " + message in child.output()


def test_outbound_is_spooled_while_the_router_is_away_and_sent_in_order_when_back(tmp_path, router, proxies):
    """202 once on disk, survives kill -9 of the proxy, then put in spool order."""
    router.stop()
    proxy = proxy_for(tmp_path, router.ws_url, proxies)
    proxy.start()
    assert proxy.status()["status"] == "connecting"
    code, body, _ = http_json("GET", proxy.url + "/endpoint")
    assert code == 503 and body["error"] == "unavailable"
    for i in range(5):
        code, body, _ = http_json("POST", proxy.url + "/outbound/mailbox.agenta", b"out-%d" % i,
                                  {"Content-Type": "application/didcomm-envelope-enc"})
        assert code == 202 and body["mailbox"] == "mailbox.agenta", body
    assert proxy.status()["outbound"]["spooled"] == 5
    proxy.kill9()
    proxy.start()
    assert proxy.status()["outbound"]["spooled"] == 5
    proxy.kill9()

    received = []
    watcher = Child("watcher", [sys.executable, "-c", WATCHER, router.ws_url])
    router.start()
    watcher.start()
    try:
        watcher.wait_for("subscribed")
        proxy.start()  # outbound needs no mailbox API: a plain acknowledged publish reaches the watcher
        for i in range(5):
            received.append(json.loads(watcher.wait_for(r"^\{.*").group(0)))
        assert [r["body"] for r in received] == [f"out-{i}" for i in range(5)]
        assert {r["content_type"] for r in received} == {"application/didcomm-envelope-enc"}
        proxy.wait_status(lambda s: s["outbound"]["spooled"] == 0 and s["outbound"]["sent"] == 5)
    finally:
        watcher.stop()


WATCHER = r"""
import json, os, sys
from autobahn.twisted.component import Component, run
c = Component(transports=[{"url": sys.argv[1], "serializers": ["cbor"]}], realm="lab",
              authentication={"anonymous": {}})
@c.on_join
async def joined(session, details):
    def got(body, content_type=None):
        say(json.dumps({"body": body.decode(), "content_type": content_type}))
    await session.subscribe(got, "mailbox.agenta")
    say("subscribed")
def say(line):  # stdout itself goes to the log once logging starts
    os.write(1, (line + "\n").encode())
run([c], log_level="warn")
"""


def test_bad_outbound_requests(tmp_path, router, proxies):
    router.stop()  # nothing leaves the spool
    proxy = proxy_for(tmp_path, router.ws_url, proxies, args=["--max-outbound-bytes", "10",
                                                              "--max-outbound-messages", "2"])
    proxy.start()
    code, body, _ = http_json("POST", proxy.url + "/outbound/not%20a%20uri!", b"x")
    assert code == 400 and "/outbound/<mailbox uri>" in body["message"]
    code, body, _ = http_json("POST", proxy.url + "/outbound/mailbox.x", b"x" * 11)
    assert code == 413 and body["error"] == "too_large"
    code, body, headers = http_json("GET", proxy.url + "/outbound/mailbox.x")
    assert code == 405 and headers["Allow"] == "POST"
    code, body, _ = http_json("GET", proxy.url + "/nothing")
    assert code == 404
    assert [http_json("POST", proxy.url + "/outbound/mailbox.x", b"m")[0] for _ in range(3)] == [202, 202, 507]
    code, body, _ = http_json("POST", proxy.url + "/outbound/mailbox.x", b"m")
    assert code == 507 and "--max-outbound-messages" in body["message"]


def test_restart_with_no_options_resumes_the_remembered_configuration(tmp_path, router, proxies):
    proxy = proxy_for(tmp_path, router.ws_url, proxies, args=["--max-attempts", "7"])
    proxy.start()
    first = proxy.status()
    proxy.stop()
    proxy.start(args=[])  # only --state-dir (and --listen, to find it)
    again = proxy.status()
    assert again["router"]["router"] == router.ws_url and again["router"]["realm"] == "lab"
    assert again["agent"]["endpoint"] == first["agent"]["endpoint"] == "http://127.0.0.1:9/inbox"
    assert again["router"]["authid"] == "agentb"
    assert TICKET not in proxy.output()
    # the ticket was not remembered: it comes from the environment each time
    with open(proxy.state_dir / "state.sqlite3", "rb") as f:
        assert TICKET.encode() not in f.read()


def test_wrong_ticket_is_one_clear_error_and_slow_retries(tmp_path, router, proxies):
    proxy = proxy_for(tmp_path, router.ws_url, proxies, ticket="wrong-ticket-do-not-log",
                      args=["--auth-retry", "1", "--retry-initial", "0.05"])
    proxy.start()
    status = proxy.wait_status(lambda s: (s["router"]["last_error"] or {}).get("kind") == "auth", what="auth error")
    assert status["status"] == "connecting"
    assert status["last_error"]["message"].startswith("wamp.error.authentication_failed")
    started = time.monotonic()
    first = status["router"]["attempts"]
    proxy.wait_status(lambda s: s["router"]["attempts"] >= first + 2, what="two more attempts")
    assert time.monotonic() - started >= 1.5  # never faster than --auth-retry (1 s), retry-initial is 0.05
    proxy.stop()
    out = proxy.output()
    assert out.count("the router refused us") == 1
    assert "wamp.error.authentication_failed" in out and "wrong-ticket-do-not-log" not in out
