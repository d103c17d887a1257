"""relayrouter tunnel: ssh through the router to a real sshd running a command;
clients without the scope are refused; flow control keeps the router's buffers bounded."""

import getpass
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor

from ..ports import free_port
from ..security_support import HS_SECRET, start, stop, token
from ..support import eventually
from .support import Tool

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@pytest.fixture(scope="module", autouse=True)
def openssh_installed():
    """Skip without OpenSSH locally; in CI (CI=true) a missing install is an error, not a skip."""
    if os.path.exists(SSHD) and shutil.which("ssh"):
        return
    message = "openssh-server and openssh-client are required (scripts/test.sh installs them)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: a missing install is an error)", pytrace=False)
    pytest.skip(message)


ROUTER_ROLES = [
    {"name": "tunnel-host", "rules": [{"uri": "tunnel.lab42.", "match": "prefix", "allow": ["register"]}]},
    {"name": "user", "rules": [{"uri": "tunnel.lab42.", "match": "prefix", "scopes": {"ssh": ["call"]}}]},
]


def tunnel_config(monkeypatch):
    monkeypatch.setenv("JWT_SECRET", HS_SECRET)
    return {"realms": [{"name": "lab", "auth": {"jwt": {
        "algorithms": ["HS256"], "audience": "relayrouter", "authrole_claim": "role", "authrole": "user",
        "keys": [{"secret_env": "JWT_SECRET"}]}}, "roles": ROUTER_ROLES}]}


