"""A NATS server and router nodes as real processes, for the cluster tests.

``NatsServer``: our own ``nats-server -js`` on free loopback ports (client
and monitoring), stopped by its PID; it keeps its ports across restarts.
``Node``: ``twistd relayrouter`` with a ``[cluster]`` section naming it, started
once it has synced its shared state with JetStream (or said it cannot); with
``loop="reactor"`` it runs nats-py on the reactor's own loop
(``cluster.loop = "reactor"`` under ``twistd --reactor=asyncio``).
``LOOPS``: both, for module fixtures parametrized over them.
"""

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..connectors.processes import Child, RouterProcess, listener, stop_together
from ..ports import free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
LOOPS = ("thread", "reactor")


class NatsServer(Child):
    """``config``: nats-server configuration text (authorization, tls, operator...)
    written beside its store; ``jetstream=False`` for servers that need none."""

    def __init__(self, tmp_path: Path, config: str = "", jetstream: bool = True, scheme: str = "nats") -> None:
        self.port = free_port()
        self.monitor = free_port()
        self.scheme = scheme
        store = self.store = tmp_path / "nats-store"
        store.mkdir(exist_ok=True)
        argv = [NATS_SERVER, "-a", "127.0.0.1", "-p", self.port, "-m", self.monitor]
        if jetstream:
            argv += ["-js", "-sd", store]
        if config:
            conf = tmp_path / "nats.conf"
            conf.write_text(config)
            argv += ["-c", conf]
        super().__init__("nats-server", argv)

    def start(self) -> None:
        super().start()
        self.wait_for("Server is ready", 30)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def connz(self) -> list[dict]:
        """The server's view of its client connections, with their subscriptions."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/connz?subs=1", timeout=5) as r:
            return json.load(r)["connections"]

    def event_messages(self, name: str, prefix: str = "relayrouter.ev.") -> int:
        """Messages NATS delivered to ``name`` on its event subscriptions now open (not its
        heartbeats, nor the JetStream traffic of its key-value watches)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/connz?subs=detail", timeout=5) as r:
            connections = json.load(r)["connections"]
        return sum(s.get("msgs", 0) for c in connections if c.get("name") == name
                   for s in c.get("subscriptions_list_detail") or () if s["subject"].startswith(prefix))

    def connection(self, name: str) -> dict | None:
        found = [c for c in self.connz() if c.get("name") == name]
        return found[0] if found else None

    def subjects(self, name: str) -> set[str]:
        connection = self.connection(name)
        return set(connection.get("subscriptions_list") or ()) if connection else set()


def node_config(name: str, nats_url: str, realms: str = '[[realms]]\nname = "realm1"\n', extra: str = "",
                loop: str = "thread") -> str:
    return listener() + f"""
[cluster]
nats = ["{nats_url}"]
node = "{name}"
reconnect_wait = 0.2
loop = "{loop}"
""" + extra + "\n" + realms


# A machine loaded far beyond its cores (load average 14 on 2 cores, seen) stalls a node's
# reactor for seconds: a test checking a bound (a node declared gone after heartbeat_ttl) allows
# LOAD_SLACK more, and a wait for something that comes without a bound waits up to PATIENCE.
LOAD_SLACK = 10.0
PATIENCE = 60.0

# What a node says once its shared state is in sync with JetStream again (a resync, or a quick
# reconnection that kept its watches), or that it cannot be (no JetStream).
SYNCED = ("(synced its shared state with JetStream|kept its watches of the shared state|cannot sync its "
          "shared state)")


class Node(RouterProcess):
    def __init__(self, tmp_path: Path, name: str, nats_url: str, realms: str | None = None, env=None,
                 extra: str = "", loop: str = "thread") -> None:
        home = tmp_path / name
        home.mkdir(exist_ok=True)
        if realms is None:
            toml = node_config(name, nats_url, extra=extra, loop=loop)
        else:
            toml = node_config(name, nats_url, realms, extra, loop=loop)
        super().__init__(home, toml, env=env)
        self.name = name
        self.loop = loop
        if loop == "reactor":
            self.twistd_options = ["--reactor=asyncio"]

    def start(self) -> None:
        """Started, connected to NATS and its shared state synced with JetStream."""
        mark = self.start_unsynced()
        self.wait_synced(mark)

    def start_unsynced(self) -> int:
        """Started and connected to NATS; the output line it started at."""
        mark = len(self.all_output)
        super().start()
        where = "the reactor's asyncio loop" if self.loop == "reactor" else "a loop thread"
        self.wait_output(rf"cluster: node {self.name} connected to NATS at \S+ \(client on {where}\)", 30, mark)
        return mark

    def wait_synced(self, after: int, seconds: float = 60.0) -> None:
        """Until the node says it synced its shared state (after output line ``after``), or, on a
        NATS server without JetStream, that it cannot."""
        self.wait_output(rf"cluster: node {self.name} {SYNCED}", seconds, after)

    @property
    def ws_port(self) -> int:
        return self.port

    def wait_output(self, pattern: str, seconds: float = 30.0, after: int = 0) -> None:
        import re

        rule = re.compile(pattern)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(rule.search(line) for line in self.all_output[after:]):
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no line matching {pattern!r} within {seconds:.0f} s\n{self.describe()}")


