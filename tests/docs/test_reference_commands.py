"""The command blocks of the reference pages, run as written (tests/docs/reference.py says how):
the relay's, against its documented configuration and the machine its commands name; a connector's,
against the router its tutorial sets up (that section of the tutorial run first, as written) or the
router or mediator the page takes for granted; and a test that no page of the site or README.md
shows a block of commands that no test runs, but for the two pages that say why."""

import os
import re
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
PROXY_MEDIATOR = DOCS / "compatibility" / "proxy-mediator.md"

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


@pytest.mark.scenario  # bench/micro.py as the page runs it
def test_the_performance_pages_micro_benchmark_runs_as_written_from_a_checkout(base):
    """Its other commands are measurements the page says are not run (see the test below)."""
    checkout = Path(__file__).resolve().parents[2]
    world = f"ln -s {shlex.quote(str(checkout / 'bench'))} bench\n"
    reference.run([DOCS / "explanation" / "performance.md"], base, world, timeout=600)


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


ACAPY = os.environ.get("RELAYROUTER_ACAPY", os.path.expanduser("~/.cache/relayrouter/acapy-0.12.8/bin/aca-py"))
# The DIDComm mode's page takes a mediator for granted at mediator:8000 (ACA-Py, open mediation),
# its invitation in mediator.invite, and the proxy's host name; its state directory as above.
MEDIATOR_WORLD = STATE_UNDER_VAR_LIB.format(name="mediator-proxy") + rf"""
{{ cat /etc/hosts; echo "127.0.0.1 proxy mediator"; }} > "$WORLD/hosts"
mount --bind "$WORLD/hosts" /etc/hosts
mkdir "$WORLD/mediator"
HOME="$WORLD/mediator" env -u PYTHONPATH {shlex.quote(ACAPY)} start --label mediator \
  --inbound-transport http 127.0.0.1 8000 --outbound-transport http --endpoint http://mediator:8000 \
  --open-mediation --enable-undelivered-queue --admin 127.0.0.1 8001 --admin-insecure-mode --no-ledger \
  --wallet-type askar --wallet-name mediator --wallet-key mediator-key --auto-provision --auto-accept-invites \
  --auto-accept-requests --auto-ping-connection > "$WORLD/mediator.log" 2>&1 &
curl --silent --fail --retry 120 --retry-all-errors --retry-delay 1 http://127.0.0.1:8001/status/ready
curl --silent --fail -X POST -H 'Content-Type: application/json' -d '{{}}' \
  http://127.0.0.1:8001/connections/create-invitation \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["invitation_url"])' > mediator.invite
"""


def test_the_proxy_mediators_didcomm_mode_runs_as_written_with_an_acapy_mediator(base):
    if not os.access(ACAPY, os.X_OK):
        message = f"ACA-Py not installed at {ACAPY} (scripts/test.sh installs it; set RELAYROUTER_ACAPY)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: a missing install is an error)", pytrace=False)
        pytest.skip(message)
    reference.run([PROXY_MEDIATOR], base, MEDIATOR_WORLD)


# Every page whose console blocks a test runs: the tutorials, the how-to guides, and those above.
RUN_HERE = {RELAY, PAIRS, PAIRING_AGENT, OPERATIONS, CLI, MEDIATOR_PROXY, DOCS / "reference" / "iot-agent.md",
            DOCS / "reference" / "decrypt-search.md", DOCS / "explanation" / "performance.md", PROXY_MEDIATOR}
# Pages with commands shown for reading only, each saying why (docs/explanation/tested-docs.md lists them).
NOT_RUN = {DOCS / "howto" / "systemd.md", DOCS / "explanation" / "performance.md"}
# README's two commands, unmarked, and the file that runs each as written.
README = DOCS.parent / "README.md"
README_COMMANDS = {
    "pip install . && twistd -n relayrouter": README.parent / "tests" / "packaging" / "test_user_install.py",
    "scripts/test.sh": README.parent / ".ci" / "run",
}
# A line of a block that reads as a command someone would type.
COMMAND = re.compile(r"^(?:\$ )?(?:[A-Z][A-Z0-9_]*=\S* )*(?:relayrouter|twistd|python3?|pip|curl|sudo|systemctl|"
                     r"systemd-analyze|useradd|install|cp|ln|chmod|openssl|mosquitto\S*|nats-server|ssh|socat|"
                     r"ffmpeg|node|npm|npx|docker|git|make|aca-py|export|cd|mkdir|kill|scripts/\S+|bench/\S+)(?: |$)")
PAGES = sorted(DOCS.rglob("*.md")) + [README]
UNMARKED = ("", "sh", "shell", "bash")


def _blocks(page: Path):
    return [(m["info"].strip(), m["body"]) for m in tutorial.FENCE.finditer(page.read_text())]


def test_every_page_runs_its_commands_or_says_why_not():
    """A block of commands is a console block on a page a test runs (a block shown only for
    reading would be one no test holds to its word), except on the pages that say why not."""
    from .test_howtos import PAGES as HOWTOS
    from .test_tutorials import PAGES as TUTORIAL_PAGES

    run = RUN_HERE | set(HOWTOS) | set(TUTORIAL_PAGES) | {DOCS / "howto" / "index.md"}  # the guides' set-up
    for page in PAGES:
        blocks = _blocks(page)
        unmarked = [body.strip() for info, body in blocks if info in UNMARKED]
        assert unmarked == ([*README_COMMANDS] if page == README else []), page
        if any(info == "console" for info, _ in blocks):
            assert page in run, f"{page}: console blocks no test runs"
        shown = [line for info, body in blocks if info not in ("console", "toml", "python", "json", *UNMARKED)
                 and not info.startswith("{") for line in body.splitlines() if COMMAND.match(line)]
        assert not shown or page in NOT_RUN, f"{page}: commands shown for reading only: {shown}"


def test_the_pages_that_do_not_run_their_commands_say_why():
    listed = (DOCS / "explanation" / "tested-docs.md").read_text()
    for page in NOT_RUN:
        assert "not run by the documentation's tests" in page.read_text(), page
        assert f"{{doc}}`/{page.relative_to(DOCS).with_suffix('')}`" in listed, page


def test_readmes_commands_are_run_as_written_elsewhere():
    for command, runner in README_COMMANDS.items():
        assert command in runner.read_text(), (command, runner)
    assert "bash scripts/test.sh" in README_COMMANDS["scripts/test.sh"].read_text()


def test_the_relay_page_shows_every_tool():
    commands = [s.text for s in tutorial.steps(RELAY) if isinstance(s, tutorial.Command)]
    for needed in ("twistd relayrouter --config relay.toml", "relayrouter token", "--command", "--tcp",
                   "--websocket", "--device", "--ts", "--log", "--check", "tunnel host", "tunnel client",
                   "ProxyCommand", "ffmpeg"):
        assert any(needed in c for c in commands), needed