@pytest.fixture
def router(monkeypatch, tmp_path):
    running = pytest_twisted.blockon(start(tunnel_config(monkeypatch), tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


class Sshd:
    """Our own sshd on a free loopback port, with its own host key, config and authorized key."""

    def __init__(self, root) -> None:
        self.root = root
        root.mkdir()
        for name in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
        (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
        os.chmod(root / "authorized_keys", 0o600)
        self.port = free_port()
        self.user = getpass.getuser()
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
                                     stderr=open(root / "sshd.log", "wb"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd")
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", server.port), 1).close()
            break
        except OSError:
            if time.time() > deadline or server.proc.poll() is not None:
                server.stop()
                pytest.fail("sshd did not start: " + (server.root / "sshd.log").read_text())
            time.sleep(0.05)
    yield server
    server.stop()


def host_tool(router, target_port):
    return Tool(["tunnel", "host", "--router", router.ws_url, "--realm", "lab", "--name", "lab42",
                 "--target", f"127.0.0.1:{target_port}"],
                {"RELAYROUTER_TOKEN": token(sub="lab42-host", role="tunnel-host", lifetime=3600)})


def ssh(sshd, client_token, router, command):
    proxy = (f"{sys.executable} -m relayrouter.cli tunnel client --router {router.ws_url} "
             f"--realm lab --name lab42 --stdio")
    env = dict(os.environ, RELAYROUTER_TOKEN=client_token)
    return subprocess.Popen(
        ["ssh", "-F", "/dev/null", "-o", f"ProxyCommand={proxy}", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
         "-i", str(sshd.root / "user_key"), f"{sshd.user}@lab42", command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=os.getcwd())


@defer.inlineCallbacks
def finished(proc, seconds=60):
    yield eventually(lambda: proc.poll() is not None, seconds=seconds)
    return proc.returncode, proc.stdout.read().decode(), proc.stderr.read().decode()


@pytest_twisted.inlineCallbacks
def test_ssh_through_the_tunnel_runs_a_command(router, sshd):
    host = host_tool(router, sshd.port)
    try:
        yield eventually(lambda: "tunnel.lab42.open" in _registered(router), seconds=30)
        allowed = token(sub="alice", role="user", scopes=["ssh"])
        code, out, err = yield finished(ssh(sshd, allowed, router, "echo through-the-tunnel; echo $((6*7))"))
        assert code == 0, err
        assert out.split() == ["through-the-tunnel", "42"]
        # Twice at once: each client connection is its own stream.
        first, second = ssh(sshd, allowed, router, "echo one"), ssh(sshd, allowed, router, "echo two")
        results = [(yield finished(first)), (yield finished(second))]
        assert [r[1].strip() for r in results] == ["one", "two"], results
        # No ssh scope: the router refuses the call, ssh gets nothing.
        code, out, err = yield finished(ssh(sshd, token(sub="mallory", role="user", scopes=["read"]), router,
                                            "echo should-not-run"))
        assert code != 0 and "should-not-run" not in out
        assert "not authorized" in err
    finally:
        host.stop()


def _registered(router) -> set:
    return {reg.uri for reg in router.realm("lab").dealer.registrations_by_id.values()}


class _Firehose(protocol.Protocol):
    """A server that speaks first and then sends a lot, as fast as its socket takes it."""

    def connectionMade(self):
        self.factory.sent = hashlib.sha256()
        self.factory.left = self.factory.total
        self.transport.registerProducer(self, True)
        self.resumeProducing()

    def resumeProducing(self):
        self.paused = False
        while not self.paused and self.factory.left > 0:
            chunk = os.urandom(min(65536, self.factory.left))
            self.factory.sent.update(chunk)
            self.factory.left -= len(chunk)
            self.transport.write(chunk)
        if self.factory.left == 0:
            self.transport.unregisterProducer()
            self.transport.loseConnection()

    def pauseProducing(self):
        self.paused = True

    def stopProducing(self):
        self.paused = True


class _Sink(protocol.Protocol):
    def connectionMade(self):
        self.got = hashlib.sha256()
        self.count = 0
        self.done = defer.Deferred()
        self.factory.connected.callback(self)

    def dataReceived(self, data):
        self.got.update(data)
        self.count += len(data)

    def connectionLost(self, reason):
        self.done.callback(self.count)


@pytest_twisted.inlineCallbacks
def test_slow_client_never_makes_the_router_buffer_without_bound(router):
    firehose = protocol.Factory.forProtocol(_Firehose)
    firehose.total = 24 * 1024 * 1024
    target = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(firehose)
    host = host_tool(router, target.getHost().port)
    listen_port = free_port()
    client = Tool(["tunnel", "client", "--router", router.ws_url, "--realm", "lab", "--name", "lab42",
                   "--listen", f"tcp:{listen_port}:interface=127.0.0.1"],
                  {"RELAYROUTER_TOKEN": token(sub="bob", role="user", scopes=["ssh"])})
    try:
        yield eventually(lambda: "tunnel.lab42.open" in _registered(router), seconds=30)
        yield eventually(lambda: "listening" in client.stderr(), seconds=30)
        sink_factory = protocol.ClientFactory.forProtocol(_Sink)
        sink_factory.connected = defer.Deferred()
        yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", listen_port).connect(sink_factory)
        sink = yield sink_factory.connected
        sink.transport.pauseProducing()  # a client that stops reading
        peak = 0
        for _ in range(40):  # 2 s of the firehose pushing against a reader that reads nothing
            yield deferLater(0.05)
            peak = max(peak, max((c.queued[1] for c in router.service.connections()), default=0))
        # The host stopped reading the target: most of it is still unsent, and the
        # router held no more than a few windows' worth.
        assert firehose.left > 12 * 1024 * 1024
        assert peak < 2 * 1024 * 1024, peak
        sink.transport.resumeProducing()
        count = yield sink.done.addTimeout(60, reactor)
        assert count == firehose.total and sink.got.digest() == firehose.sent.digest()
    finally:
        client.stop()
        host.stop()
        yield target.stopListening()


def deferLater(seconds):
    from twisted.internet import task

    return task.deferLater(reactor, seconds, lambda: None)


class _SlowGreeter(protocol.Protocol):
    """Speaks first, late; records whether the client's bytes came before its greeting."""

    def connectionMade(self):
        self.factory.early = b""
        self.greeted = False
        reactor.callLater(0.5, self.greet)

    def greet(self):
        self.greeted = True
        self.transport.write(b"SSH-2.0-greeter\r\n")

    def dataReceived(self, data):
        if not self.greeted:
            self.factory.early += data
        self.transport.write(b"echo:" + data)


@pytest_twisted.inlineCallbacks
def test_client_bytes_wait_until_the_server_has_spoken(router):
    greeter = protocol.Factory.forProtocol(_SlowGreeter)
    target = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(greeter)
    host = host_tool(router, target.getHost().port)
    listen_port = free_port()
    client = Tool(["tunnel", "client", "--router", router.ws_url, "--realm", "lab", "--name", "lab42",
                   "--listen", f"tcp:{listen_port}:interface=127.0.0.1"],
                  {"RELAYROUTER_TOKEN": token(sub="bob", role="user", scopes=["ssh"])})
    try:
        yield eventually(lambda: "tunnel.lab42.open" in _registered(router), seconds=30)
        yield eventually(lambda: "listening" in client.stderr(), seconds=30)
        sink_factory = protocol.ClientFactory.forProtocol(_Sink)
        sink_factory.connected = defer.Deferred()
        yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", listen_port).connect(sink_factory)
        sink = yield sink_factory.connected
        sink.transport.write(b"SSH-2.0-client\r\n")  # at once, as ssh does
        collected = []
        sink.dataReceived = lambda data: collected.append(data)
        yield eventually(lambda: b"".join(collected).endswith(b"echo:SSH-2.0-client\r\n"), seconds=30)
        assert b"".join(collected).startswith(b"SSH-2.0-greeter\r\n")
        assert greeter.early == b""  # nothing reached the server before it spoke
    finally:
        client.stop()
        host.stop()
        yield target.stopListening()

