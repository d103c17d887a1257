"""The cluster's nodes as an operator sees them: ``relayrouter.cluster.nodes``,
the ``relayrouter_cluster_node_*`` metrics and the console's cluster table.

Every heartbeat (``<prefix>.hb``, every ``heartbeat_interval``) carries, after
the session counts, a map of the sending node: ``{"version", "addresses",
"sessions", "load", "since"}`` -- its relayrouter version, the addresses its
listeners are bound to (``host:port``), its sessions in all realms, its load
(the CPU time the process used over the last interval, per second of wall
time: 1.0 is one core busy) and when it started (epoch seconds).  Each node
keeps the last map heard from every live node, and when it heard it; a node
gone (silent for ``heartbeat_ttl``) leaves the view.  A node of an earlier
version sends no map: it is listed with its name and last heard only.
"""

import time

from .. import __version__
from ..core.meta import iso8601

_KEYS = ("version", "addresses", "sessions", "load", "since")


class Nodes:
    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.started = time.time()
        # () -> ["host:port", ...] of this node's listeners (set by the service once they are bound).
        self.addresses = lambda: []
        self.load = 0.0
        self._cpu = (time.process_time(), time.monotonic())
        self.info_by_node: dict[str, dict] = {}  # other node -> the map its last heartbeat carried

    def mine(self) -> dict:
        """What this node's heartbeat says of it (the load since the last call)."""
        cpu, at = time.process_time(), time.monotonic()
        if at > self._cpu[1]:
            self.load = round((cpu - self._cpu[0]) / (at - self._cpu[1]), 3)
        self._cpu = (cpu, at)
        return self.mine_last()

    def heard(self, node: str, info) -> None:
        if isinstance(info, dict):
            self.info_by_node[node] = {key: info.get(key) for key in _KEYS}

    def gone(self, node: str) -> None:
        self.info_by_node.pop(node, None)

    def records(self) -> list[tuple[str, dict, float]]:
        """(name, map, last heard) of every node of the view, this one first, then by name."""
        now = self.cluster.reactor.seconds()
        rows = [(self.cluster.config.node, {**self.mine_last(), "self": True}, now)]
        for node, heard in sorted(self.cluster.heard_at().items()):
            rows.append((node, {**self.info_by_node.get(node, {}), "self": False}, heard))
        return rows

    def mine_last(self) -> dict:
        """This node's map without moving its load window (the heartbeat does)."""
        return {"version": __version__, "addresses": list(self.addresses()),
                "sessions": sum(len(realm.sessions) for realm in self.cluster.router.realms.values()),
                "load": self.load, "since": self.started}

    def listing(self) -> list[dict]:
        """What ``relayrouter.cluster.nodes`` answers: one row per node, times in ISO 8601."""
        return [_row(node, info, heard) for node, info, heard in self.records()]


def _row(node: str, info: dict, heard: float) -> dict:
    since = info.get("since")
    return {"name": node, "self": info["self"], "version": info.get("version"),
            "addresses": info.get("addresses") or [], "sessions": info.get("sessions"),
            "load": info.get("load"),
            "up_since": iso8601(since) if isinstance(since, (int, float)) else None,
            "last_heard": iso8601(heard)}
