"""Failed-login limits for the whole cluster, not per node.

Theory of operation
-------------------
Each node keeps its own token buckets (:mod:`relayrouter.auth.ratelimit`)
and spends them for every failure it verifies, as a node alone does; it also
publishes the failure on ``<prefix>.authfail`` (msgpack ``[1, node, address,
authid]``).  Every other node spends the same buckets when it hears one
(``failures_elsewhere`` in the limiter's counters).  So behind a load
balancer a guesser gets one allowance from the cluster, not one per node.

How close: a failure reaches the other nodes one NATS hop later (well under a
millisecond on a LAN).  Attempts that land on different nodes within that
hop are each checked before they hear of the others, so a guesser spreading
simultaneous attempts over N nodes gets at most N - 1 failures beyond the
budget per such burst; sequential attempts are counted exactly.  While NATS
is away each node limits on its own (a guesser may then get N times the
allowance until it is back); failures verified then are not sent later, and
are counted in ``failures_unshared``.  What is shared is the spending only:
who logged in lately (``remember_success``) stays per node, and a budget that
refilled on one node refills on all at the same rate (same clock rate, same
configuration).  Nodes with different ``[auth_limits]`` spend their own
budgets for every failure heard.

The subject carries addresses and authids, never a credential; it is as
trusted as the rest of the cluster's NATS traffic.
"""

import msgpack
from twisted.logger import Logger

from . import subjects

log = Logger(namespace="relayrouter.cluster")

WIRE_VERSION = 1
MAX_FIELD = 1024  # characters of an address or authid heard; longer ones are not ours


class SharedLimits:
    def __init__(self, cluster, limiter) -> None:
        self.cluster = cluster
        self.limiter = limiter
        self.node = cluster.config.node
        self.subject = subjects.login_failures_subject(cluster.config.subject_prefix)
        cluster.handlers[self.subject] = self._heard
        cluster.bridge.subscribe(self.subject)
        limiter.share = self._failed

    def _failed(self, address: str, authid: str) -> None:
        if not self.cluster.connected:
            self.limiter.counters["failures_unshared"] = self.limiter.counters.get("failures_unshared", 0) + 1
            return
        self.cluster.bridge.publish(self.subject, msgpack.packb([WIRE_VERSION, self.node, address, authid]))

    def _heard(self, data: bytes) -> None:
        version, node, address, authid = msgpack.unpackb(data, raw=False)[:4]
        if node == self.node:  # NATS echoes our own publications
            return
        if not all(type(v) is str and len(v) <= MAX_FIELD for v in (address, authid)):
            log.warn("cluster: a failed-login report from node {peer} is malformed; ignored", peer=node)
            return
        self.limiter.failed_elsewhere(address, authid)
