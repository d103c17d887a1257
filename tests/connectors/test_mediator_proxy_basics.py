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
    code, body, _ = proxy.request("GET", "/endpoint")
    assert code == 503 and body["error"] == "unavailable"
    for i in range(5):
        code, body, _ = proxy.request("POST", "/outbound/mailbox.agenta", b"out-%d" % i,
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
    code, body, _ = proxy.request("POST", "/outbound/not%20a%20uri!", b"x")
    assert code == 400 and "/outbound/<mailbox uri>" in body["message"]
    code, body, _ = proxy.request("POST", "/outbound/mailbox.x", b"x" * 11)
    assert code == 413 and body["error"] == "too_large"
    code, body, headers = proxy.request("GET", "/outbound/mailbox.x")
    assert code == 405 and headers["Allow"] == "POST"
    code, body, _ = proxy.request("GET", "/nothing")
    assert code == 404
    assert [proxy.request("POST", "/outbound/mailbox.x", b"m")[0] for _ in range(3)] == [202, 202, 507]
    code, body, _ = proxy.request("POST", "/outbound/mailbox.x", b"m")
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


LOCAL_API = [("GET", "/status"), ("GET", "/endpoint"), ("POST", "/outbound/mailbox.agenta"),
             ("GET", "/dead-letters"), ("POST", "/dead-letters/inbound/1/retry"),
             ("DELETE", "/dead-letters/outbound/1"), ("GET", "/"), ("GET", "/nothing")]


MAILBOX_CONFIG = CONFIG + """
[[realms.mailboxes]]
uri = "mailbox.{authid}"
token_secret_env = "MAILBOX_SECRET"
"""


def test_every_local_endpoint_needs_the_api_token(tmp_path, proxies):
    """Loopback is no boundary: without the local API's token nobody reads the
    mailbox's endpoint (it carries the mailbox token), sends as the agent or
    touches its dead letters."""
    router = RouterProcess(tmp_path, MAILBOX_CONFIG, env={"AGENTB_TICKET": TICKET,
                                                          "MAILBOX_SECRET": "mailbox-secret-0123456789"})
    router.start()
    proxies.append(router)
    proxy = proxy_for(tmp_path, router.ws_url, proxies)
    proxy.start()
    proxy.wait_status(lambda s: s["status"] == "ready")
    wrong = {
        "none": {},
        "wrong token": {"Authorization": "Bearer " + "x" * len(proxy.api_token)},
        "a prefix of it": {"Authorization": "Bearer " + proxy.api_token[:-1]},
        "not a bearer": {"Authorization": "Basic " + proxy.api_token},
        "the token alone": {"Authorization": proxy.api_token},
    }
    for method, path in LOCAL_API:
        for why, headers in wrong.items():
            code, body, answer_headers = http_json(method, proxy.url + path, b"m" if method == "POST" else None,
                                                   headers)
            assert (code, body["error"]) == (401, "unauthorized"), (method, path, why, code, body)
            assert answer_headers["WWW-Authenticate"] == 'Bearer realm="mediator-proxy"'
    status = proxy.status()
    assert status["outbound"]["spooled"] == 0 and status["outbound"]["sent"] == 0  # nothing went out
    code, body, _ = proxy.request("GET", "/endpoint")
    assert code == 200 and body["endpoint"].startswith(router.http_url + "/mailbox/mailbox.agentb/")
    mailbox_token = body["endpoint"].rsplit("/", 1)[1]
    assert len(mailbox_token) >= 32 and mailbox_token not in json.dumps(proxy.status())  # only /endpoint has it
    proxy.stop()
    assert proxy.api_token not in proxy.output() and mailbox_token not in proxy.output()


def test_a_non_utf8_authorization_header_is_refused_cleanly(tmp_path, router, proxies):
    import socket

    proxy = proxy_for(tmp_path, router.ws_url, proxies)
    proxy.start()
    with socket.create_connection(("127.0.0.1", proxy.http_port), timeout=10) as sock:
        sock.sendall(b"GET /endpoint HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


def test_without_a_configured_token_one_is_made_0600_in_the_state_dir_and_kept(tmp_path, router, proxies):
    proxy = proxy_for(tmp_path, router.ws_url, proxies, env={"MEDIATOR_PROXY_API_TOKEN": ""})
    proxy.start()
    path = proxy.state_dir / "api-token"
    token = path.read_text().strip()
    assert len(token) == 64 and int(token, 16) >= 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert f"the local API's token is in {path}\n" in proxy.output()
    proxy.api_token = token
    assert proxy.request("GET", "/status")[0] == 200
    proxy.stop()
    proxy.start(args=[])
    assert path.read_text().strip() == token and proxy.request("GET", "/status")[0] == 200
    proxy.stop()
    assert token not in proxy.output()


def test_an_api_token_file_is_used_when_private_and_refused_when_not(tmp_path, router, proxies):
    token_file = tmp_path / "api.token"
    token_file.write_text("a-token-from-a-file-0123456789\n")
    token_file.chmod(0o644)
    child = Child("proxy", twistd("mediator-proxy", "--state-dir", tmp_path / "s", "--agent-endpoint", "http://a/",
                                  "--api-token-file", token_file))
    child.start()
    assert child.proc.wait(60) != 0
    assert f"configuration error: --api-token-file: {token_file} is accessible by group or others" in child.output()
    token_file.chmod(0o600)
    proxy = proxy_for(tmp_path, router.ws_url, proxies, args=["--api-token-file", token_file],
                      env={"MEDIATOR_PROXY_API_TOKEN": "ignored-when-a-file-is-given"})
    proxy.start()
    proxy.api_token = "a-token-from-a-file-0123456789"
    assert proxy.request("GET", "/status")[0] == 200


@pytest.mark.parametrize("args, env, message", [
    ([], {"MEDIATOR_PROXY_API_TOKEN": "short"},
     "MEDIATOR_PROXY_API_TOKEN: the API token must be at least 16 characters"),
    (["--listen", "unix:/tmp/never-made.sock"], {},
     "--listen (MEDIATOR_PROXY_LISTEN): the socket would let every user connect (mode 0666); add :mode=600"),
    (["--listen", "unix:/tmp/never-made.sock:mode=9"], {}, "--listen (MEDIATOR_PROXY_LISTEN): mode='9' is not"),
])
def test_weak_local_api_settings_are_refused_at_start(tmp_path, args, env, message):
    child = Child("proxy", twistd("mediator-proxy", "--state-dir", tmp_path / "s", "--agent-endpoint", "http://a/",
                                  *args), env=env)
    child.start()
    assert child.proc.wait(60) != 0
    assert "configuration error: " + message in child.output()


def test_the_local_api_on_a_private_unix_socket(tmp_path, router):
    import http.client
    import socket
    import stat

    class UnixConnection(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(str(path))

    path = tmp_path / "api.sock"
    child = Child("proxy", twistd("mediator-proxy", "--state-dir", tmp_path / "s", "--agent-endpoint", "http://a/",
                                  "--router", router.ws_url, "--realm", "lab", "--authid", "agentb",
                                  "--listen", f"unix:{path}:mode=600"),
                  env={"MEDIATOR_PROXY_TICKET": TICKET, "MEDIATOR_PROXY_API_TOKEN": "unix-socket-api-token-0123"})
    child.start()
    try:
        child.wait_for("listening")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        answers = []
        for headers in ({}, {"Authorization": "Bearer unix-socket-api-token-0123"}):
            connection = UnixConnection("localhost", timeout=10)
            connection.request("GET", "/status", headers=headers)
            answers.append(connection.getresponse().status)
            connection.close()
        assert answers == [401, 200]
    finally:
        child.stop()
