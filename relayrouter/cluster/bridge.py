"""nats-py beside the reactor: on an asyncio loop of its own thread (the
default, ``cluster.loop = "thread"``), or on the reactor's own asyncio loop
when twistd runs Twisted's asyncio reactor (``cluster.loop = "reactor"``,
``twistd --reactor=asyncio``).  The API is the same either way.

Thread: work crosses in batches, one ``call_soon_threadsafe`` per batch of
outgoing commands (what the reactor queued in one turn, and whatever it
queued while the loop was still applying the last batch) and one
``reactor.callFromThread`` per batch of incoming messages (what one turn of
the loop delivered, and whatever arrived while the reactor was busy), not one
per message: a wake is a write to the other side's pipe and its poll reading
it, which cost a crossing event more than the rest of its hand-over.  NATS
socket reads, parsing and buffering never run on the reactor thread, and the router keeps twistd's default reactor (epoll), what
bench/ measures.  Reactor: no thread and no hand-over, every message is
dispatched as nats-py delivers it, but all the node's local traffic runs on
the asyncio reactor (README, "Scale-out", has the figures of both).

Order: commands (publish, subscribe, unsubscribe) are applied in the order
the reactor gave them, by one task; incoming messages are handed over in the
order nats-py delivered them (per subscription, the server's order).

Anything else a cluster feature needs of NATS (JetStream key-value, requests)
goes through :meth:`NatsBridge.run`: a coroutine function started on the loop
in command order, its result or failure handed back to the reactor as a
Deferred.
"""

import asyncio
import ssl
import threading

import nats
from nats import errors as nats_errors
from twisted.internet import defer

from ..config.check import ConfigError

# Messages from NATS waiting for the reactor; beyond, new ones are dropped.
MAX_INBOX = 100_000
# A clean stop lets what run() started finish for this long before closing.
STOP_GRACE = 2.0


class NotConnected(Exception):
    """NATS is not connected now: the operation was not attempted."""


