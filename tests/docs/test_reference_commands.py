"""The command blocks of the reference pages, run as written (tests/docs/reference.py says how):
the relay's, against its documented configuration and the machine its commands name; a connector's,
against the router its tutorial sets up (that section of the tutorial run first, as written)."""

import shlex
import shutil
import tempfile
from pathlib import Path

import pytest

from . import reference, tutorial

DOCS = Path(__file__).resolve().parents[2] / "docs"
RELAY = DOCS / "reference" / "relay.md"
OPERATIONS = DOCS / "reference" / "operations.md"
PAIRS, PAIRING_AGENT = DOCS / "reference" / "pairs.md", DOCS / "reference" / "pairing-agent.md"
CLI, MEDIATOR_PROXY = DOCS / "reference" / "cli.md", DOCS / "reference" / "mediator-proxy.md"
TUTORIALS = DOCS / "tutorials"

pytestmark = pytest.mark.timeout(900)

# The relay page's machine: the rigs beside the experiment that its `relayrouter host` lines
# name, each answering a line with "set" in it the way its --command rig does (sed s/set/SET/),
# and the lab machine's sshd with its "pi" account that its tunnel lines reach.
WS_RIG = r"""
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor

class Rig(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload.replace(b"set", b"SET"), isBinary)

factory = WebSocketServerFactory()
factory.protocol = Rig
reactor.listenTCP(8765, factory, interface="127.0.0.1")
reactor.run()
"""

RELAY_WORLD = reference.FRESH_DEV + reference.sshd("pi") + rf"""
socat TCP-LISTEN:5000,bind=127.0.0.1,fork,reuseaddr EXEC:'sed -u s/set/SET/' &
socat PTY,link=/dev/ttyACM0,raw,echo=0 EXEC:'sed -u s/set/SET/' &
cat > "$WORLD/ws_rig.py" <<'EOF'
{WS_RIG}
EOF
python3 "$WORLD/ws_rig.py" > "$WORLD/ws_rig.log" 2>&1 &
"""


@pytest.fixture
def base():
    path = Path(tempfile.mkdtemp(prefix="reference-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_relay_page_runs_as_written(base):
    reference.run([RELAY], base, RELAY_WORLD)


def test_the_pairing_agent_walkthrough_runs_as_written_after_the_pairs_page(base):
    """The Pairs page saves pairs.toml and issues the certificates; the pairing agent's page runs
    the router, a REST service and both agents on them, on the ports it names."""
    reference.run([PAIRS, PAIRING_AGENT], base)


def test_the_bridge_try_it_runs_as_written(base):
    """Operations' "Try it: Crossbar's clients, unchanged": bridge.toml, the router, the webhook's
    curl and crossbarhttp's call and publish."""
    reference.run([OPERATIONS], base)


def test_the_cli_page_runs_as_written(base):
    reference.run([CLI], base)


# The state directory the mediator proxy's page names, which its user may write
STATE_UNDER_VAR_LIB = "mount -t tmpfs -o mode=755 var-lib /var/lib\nmkdir -m 700 /var/lib/{name}\n"


def test_the_mediator_proxy_page_runs_as_written_against_the_tutorials_router(base):
    reference.run([MEDIATOR_PROXY], base, STATE_UNDER_VAR_LIB.format(name="mediator-proxy"),
                  before=reference.section(TUTORIALS / "mediator-proxy.md", "## The router"))


def test_the_iot_agent_page_runs_as_written_against_the_tutorials_router_and_mosquitto(base):
    iot = TUTORIALS / "iot-agent.md"
    set_up = [step for heading in ("## Secrets", "## Mosquitto with dynamic security", "## The router")
              for step in reference.section(iot, heading)]
    reference.run([DOCS / "reference" / "iot-agent.md"], base, before=set_up)


def test_the_performance_pages_micro_benchmark_runs_as_written_from_a_checkout(base):
    """Its other commands are measurements the page says are not run (see the test below)."""
    checkout = Path(__file__).resolve().parents[2]
    reference.run([DOCS / "explanation" / "performance.md"], base, f"ln -s {shlex.quote(str(checkout / 'bench'))} bench\n", timeout=600)


# decrypt-search's page takes a router for granted, with its realm trade, the tickets its operator
# handed acme and globex (acme.ticket, globex.ticket) and the history of com.orders.
DECRYPT_SEARCH_ROUTER = r"""
cat > "$WORLD/router.toml" <<'EOF'
[[listeners]]
type = "websocket"
endpoint = "tcp:8080:interface=127.0.0.1"

[[realms]]
name = "trade"

[realms.auth.ticket]
principals = [{authid = "acme-connector", role = "connector", secret_env = "ACME_TICKET"},
              {authid = "globex-connector", role = "connector", secret_env = "GLOBEX_TICKET"}]

[[realms.history]]
uri = "com.orders."
match = "prefix"
limit = 100000

[[realms.roles]]
name = "connector"
rules = [{uri = "com.orders.", match = "prefix", allow = ["subscribe"]},
         {uri = "relayrouter.history.read", match = "exact", allow = ["call"]}]
EOF
export ACME_TICKET=$(head -c 24 /dev/urandom | base64) GLOBEX_TICKET=$(head -c 24 /dev/urandom | base64)
(umask 077; printf %s "$ACME_TICKET" > acme.ticket; printf %s "$GLOBEX_TICKET" > globex.ticket)
(cd "$WORLD" && twistd --pidfile router.pid --logfile router.log relayrouter --config router.toml)
curl --silent --fail --retry 20 --retry-connrefused --retry-delay 1 http://127.0.0.1:8080/ready
"""


def test_the_decrypt_search_page_runs_as_written_one_organisation_then_two(base):
    reference.run([DOCS / "reference" / "decrypt-search.md"], base,
                  STATE_UNDER_VAR_LIB.format(name="decrypt-search") + DECRYPT_SEARCH_ROUTER)


@pytest.mark.parametrize("page", [RELAY, PAIRS, PAIRING_AGENT, OPERATIONS, CLI, MEDIATOR_PROXY,
                                  DOCS / "reference" / "connectors.md", DOCS / "reference" / "security.md",
                                  DOCS / "compatibility" / "practable.md", DOCS / "compatibility" / "micronets.md",
                                  DOCS / "compatibility" / "crossbar.md"],
                         ids=lambda p: p.stem)
def test_the_relay_pairing_and_bridge_pages_have_no_command_left_unrun(page):
    """Every block of commands on these pages is a console block the tests above run (a block
    of commands shown only for reading would be one no test holds to its word)."""
    text = page.read_text()
    unmarked = [m["body"] for m in tutorial.FENCE.finditer(text) if m["info"].strip() in ("", "sh", "shell", "bash")]
    assert unmarked == []


def test_the_relay_page_shows_every_tool():
    commands = [s.text for s in tutorial.steps(RELAY) if isinstance(s, tutorial.Command)]
    for needed in ("twistd relayrouter --config relay.toml", "relayrouter token", "--command", "--tcp",
                   "--websocket", "--device", "--ts", "--log", "--check", "tunnel host", "tunnel client",
                   "ProxyCommand", "ffmpeg"):
        assert any(needed in c for c in commands), needed
