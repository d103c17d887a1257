"""The shared state's side on the NATS loop's thread (:mod:`.state` is the
reactor's side): its buckets, their watches and the coroutines that read
and write them, each run through ``Cluster.bridge.run``.  Nothing here
touches the reactor's state.
"""

DENY, TICKETS, RETAINED, TENANTS = "deny", "tickets", "retained", "tenants"
WATCHED = (DENY, RETAINED, TENANTS)
# A ticket entry the minting node could not delete (it died) goes with the bucket's age limit.
TICKET_BUCKET_MAX_AGE = 24 * 3600.0
# A watch's first values that stop coming for this long fail the resync, which starts again:
# a watch made while its bucket elects a leader can stay silent (nats-py's ordered consumer
# is made again only after missed heartbeats), and waiting longer only keeps /ready at 503.
SNAPSHOT_STALL = 5.0
# A ticket stored or taken while its bucket elects a leader is tried again every
# ELECTION_RETRY for at most ELECTION_PATIENCE before the client is told to try again.
ELECTION_RETRY = 0.25
ELECTION_PATIENCE = 10.0
WRONG_LAST_SEQUENCE = (10071, 10164)  # JetStream's "expected last subject sequence" refusals


class LoopSide:
    """What lives on the NATS loop's thread: the buckets and the current watches."""

    def __init__(self, names: dict[str, str], buckets) -> None:
        self.names = names
        self.buckets = buckets  # cluster.buckets: every bucket made with the same replicas
        self.kv: dict = {}
        self.watches: list = []  # (watcher, follower task) of the current generation

    async def open(self, nc, js, deliver):
        """Open the buckets, (re)start the watches; the snapshot of each watched bucket."""
        import asyncio

        await self._stop_watches()
        self.kv = {TICKETS: await self.buckets.open(nc, js, self.names[TICKETS], TICKET_BUCKET_MAX_AGE)}
        snapshots = {}
        for what in WATCHED:
            kv = self.kv[what] = await self.buckets.open(nc, js, self.names[what])
            watcher = await kv.watchall()
            snapshot = {}
            while True:
                entry = await watcher.updates(timeout=SNAPSHOT_STALL)
                if entry is None:
                    break
                snapshot[entry.key] = (entry.revision, _value(entry))
            snapshots[what] = snapshot
            self.watches.append((watcher, asyncio.ensure_future(_follow(what, watcher, deliver))))
        return snapshots

    async def resume(self, nc, js, patience: float) -> bool:
        """True when every watch of the current generation is kept across a reconnection
        (:func:`.buckets.watch_resumes`, within ``patience`` s); False when one cannot be,
        and all are made anew."""
        import asyncio

        from .buckets import watch_resumes

        if len(self.watches) != len(WATCHED) or any(task.done() for _, task in self.watches):
            return False
        return all(await asyncio.gather(*(watch_resumes(watcher, patience) for watcher, _ in self.watches)))

    async def _stop_watches(self) -> None:
        import asyncio

        watches, self.watches = self.watches, []
        for watcher, task in watches:
            task.cancel()
            try:
                await asyncio.wait_for(watcher.stop(), 2)
            except Exception:  # the old connection's subscription: gone with it
                pass


def _value(entry):
    return None if entry.operation in ("DEL", "PURGE") else entry.value


async def _follow(what: str, watcher, deliver) -> None:
    async for entry in watcher:
        if entry is not None:
            deliver(what, entry.key, entry.revision, _value(entry))


async def put(nc, js, side, what, key, value, last=None):
    kv = side.kv[what]
    if last is None:
        return await kv.put(key, value)
    return await kv.update(key, value, last=last)


async def delete(nc, js, side, what, key, last=None):
    await side.kv[what].delete(key, last=last)
    return True


async def get(nc, js, side, what, key):
    """(revision, value or None) of a key now."""
    from nats.js import errors as js_errors

    try:
        entry = await side.kv[what].get(key)
    except js_errors.KeyNotFoundError as e:  # deleted (with its revision) or never written
        return (getattr(getattr(e, "entry", None), "revision", 0) or 0), None
    return entry.revision, entry.value


async def take(nc, js, side, key):
    """The ticket's value if this call is the one that deleted it; None if unknown or used."""
    from nats.js import errors as js_errors

    kv = side.kv[TICKETS]
    try:
        entry = await kv.get(key)
    except js_errors.KeyNotFoundError:
        return None
    try:
        await kv.delete(key, last=entry.revision)
    except js_errors.APIError as e:
        if e.err_code in WRONG_LAST_SEQUENCE:
            return None  # another join deleted it first
        raise
    return entry.value


async def patiently(nc, js, fn, *args):
    """``fn(nc, js, *args)``, again while the bucket has no leader to answer (an election
    after a NATS server died takes seconds), for at most ELECTION_PATIENCE."""
    import asyncio

    import nats.errors
    from nats.js import errors as js_errors

    loop = asyncio.get_running_loop()
    deadline = loop.time() + ELECTION_PATIENCE
    while True:
        try:
            return await fn(nc, js, *args)
        except (js_errors.NoStreamResponseError, nats.errors.NoRespondersError, nats.errors.TimeoutError):
            if loop.time() + ELECTION_RETRY > deadline or not nc.is_connected:
                raise
            await asyncio.sleep(ELECTION_RETRY)


def lost_race(failure) -> bool:
    from nats.js import errors as js_errors

    e = failure.value
    return isinstance(e, js_errors.APIError) and e.err_code in WRONG_LAST_SEQUENCE
