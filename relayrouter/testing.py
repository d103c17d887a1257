"""In-memory peers for driving the core without sockets (used by our tests,
and usable by anyone embedding the core)."""

from autobahn.wamp import message as m
from autobahn.wamp.serializer import CBORObjectSerializer, MsgPackObjectSerializer

from .core.peer import TransportInfo
from .core.router import Router
from .transport.serializers import FastJsonObjectSerializer

# The object serializers the router's listeners use, by WAMP name.
SERIALIZERS = {
    "json": FastJsonObjectSerializer,
    "msgpack": MsgPackObjectSerializer,
    "cbor": CBORObjectSerializer,
}


class FakeTimer:
    def __init__(self, clock: "FakeClock", when: float, fn, args) -> None:
        self.clock, self.when, self.fn, self.args = clock, when, fn, args
        self.cancelled = self.called = False

    def cancel(self) -> None:
        if not self.active():
            raise ValueError("timer is not active")
        self.cancelled = True
        self.clock.timers.remove(self)

    def active(self) -> bool:
        return not (self.cancelled or self.called)


class FakeClock:
    """Time that moves only when a test says so (like twisted's task.Clock,
    without importing Twisted into core tests)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.timers: list[FakeTimer] = []

    def seconds(self) -> float:
        return self.now

    __call__ = seconds  # authenticators take a plain "now" callable

    def callLater(self, delay: float, fn, *args) -> FakeTimer:
        timer = FakeTimer(self, self.now + delay, fn, args)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while True:
            due = [t for t in self.timers if t.when <= self.now]
            if not due:
                return
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            timer.called = True
            timer.fn(*timer.args)


class MemoryPeer:
    """Records what the router sends; ``closed`` tells whether it hung up.

    With a serializer (a name of ``SERIALIZERS`` or an object serializer) every
    message is turned into bytes and decoded again, as a real peer would
    receive it: what cannot be serialized, or does not come back as it was
    sent, is kept in ``unserializable`` (and, like a real transport, not
    delivered) instead of raising into the core, which a peer never does.
    ``MemoryPeer.default_serializer`` is used when none is given.
    """

    default_serializer = None
    # When a list, every new peer appends itself (a test fixture checks them all).
    created: list | None = None

    def __init__(self, serializer=None) -> None:
        self.sent: list[m.Message] = []
        self.closed = False
        self.session = None
        self.unserializable: list[tuple[m.Message, str]] = []
        serializer = serializer if serializer is not None else self.default_serializer
        if isinstance(serializer, str):
            serializer = SERIALIZERS[serializer]()
        self._serializer = serializer
        if self.created is not None:
            self.created.append(self)

    def send(self, message: m.Message) -> None:
        if self._serializer is not None:
            problem = _wire_problem(message, self._serializer)
            if problem is not None:
                self.unserializable.append((message, problem))
                return
        self.sent.append(message)

    def close(self) -> None:
        self.closed = True

    def take(self) -> list[m.Message]:
        sent, self.sent = self.sent, []
        return sent

    def last(self) -> m.Message:
        return self.sent[-1]

    def receive(self, raw: list) -> None:
        """Deliver a raw WAMP array to the router, as a transport would."""
        self.session.receive(raw)


def _wire_problem(message: m.Message, serializer) -> str | None:
    """Why ``message`` would not reach a peer intact over ``serializer``, or None."""
    try:
        data = message.serialize(serializer)
        [decoded] = serializer.unserialize(data)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    sent = message.marshal()
    if not _same(decoded, sent):
        return f"decodes as {decoded!r}, sent {sent!r}"
    return None


def _same(decoded, sent) -> bool:
    """Equal as a peer would see it: tuples arrive as lists, NaN is NaN."""
    if isinstance(sent, (list, tuple)):
        return (isinstance(decoded, list) and len(decoded) == len(sent)
                and all(_same(d, s) for d, s in zip(decoded, sent)))
    if isinstance(sent, dict):
        return (isinstance(decoded, dict) and decoded.keys() == sent.keys()
                and all(_same(decoded[k], v) for k, v in sent.items()))
    if isinstance(sent, float) and sent != sent:
        return isinstance(decoded, float) and decoded != decoded
    return type(decoded) is type(sent) and decoded == sent


def make_router(*realms: str, clock=None) -> Router:
    router = Router(clock or FakeClock())
    for name in realms or ("realm1",):
        router.add_realm(name)
    return router


def connect(router: Router, transport: TransportInfo | None = None, serializer=None) -> MemoryPeer:
    peer = MemoryPeer(serializer)
    peer.session = router.session(peer, transport or TransportInfo())
    return peer


ALL_ROLES = {"subscriber": {}, "publisher": {}, "caller": {}, "callee": {}}


def join(router: Router, realm: str = "realm1", serializer=None, **details) -> MemoryPeer:
    """A peer with an established anonymous session; its WELCOME already taken."""
    peer = connect(router, serializer=serializer)
    peer.receive([1, realm, {"roles": ALL_ROLES, **details}])
    welcome = peer.take()
    assert isinstance(welcome[-1], m.Welcome), welcome
    return peer