def sleep(seconds: float):
    """A Deferred that fires after ``seconds`` on the reactor."""
    from twisted.internet import reactor, task

    return task.deferLater(reactor, seconds, lambda: None)


def ready(node) -> tuple[int, dict]:
    """A node's GET /ready: (status, JSON body)."""
    try:
        with urllib.request.urlopen(f"{node.http_url}/ready", timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def stop_all(nats, nodes: dict) -> None:
    """Every node (side by side), then the NATS server (or cluster)."""
    stop_together(list(nodes.values()))
    nats.stop()


class NatsCluster:
    """``size`` nats-servers with JetStream routed into one NATS cluster on free loopback
    ports (client, monitoring, routes), each its own process and store, stopped by PID.
    Each keeps its ports across a kill and restart, so the routes heal."""

    def __init__(self, tmp_path: Path, size: int = 3, name: str = "relayrouter-test") -> None:
        self.route_ports = [free_port() for _ in range(size)]
        self.servers: list[NatsServer] = []
        for i in range(size):
            home = tmp_path / f"nats-{i}"
            home.mkdir(exist_ok=True)
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for j, p in enumerate(self.route_ports) if j != i)
            config = (f'server_name: "n{i}"\n'
                      f"jetstream {{ store_dir: \"{home / 'js'}\" }}\n"
                      f'cluster {{ name: "{name}", listen: "127.0.0.1:{self.route_ports[i]}", '
                      f"routes: [{routes}] }}\n")
            server = NatsServer(home, config, jetstream=False)
            server.name = f"nats-server n{i}"
            server.server_name = f"n{i}"
            self.servers.append(server)

    def start(self) -> None:
        for server in self.servers:
            super(NatsServer, server).start()
        for server in self.servers:
            server.wait_for("Server is ready", 30)
        self.wait_jetstream()

    def wait_jetstream(self, seconds: float = 60.0) -> None:
        """Until every running server sees a JetStream meta leader (the cluster can create streams)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(self._meta_leader(s) for s in self.servers if s.running):
                return
            time.sleep(0.1)
        raise AssertionError("the NATS cluster elected no JetStream meta leader")

    def wait_streams_current(self, seconds: float = 60.0) -> None:
        """Until every stream has a leader and every replica of it is current (a rolling
        restart's next step waits for this, as an operator's would)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if all(self._streams_current(s) for s in self.servers if s.running):
                return
            time.sleep(0.2)
        raise AssertionError("the NATS cluster's streams did not all become current")

    @staticmethod
    def _streams_current(server) -> bool:
        """Every stream this server reports has a leader, and those it leads have every
        replica current (only a leader knows its followers' state)."""
        url = f"http://127.0.0.1:{server.monitor}/jsz?streams=true"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                found = json.load(r)
        except (OSError, ValueError):
            return False
        for account in found.get("account_details") or ():
            for stream in account.get("stream_detail") or ():
                cluster = stream.get("cluster") or {}
                if not cluster.get("leader"):
                    return False
                if cluster["leader"] == server.server_name and any(not peer.get("current") or peer.get("offline") for peer in cluster.get("replicas") or ()):
                    return False
        return True

    @staticmethod
    def _meta_leader(server) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.monitor}/jsz", timeout=2) as r:
                return (json.load(r).get("meta_cluster") or {}).get("leader")
        except (OSError, ValueError):
            return None

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def stop(self) -> None:
        stop_together(self.servers)


def nats_and_nodes(tmp_path: Path, names: str = "abc", servers: int = 1, **node_options):
    """For a fixture (``yield from``): one NATS server, or a NATS cluster of ``servers``, and a
    node of each of ``names`` (the i-th on server i modulo their number; ``node_options`` as
    :class:`Node` takes them), all stopped afterwards."""
    nats = NatsServer(tmp_path) if servers == 1 else NatsCluster(tmp_path, servers)
    nats.start()
    urls = [nats.url] if servers == 1 else nats.urls
    nodes = {}
    try:
        for i, name in enumerate(names):
            nodes[name] = Node(tmp_path, name, urls[i % len(urls)], **node_options)
            nodes[name].start()
        yield nats, nodes
    finally:
        stop_all(nats, nodes)
