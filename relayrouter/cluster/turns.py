"""One roundrobin rotation for the whole cluster, shared without a round trip per call.

Theory of operation
-------------------
Alone, each node would keep its own roundrobin position: callers on two nodes
taking turns at a registration with a callee on each node would each start
with the first callee, and each callee would get two calls in a row.  Here
the dealer hands a clustered ``roundrobin`` registration's choice to its
:class:`Rotation` (``Registration.choose``, core/dealer.py), which keeps, per
callee, how many calls it was sent by any node as far as this node knows
(``served``), and which callee was chosen last anywhere (``after``).  A
choice is the first callee after ``after``, in registration order, among
those sent the fewest calls.  With every node's choices known, that is the
rotation of one router: A's callee, B's, A's, B's...

Every node publishes, at most every ``FLUSH`` seconds while it chooses, on
``<prefix>.rpcturns``:
``[1, "turns", node, incarnation, [[directory key, after, [[callee session ID,
calls this node sent it], ...]], ...]]`` for the registrations it chose on;
a node hearing it adds what each total grew since the last one heard from
that node (from zero for a new incarnation: a node restarted counts afresh)
and takes ``after``.  No call waits for any of this: choices made on two
nodes within ``FLUSH`` plus a NATS hop of each other may go to one callee
(never two in a row on one node), and the next choices even it out, since
the fewest-calls rule sends the others' share to the callees that got less.
A callee new to a node starts with the fewest calls of the others, so it is
not flooded to catch up.

Per choice this costs a look at each callee's count (registrations have a
handful); on NATS, one small message per choosing node and ``FLUSH``,
whatever the call rate.  A node with ``prefer_local_callees`` that has
callees of its own rotates among those alone (the dealer does not ask the
rotation for a narrowed list), so those calls are not counted.
"""

import msgpack

from . import subjects

WIRE_VERSION = 1
FLUSH = 0.01  # s: the longest a choice made here waits before the other nodes hear of it


class Rotation:
    """One roundrobin registration's choices, as far as this node knows them (no I/O)."""

    __slots__ = ("served", "after", "_after_at", "mine", "heard", "moved", "fresh", "on_move")

    def __init__(self, on_move=None) -> None:
        self.served: dict[int, int] = {}  # callee session ID -> calls it was sent, by any node
        self.after = None  # session ID of the callee chosen last, here or as last heard
        self._after_at = 0  # where it was in the callee list (a hint: checked before use)
        self.mine: dict[int, int] = {}  # callee session ID -> calls this node sent it
        self.heard: dict = {}  # (node, callee session ID) -> (incarnation, total) last heard
        self.moved = False  # chosen since the last publication
        self.fresh = 0  # choices made here since the last publication
        self.on_move = on_move  # f(rotation) at the first choice after a publication

    def choose(self, callees: list):
        served = self.served
        n = len(callees)
        if len(served) > 2 * n + 8:  # callees gone: forget them
            self._keep({c.session_id for c in callees})
        start = self._start(callees, n)
        least = pick = -1
        for k in range(n):  # the first after the last chosen, among those sent the fewest calls
            i = start + k - n if start + k >= n else start + k
            count = served.get(callees[i].session_id)
            if count is None:
                return self._level(callees)
            if least < 0 or count < least:
                least, pick = count, i
        return self._chose(callees, pick, least)

    def _start(self, callees: list, n: int) -> int:
        after = self.after
        if after is None:
            return 0
        hint = self._after_at
        if hint < n and callees[hint].session_id == after:
            return hint + 1 if hint + 1 < n else 0
        for i, callee in enumerate(callees):
            if callee.session_id == after:
                return i + 1 if i + 1 < n else 0
        return 0

    def _level(self, callees: list):
        """Callees new here start with the fewest calls of the others (not flooded to catch up)."""
        served = self.served
        known = [served[c.session_id] for c in callees if c.session_id in served]
        base = min(known) if known else 0
        for callee in callees:
            served.setdefault(callee.session_id, base)
        return self.choose(callees)

    def _chose(self, callees: list, i: int, least: int):
        callee = callees[i]
        sid = callee.session_id
        self.served[sid] = least + 1
        self.mine[sid] = self.mine.get(sid, 0) + 1
        self.after, self._after_at = sid, i
        self.fresh += 1
        if not self.moved:
            self.moved = True
            if self.on_move is not None:
                self.on_move(self)
        return callee

    def _keep(self, sids: set) -> None:
        self.served = {s: n for s, n in self.served.items() if s in sids}
        self.mine = {s: n for s, n in self.mine.items() if s in sids}
        self.heard = {k: v for k, v in self.heard.items() if k[1] in sids}

    def told(self) -> tuple[list, int]:
        """What the other nodes are told, ``[after, [[callee session ID, total], ...]]``, and
        how many choices it tells of."""
        fresh, self.fresh, self.moved = self.fresh, 0, False
        return [self.after, [[sid, total] for sid, total in self.mine.items()]], fresh

    def hear(self, node: str, incarnation: int, after, totals) -> int:
        """Another node's totals: added to ``served``; the number of calls they add."""
        added = 0
        base = min(self.served.values()) if self.served else 0
        for sid, total in totals:
            known = self.heard.get((node, sid))
            before = known[1] if known is not None and known[0] == incarnation else 0
            self.heard[(node, sid)] = (incarnation, total)
            if total > before:
                self.served[sid] = self.served.get(sid, base) + total - before
                added += total - before
        if after is not None:
            self.after = after
        return added


class Turns:
    """The rotations of this node's clustered roundrobin registrations, told to and heard from
    the other nodes."""

    def __init__(self, calls) -> None:
        self.calls = calls
        self.reactor = calls.reactor
        self.bridge = calls.bridge
        self.node = calls.node
        self.subject = subjects.rpc_turns_subject(calls.prefix)
        self.rotations: dict[str, Rotation] = {}  # directory key -> its rotation
        self._moved: dict[str, Rotation] = {}  # chosen since the last publication
        self._flush = None  # the delayed publication, while one is due
        self.counters = calls.counters  # turns_out (choices told), turns_in (heard)
        calls.cluster.handlers[self.subject] = self._received
        calls.bridge.subscribe(self.subject)

    def rotation(self, name: str) -> Rotation:
        rotation = self.rotations.get(name)
        if rotation is None:
            rotation = self.rotations[name] = Rotation(lambda r, name=name: self._moving(name, r))
        return rotation

    def forget(self, name: str) -> None:
        """A registration gone from the directory: its rotation goes too."""
        self.rotations.pop(name, None)
        self._moved.pop(name, None)

    def stop(self) -> None:
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        self._flush = None

    def _moving(self, name: str, rotation: Rotation) -> None:
        self._moved[name] = rotation
        if self._flush is None:
            self._flush = self.reactor.callLater(FLUSH, self._publish)

    def _publish(self) -> None:
        self._flush = None
        moved, self._moved = self._moved, {}
        told = []
        for name, rotation in moved.items():
            what, fresh = rotation.told()
            told.append([name, *what])
            self.counters["turns_out"] += fresh
        if told:
            self.bridge.publish(self.subject, msgpack.packb(
                [WIRE_VERSION, "turns", self.node, self.calls.forwarding.incarnation, told]), during_outage=False)

    def _received(self, data: bytes) -> None:
        node, incarnation, told = msgpack.unpackb(data, raw=False)[2:5]
        if node == self.node:
            return
        for name, after, totals in told:
            rotation = self.rotations.get(name)
            if rotation is not None:
                self.counters["turns_in"] += rotation.hear(node, incarnation, after, totals)
