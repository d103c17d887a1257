"""The cluster's JetStream key-value buckets: made, replicated and watched over.

Every bucket the cluster keeps (registration directory, deny list, tickets,
retained events, tenants, testaments) is opened here, so that all of them
carry the same number of replicas: ``cluster.replicas``, or by default as many
as the NATS cluster has servers, up to three.  A bucket made earlier with fewer
replicas is raised to the setting (never lowered: an operator may have made it
larger on purpose).  A NATS cluster that cannot hold that many (a single
server, or fewer servers with JetStream than replicas) is refused with an error
naming ``cluster.replicas``.

:meth:`Buckets.check` asks JetStream about each bucket's stream; a bucket whose
stream has no leader, or cannot answer, has lost its quorum, and ``/ready``
says so by name until it has one again.

All coroutine methods run on the NATS loop (through ``NatsBridge.run``).
"""

MAX_DEFAULT_REPLICAS = 3
CHECK_TIMEOUT = 2.0
# A watch's consumer sends an idle heartbeat this often; two missed and nats-py
# makes the consumer again from the last revision seen.  A watch's consumer has
# one replica (nats-py's ordered consumers are R1, in memory): when its server
# dies, this is how soon the watch moves on (nats-py's default, 5 s, leaves a
# node deaf to denials and registrations for 10 s and more).
WATCH_HEARTBEAT = 1.0
# A reconnection within cluster.resume_window of losing the connection keeps the
# watches (see watch_resumes); after a longer outage every watch is made again.  A kept
# watch has cluster.resume_limit to show a live consumer again: nats-py makes one anew
# (from the last revision seen) two heartbeats after the old one fell silent, and the
# bucket may be electing a leader meanwhile.
RESUME_PROBE = 1.0  # each question to JetStream about the watch's consumer (config/cluster.py: the least limit)


class CannotReplicate(Exception):
    """The NATS cluster cannot hold the buckets with the replicas wanted."""


def stream_of(bucket: str) -> str:
    """The JetStream stream behind a key-value bucket."""
    return f"KV_{bucket}"


def default_replicas(nc) -> int:
    """As many as the NATS servers the client knows (given and discovered), up to three."""
    servers = {(url.hostname, url.port) for url in nc.servers}
    return max(1, min(MAX_DEFAULT_REPLICAS, len(servers)))