def reactor_loop(reactor) -> asyncio.AbstractEventLoop:
    """The asyncio loop ``reactor`` runs on; a ConfigError naming
    ``cluster.loop`` when it is not Twisted's asyncio reactor."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise ConfigError(
            f'cluster.loop: "reactor" runs NATS on the reactor\'s asyncio loop, but this process runs '
            f"{type(reactor).__name__}; start it with twistd --reactor=asyncio, or set cluster.loop = \"thread\"")
    return reactor._asyncioEventloop


def _now(f, *args) -> None:
    f(*args)


class NatsBridge:
    """One NATS connection.  ``on_messages(batch)`` is called on the reactor
    thread with a list of (subscribed subject, data); ``on_state(state, text)``
    with "connected", "disconnected", "reconnected", "unreachable", "error".

    ``config.loop`` = "thread" (default): nats-py on a loop thread of its own;
    "reactor": on the running asyncio reactor's loop (refused with a
    ConfigError naming the key on any other reactor)."""

    def __init__(self, config, reactor, on_messages, on_state) -> None:
        self.config = config
        self.reactor = reactor
        self.on_messages = on_messages
        self.on_state = on_state
        self.connected = False  # read on the reactor thread, set through on_state
        self.dropped = 0  # publications that could not be handed to NATS (no connection, buffer full)
        # publish(..., during_outage=False) not sent: the client was not connected (cluster events)
        self.dropped_outage = 0
        self.dropped_in = 0  # messages from NATS dropped because the reactor was this far behind
        self._lock = threading.Lock()
        self._commands: list = []
        self._woken = False
        self._inbox: list = []
        self._inbox_scheduled = False
        self.loop_mode = getattr(config, "loop", "thread")
        if self.loop_mode == "reactor":
            self._loop = reactor_loop(reactor)
            self._thread = None
            self._to_reactor = _now  # we are on the reactor's thread already
            self._push = self._push_here
            self._deliver = self._deliver_here
            self._main_task = None
        else:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._run, name="relayrouter-nats", daemon=True)
        self._nc = None
        self._closing = False
        self._wanted: dict[str, object] = {}  # subject -> nats Subscription (None until connected)
        self._wake: asyncio.Event | None = None
        self._running: set = set()  # tasks started by run(), given a moment to finish by stop()

    # ------------------------------------------------------ reactor thread

    def start(self) -> None:
        if self._thread is None:
            self._main_task = asyncio.ensure_future(self._main(), loop=self._loop)
        else:
            self._thread.start()

    def publish(self, subject: str, data: bytes, during_outage: bool = True) -> None:
        """``during_outage``: kept in nats-py's buffer (``max_pending_bytes``) while it
        reconnects, and sent once it is back; False: dropped at once while the
        client is not connected (counted in ``dropped_outage``)."""
        self._push(("pub", subject, data, during_outage))

    def subscribe(self, subject: str) -> None:
        self._push(("sub", subject))

    def unsubscribe(self, subject: str) -> None:
        self._push(("unsub", subject))

    def run(self, fn, *args) -> defer.Deferred:
        """``await fn(nc, js, *args)`` on the loop thread, started after every
        command pushed before it; fires on the reactor thread with its result,
        or fails with its exception (:class:`NotConnected` when NATS is not
        connected).  ``nc`` is the nats-py client, ``js`` its JetStream
        context.  Runs as a task of its own: a slow one never holds up
        publications queued after it."""
        d = defer.Deferred()
        self._push(("run", fn, args, d))
        return d

    def stop(self, timeout: float = 5.0) -> defer.Deferred | None:
        """Closes the connection.  Thread: waits for it (at most ``timeout``),
        returns None; reactor: returns a Deferred that fires once it is closed."""
        self._closing = True  # the connection's end is ours: not a lost connection to report
        self._push(("stop",))
        if self._thread is not None:
            self._wake_loop()  # now: the reactor does not turn while we wait here
            self._thread.join(timeout)
            return None
        if self._main_task is None or self._main_task.done():
            return defer.succeed(None)
        return defer.Deferred.fromFuture(asyncio.shield(self._main_task)).addErrback(lambda _: None)

    def _push_here(self, command: tuple) -> None:
        self._commands.append(command)
        if not self._woken:
            self._woken = True
            if self._wake is not None:  # else _main, when it starts, takes what waits
                self._wake.set()

    def _push(self, command: tuple) -> None:
        with self._lock:
            self._commands.append(command)
            if self._woken:
                return
            self._woken = True
        # The loop is woken once per reactor turn, not per command: what the
        # reactor queues while it handles one read (several PUBLISHes, say)
        # crosses as one batch and leaves in one write to NATS.
        self.reactor.callLater(0, self._wake_loop)

    def _wake_loop(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._set_wake)
        except RuntimeError:  # the loop has ended (stopped)
            pass

    def _drain(self) -> None:
        with self._lock:
            batch, self._inbox = self._inbox, []
            self._inbox_scheduled = False
        self.on_messages(batch)

    def _to_reactor(self, f, *args) -> None:
        self.reactor.callFromThread(f, *args)

    def _state(self, state: str, text: str = "") -> None:
        self._to_reactor(self._set_state, state, text)

    def _set_state(self, state: str, text: str) -> None:
        if state in ("connected", "reconnected"):
            self.connected = True
        elif state in ("disconnected", "unreachable", "closed"):
            self.connected = False
        self.on_state(state, text)

    # --------------------------------------------------------- loop thread

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    def _set_wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        self._wake.set()  # commands pushed before the loop ran
        connecting = asyncio.ensure_future(self._connect())
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while True:
                    # Until no command waits, the loop counts as woken: what the reactor
                    # pushes meanwhile is taken here without waking it again (a wake is a
                    # write to the loop's self-pipe, and the loop's poll reading it).
                    with self._lock:
                        batch, self._commands = self._commands, []
                        if not batch:
                            self._woken = False
                            break
                    for command in batch:
                        if command[0] == "stop":
                            if self._running:  # what a clean stop asked of NATS last (directory clean-up)
                                await asyncio.wait(list(self._running), timeout=STOP_GRACE)
                            return
                        await self._apply(command)
                    await asyncio.sleep(0)  # the client's flusher and reader run between batches
        finally:
            connecting.cancel()
            if self._nc is not None and not self._nc.is_closed:
                try:
                    await asyncio.wait_for(self._nc.close(), 3)
                except Exception:
                    pass

    async def _apply(self, command: tuple) -> None:
        kind = command[0]
        nc = self._nc
        if kind == "pub":
            if nc is None or nc.is_closed:
                self.dropped += 1
                return
            if not command[3] and not nc.is_connected:
                self.dropped_outage += 1
                return
            try:
                await nc.publish(command[1], command[2])
            except (nats_errors.OutboundBufferLimitError, nats_errors.ConnectionClosedError,
                    nats_errors.ConnectionReconnectingError):
                self.dropped += 1
        elif kind == "sub":
            subject = command[1]
            if subject not in self._wanted:
                self._wanted[subject] = None
                if nc is not None:
                    await self._subscribe(subject)
        elif kind == "unsub":
            sub = self._wanted.pop(command[1], None)
            if sub is not None:
                try:
                    await sub.unsubscribe()
                except nats_errors.Error:
                    pass  # the connection is going: its subscriptions with it
        elif kind == "run":
            _, fn, args, d = command
            if nc is None or nc.is_closed or not nc.is_connected:
                self._to_reactor(d.errback, NotConnected("NATS is not connected"))
                return
            job = asyncio.ensure_future(self._run_one(nc, fn, args, d))
            self._running.add(job)
            job.add_done_callback(self._running.discard)
        elif kind == "connected":
            self._nc = command[1]
            for subject in list(self._wanted):
                await self._subscribe(subject)
            self._state("connected", command[2])

    async def _run_one(self, nc, fn, args, d) -> None:
        try:
            result = await fn(nc, nc.jetstream(), *args)
        except BaseException as e:  # noqa: B902 - handed to the reactor, which decides
            self._to_reactor(d.errback, e)
        else:
            self._to_reactor(d.callback, result)

    async def _subscribe(self, subject: str) -> None:
        # nats-py runs each subscription's callbacks one after another, so
        # their order is the server's; it re-sends the SUBs after a reconnect.
        async def received(msg) -> None:
            self._deliver(subject, msg.data)

        # Bounded per subscription (nats-py drops beyond, reporting a slow consumer).
        self._wanted[subject] = await self._nc.subscribe(subject, cb=received, pending_msgs_limit=65536,
                                                         pending_bytes_limit=64 * 1024 * 1024)

    def _deliver(self, subject: str, data: bytes) -> None:
        with self._lock:
            if len(self._inbox) >= MAX_INBOX:
                self.dropped_in += 1  # at most once: memory stays bounded when the reactor cannot keep up
                return
            self._inbox.append((subject, data))
            if self._inbox_scheduled:
                return
            self._inbox_scheduled = True
        # Handed over once the messages of this turn of the loop are in (one read from NATS
        # holds many): one wake of the reactor per batch, not per message.
        self._loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        self.reactor.callFromThread(self._drain)

    def _deliver_here(self, subject: str, data: bytes) -> None:
        # On the reactor's loop: straight to the cluster, no inbox (nats-py's
        # per-subscription pending limits bound what waits).
        self.on_messages([(subject, data)])

    async def _connect(self) -> None:
        config = self.config
        options = dict(
            servers=list(config.servers), name=config.node,
            # A node routes its own publications locally: NATS must not echo them back.
            no_echo=True,
            allow_reconnect=True, max_reconnect_attempts=-1,
            reconnect_time_wait=config.reconnect_wait, connect_timeout=config.connect_timeout,
            pending_size=config.max_pending_bytes,
            error_cb=self._on_error, disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected, closed_cb=self._on_closed,
        )
        if config.user is not None:
            options.update(user=config.user, password=config.password)
        if config.token is not None:
            options.update(token=config.token)
        if config.nkey_seed is not None:
            options.update(nkeys_seed_str=config.nkey_seed)
        if config.credentials_file is not None:
            options.update(user_credentials=config.credentials_file)  # read again at each connect
        if config.tls is not None or any(s.startswith("tls://") for s in config.servers):
            options["tls"] = _tls_context(config.tls)
            if config.tls is not None and config.tls.hostname:
                options["tls_hostname"] = config.tls.hostname
        said_unreachable = False
        while True:
            try:
                nc = await nats.connect(**options)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not said_unreachable:
                    self._state("unreachable", _describe(e))
                    said_unreachable = True
                await asyncio.sleep(config.reconnect_wait)
                continue
            with self._lock:
                self._commands.insert(0, ("connected", nc, nc.connected_url.netloc if nc.connected_url else ""))
            self._set_wake()
            return

    async def _on_error(self, e) -> None:
        self._state("error", _describe(e))

    async def _on_disconnected(self) -> None:
        if not self._closing:
            self._state("disconnected")

    async def _on_reconnected(self) -> None:
        url = self._nc.connected_url if self._nc is not None else None
        self._state("reconnected", url.netloc if url else "")

    async def _on_closed(self) -> None:
        if not self._closing:
            self._state("closed")


def _tls_context(tls) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca if tls is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is not None and tls.certificate:
        context.load_cert_chain(tls.certificate, tls.key)
    return context


def _describe(e) -> str:
    # Never the credentials: nats-py's errors carry server text, not ours.
    text = str(e) or type(e).__name__
    return text if len(text) < 300 else text[:300] + "..."
