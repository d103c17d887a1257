"""The agents the seed serves: two ACA-Py agents, B behind the mediator-proxy.

Agent A is reachable directly. Agent B advertises the router's
``POST /mailbox/{name}`` URL (from the proxy's ``/endpoint``) as its DIDComm
endpoint; its inbound HTTP port is reached only by the proxy. An
out-of-band invitation from A, DID Exchange, then basic messages both ways,
also while B is down and across a ``kill -9`` of the router; B's webhook
shows what arrived.

ACA-Py (``aries-cloudagent[askar]==0.12.8``) runs from its own virtualenv,
named by ``RELAYROUTER_ACAPY`` (the ``aca-py`` executable; scripts/test.sh
installs it). Without it the test is skipped, and fails under CI=true.
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ..ports import free_port
from .processes import Child, ProxyProcess, RouterProcess, http_json
from .test_mediator_proxy_e2e import CONFIG, MAILBOX_SECRET, TICKETS

ACAPY = os.environ.get("RELAYROUTER_ACAPY", os.path.expanduser("~/.cache/relayrouter/acapy-0.12.8/bin/aca-py"))
DIDEXCHANGE = "https://didcomm.org/didexchange/1.0"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module", autouse=True)
def acapy_installed():
    if not os.access(ACAPY, os.X_OK):
        message = f"ACA-Py not installed at {ACAPY} (scripts/test.sh installs it; set RELAYROUTER_ACAPY)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: a missing install is an error)", pytrace=False)
        pytest.skip(message)


class Webhooks:
    """What the agents report: ``events[label]`` is a list of (topic, body)."""

    def __init__(self) -> None:
        self.events: dict[str, list] = {"a": [], "b": []}
        self.changed = threading.Condition()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                parts = self.path.strip("/").split("/")  # <label>/topic/<topic>
                with hooks.changed:
                    hooks.events.setdefault(parts[0], []).append((parts[2] if len(parts) > 2 else "", body))
                    hooks.changed.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait(self, label: str, predicate, seconds: float = 90.0, what: str = "a webhook"):
        deadline = time.monotonic() + seconds
        with self.changed:
            while True:
                found = [body for topic, body in self.events[label] if predicate(topic, body)]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"agent {label}: no {what} within {seconds:.0f} s;"
                                         f" got {[t for t, _ in self.events[label]]}")
                self.changed.wait(min(left, 1.0))

    def basic_message(self, label: str, content: str, seconds: float = 90.0):
        return self.wait(label, lambda t, b: t == "basicmessages" and b.get("content") == content, seconds,
                         f"basic message {content!r}")


class AcaPy(Child):
    """One ACA-Py agent: askar wallet under its own HOME, no ledger, HTTP in and out."""

    def __init__(self, label: str, home, endpoint: str, inbound_port: int, webhooks: Webhooks,
                 extra=()) -> None:
        self.admin_port = free_port()
        self.inbound_port = inbound_port
        home.mkdir(exist_ok=True)
        super().__init__(f"aca-py {label}", [
            ACAPY, "start", "--label", f"agent-{label}", "--inbound-transport", "http", "127.0.0.1",
            str(inbound_port), "--outbound-transport", "http", "--endpoint",
            *([endpoint] if isinstance(endpoint, str) else endpoint), *extra,
            "--admin", "127.0.0.1", str(self.admin_port), "--admin-insecure-mode", "--no-ledger",
            "--wallet-type", "askar", "--wallet-name", f"wallet-{label}", "--wallet-key", f"key-{label}",
            "--auto-provision", "--auto-accept-invites", "--auto-accept-requests", "--auto-ping-connection",
            "--webhook-url", f"{webhooks.url}/{label}", "--log-level", "info"],
            env={"HOME": str(home)})
        self.env.pop("PYTHONPATH", None)

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self) -> None:
        super().start()
        deadline = time.monotonic() + 120
        while True:
            try:
                code, body, _ = http_json("GET", self.admin + "/status/ready")
                if code == 200 and body.get("ready"):
                    return
            except OSError:
                pass
            if not self.running:
                raise AssertionError(f"{self.name} exited\n{self.describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} not ready within 120 s\n{self.describe()}")
            time.sleep(0.2)

    def call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        code, answer, _ = http_json(method, self.admin + path, data, {"Content-Type": "application/json"})
        assert 200 <= code < 300, (code, answer)
        return answer

    def active_connection(self, seconds: float = 90.0) -> str:
        deadline = time.monotonic() + seconds
        while True:
            results = self.call("GET", "/connections?state=active")["results"]
            if results:
                return results[0]["connection_id"]
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no active connection within {seconds:.0f} s:"
                                     f" {self.call('GET', '/connections')}")
            time.sleep(0.2)

    def say(self, connection_id: str, content: str) -> None:
        self.call("POST", f"/connections/{connection_id}/send-message", {"content": content})


@pytest.fixture
def setup(tmp_path):
    procs = []
    router = RouterProcess(tmp_path, CONFIG, env={"AGENTB_TICKET": TICKETS["agentb"],
                                                "AGENTA_TICKET": TICKETS["agenta"],
                                                "MAILBOX_TOKEN_SECRET": MAILBOX_SECRET})
    procs.append(router)
    router.start()
    webhooks = Webhooks()
    b_port = free_port()
    proxy = ProxyProcess(tmp_path, ["--router", router.ws_url, "--realm", "lab", "--authid", "agentb",
                                    "--agent-endpoint", f"http://127.0.0.1:{b_port}/", "--retry-initial", "0.1",
                                    "--retry-max", "1", "--agent-retry-initial", "0.1", "--agent-retry-max", "1"],
                         env={"MEDIATOR_PROXY_TICKET": TICKETS["agentb"]})
    procs.append(proxy)
    proxy.start()
    proxy.wait_status(lambda s: s["status"] == "ready", what="ready")
    b_endpoint = proxy.get("/endpoint")[1]["endpoint"]
    a_port = free_port()
    a = AcaPy("a", tmp_path / "home-a", f"http://127.0.0.1:{a_port}", a_port, webhooks)
    b = AcaPy("b", tmp_path / "home-b", b_endpoint, b_port, webhooks)
    procs += [a, b]
    a.start()
    b.start()
    yield router, proxy, a, b, webhooks, b_endpoint
    for proc in reversed(procs):
        proc.stop()
    webhooks.server.shutdown()


def test_two_acapy_agents_talk_through_the_mailbox(setup):
    router, proxy, a, b, webhooks, b_endpoint = setup
    assert b_endpoint.startswith(router.http_url + "/mailbox/mailbox.agentb/") and "?" not in b_endpoint

    invitation = a.call("POST", "/out-of-band/create-invitation",
                        {"handshake_protocols": [DIDEXCHANGE], "use_public_did": False})["invitation"]
    b.call("POST", "/out-of-band/receive-invitation", invitation)
    a_conn, b_conn = a.active_connection(), b.active_connection()
    assert proxy.status()["agent"]["delivered"] >= 1  # A's DID Exchange response came through the mailbox

    a.say(a_conn, "hello b, via the mailbox")
    webhooks.basic_message("b", "hello b, via the mailbox")
    b.say(b_conn, "hello a, directly")
    webhooks.basic_message("a", "hello a, directly")

    # B is down while A sends: the message waits in the router's mailbox
    b.stop()
    a.say(a_conn, "while you were away")
    status = proxy.wait_status(lambda s: s["agent"]["retries"] >= 1, 60, "retries while B is down")
    assert status["mailbox"]["router"]["depth"] >= 1
    b.start()
    webhooks.basic_message("b", "while you were away")

    # the router is killed with -9 and restarted between messages
    router.kill9()
    router.start()
    proxy.wait_status(lambda s: s["status"] == "ready", 60, "ready after the router restart")
    a.say(a_conn, "after the router came back")
    webhooks.basic_message("b", "after the router came back")
    b.say(b_conn, "still here")
    webhooks.basic_message("a", "still here")

    final = proxy.status()
    assert final["dead_letters"]["count"] == 0 and final["mailbox"]["router"]["depth"] == 0