class Buckets:
    """The buckets this node opened, their replica count, and their health."""

    def __init__(self, replicas: int | None) -> None:
        self.configured = replicas  # None: default_replicas
        self.names: set[str] = set()
        self._replicated: set[str] = set()  # buckets whose replicas were checked by this process
        # bucket -> why it cannot serve now, as of the last check (reactor side reads it)
        self.unhealthy: dict[str, str] = {}

    def replicas(self, nc) -> int:
        return self.configured if self.configured is not None else default_replicas(nc)

    async def open(self, nc, js, name: str, ttl: float | None = None, description: str | None = None):
        """The bucket ``name``, made with the replicas wanted if it is not there yet."""
        from nats.js import api
        from nats.js import errors as js_errors

        replicas = self.replicas(nc)
        self.names.add(name)
        try:
            kv = await js.key_value(name)
        except js_errors.BucketNotFoundError:
            config = api.KeyValueConfig(bucket=name, history=1, ttl=ttl, replicas=replicas,
                                        storage=api.StorageType.FILE, description=description)
            try:
                return _quick_watches(await js.create_key_value(config))
            except js_errors.ServiceUnavailableError:
                raise
            except js_errors.APIError as e:
                kv = await self._made_meanwhile(js, name, replicas, e)
        await self._raise_replicas(js, name, replicas)
        return _quick_watches(kv)

    async def _made_meanwhile(self, js, name: str, replicas: int, error):
        """Another node made the bucket while we tried to, or JetStream refused the replicas."""
        from nats.js import errors as js_errors

        try:
            return await js.key_value(name)
        except js_errors.BucketNotFoundError:
            raise self._refusal(name, replicas, error) from None

    async def _raise_replicas(self, js, name: str, replicas: int) -> None:
        """Once per process and bucket: a resync during a failover asks JetStream no more than it must."""
        from nats.js import errors as js_errors

        if name in self._replicated:
            return
        info = await js.stream_info(stream_of(name))
        if (info.config.num_replicas or 1) >= replicas:
            self._replicated.add(name)
            return
        config = info.config
        config.num_replicas = replicas
        try:
            await js.update_stream(config)
        except js_errors.ServiceUnavailableError:
            raise
        except js_errors.APIError as e:
            raise self._refusal(name, replicas, e) from None
        self._replicated.add(name)

    def _refusal(self, name: str, replicas: int, error) -> CannotReplicate:
        source = "cluster.replicas" if self.configured is not None else \
            "cluster.replicas (not set: as many as the NATS servers known, up to 3)"
        return CannotReplicate(f"{source}: the NATS cluster cannot keep bucket '{name}' with {replicas} "
                               f"replica(s): {getattr(error, 'description', None) or error}")

    async def check(self, nc, js) -> dict[str, str]:
        """bucket -> why it cannot serve now, for every bucket opened; empty when all can."""
        import asyncio

        from nats.js import errors as js_errors

        found = {}
        for name in sorted(self.names):
            try:
                info = await asyncio.wait_for(js.stream_info(stream_of(name)), CHECK_TIMEOUT)
            except asyncio.TimeoutError:
                found[name] = "JetStream did not answer about it"
                continue
            except js_errors.NotFoundError:
                # Deleted under a live node (by an operator): made anew at this node's next
                # write or resync, as before this check; not a quorum it lost.
                continue
            except Exception as e:  # noqa: BLE001 - any refusal means it cannot serve; said by name
                found[name] = getattr(e, "description", None) or str(e) or type(e).__name__
                continue
            cluster = info.cluster
            if cluster is not None and not cluster.leader:
                found[name] = "no leader (its replicas have no quorum)"
        return found


async def watch_resumes(watcher, patience: float) -> bool:
    """True once the consumer behind a kept watch answers (False if not within ``patience``).

    A watch is a nats-py ordered consumer: a message it missed while the
    connection was away shows as a gap in the consumer's sequence, and a
    consumer that died with its server shows as missed heartbeats; either way
    nats-py makes the consumer again from the last revision the watch saw, so
    the watch resumes without losing a change.  What it cannot do is resume on
    a bucket JetStream no longer serves (deleted, or its stream without a
    leader for longer than ``patience``): then the caller makes its watches anew.
    ``watcher._sub`` is nats-py's (as ``kv._js`` below; tests/cluster/test_buckets.py
    fails if it is gone)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            await asyncio.wait_for(watcher._sub.consumer_info(), RESUME_PROBE)
            return True
        except Exception:  # noqa: BLE001 - gone with its server, not made again yet, or no leader
            if loop.time() + RESUME_PROBE / 4 > deadline:
                return False
            await asyncio.sleep(RESUME_PROBE / 4)


class _QuickHeartbeats:
    """A JetStream context whose ordered consumers (a key-value watch's) beat every
    WATCH_HEARTBEAT; everything else is the context's own."""

    def __init__(self, js) -> None:
        self._inner = js

    def __getattr__(self, name):
        return getattr(self._inner, name)

    async def subscribe(self, *args, **kwargs):
        if kwargs.get("ordered_consumer") and not kwargs.get("idle_heartbeat"):
            kwargs["idle_heartbeat"] = WATCH_HEARTBEAT
        return await self._inner.subscribe(*args, **kwargs)


def _quick_watches(kv):
    """``kv`` with watches that notice a dead consumer within two WATCH_HEARTBEATs.

    nats-py's ``KeyValue.watch`` takes no heartbeat and subscribes through the
    bucket's ``_js``; relayrouter/transport/autobahn_overrides.py-style, the one
    place that relies on it is here, and a test fails if the attribute is gone."""
    if not isinstance(kv._js, _QuickHeartbeats):
        kv._js = _QuickHeartbeats(kv._js)
    return kv
