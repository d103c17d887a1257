"""Micro-benchmarks of relayrouter's core alone: no sockets, no reactor.

    python bench/micro.py [--seconds 1.0] [--only publish,filters,call,serialize,parse,login]

Each case builds a router with in-memory counting peers, then times a loop
of one operation: a PUBLISH routed to N subscribers, a call through the
dealer (CALL -> INVOCATION -> YIELD -> RESULT), or one codec operation.
Messages enter the core as decoded WAMP arrays, exactly as a transport hands
them over, so parsing into Autobahn's message classes is part of the time.
The figures are ops/s of this Python process; compare them before and after
a change on the same machine, never across machines.
"""

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Callable

import txaio

# Autobahn's Serializer classes keep statistics with txaio's clock, bound at
# import: a framework must be chosen first.  (The core itself needs none.)
txaio.use_twisted()

from autobahn.wamp import message as m  # noqa: E402
from autobahn.wamp import serializer as ser  # noqa: E402

if __package__ in (None, ""):  # run as a script: python bench/micro.py
    sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.dirname(__file__)))

from bench.counting import CountingPeer, join_counting  # noqa: E402
from relayrouter.core.limits import SessionLimits  # noqa: E402
from relayrouter.core.realm import RealmPolicy  # noqa: E402
from relayrouter.core.router import Router  # noqa: E402
from relayrouter.testing import FakeClock  # noqa: E402

TOPIC = "bench.micro.topic"
PROCEDURE = "bench.micro.echo"
PAYLOAD = "p" * 200
ARG = "x" * 100
PATTERNS = 10_000

PUBLISH, SUBSCRIBE, CALL, REGISTER, YIELD = 16, 32, 48, 64, 70

# The session rate limit (100,000 messages a second, as much again at once)
# is a token bucket over the router's clock.  Here the clock stands still, so
# a publisher would run dry after its burst and the rest of its PUBLISHes be
# dropped, as they should: the bench sessions get a burst they never exhaust.
# The bucket is still checked for every message, as in a running router.
UNLIMITED_BURST = SessionLimits(burst=10**15)


def make_router() -> Router:
    router = Router(FakeClock())
    router.add_realm("realm1", policy=RealmPolicy(limits=UNLIMITED_BURST))
    return router

OBJECT_SERIALIZERS = {
    "json": ser.JsonObjectSerializer(batched=False),
    "msgpack": ser.MsgPackObjectSerializer(batched=False),
    "cbor": ser.CBORObjectSerializer(batched=False),
}
SERIALIZER_CLASSES = {"json": ser.JsonSerializer, "msgpack": ser.MsgPackSerializer, "cbor": ser.CBORSerializer}
try:  # the JSON codec relayrouter's transport uses, when it has its own
    from relayrouter.transport.serializers import FastJsonObjectSerializer, FastJsonSerializer
except ImportError:
    pass
else:
    OBJECT_SERIALIZERS["json-router"] = FastJsonObjectSerializer(batched=False)
    SERIALIZER_CLASSES["json-router"] = FastJsonSerializer
try:  # the router's MessagePack and CBOR codecs (JavaScript undefined understood)
    from relayrouter.transport import serializers as _rr
    OBJECT_SERIALIZERS["msgpack-router"] = _rr.MsgPackObjectSerializer(batched=False)
    SERIALIZER_CLASSES["msgpack-router"] = _rr.RouterMsgPackSerializer
    OBJECT_SERIALIZERS["cbor-router"] = _rr.CBORObjectSerializer(batched=False)
    SERIALIZER_CLASSES["cbor-router"] = _rr.RouterCBORSerializer
except AttributeError:
    pass
try:  # how the core reads JavaScript undefined in options
    from relayrouter.core.codec import UNDEFINED
except ImportError:
    UNDEFINED = None


@dataclass
class Case:
    """One timed operation: ``step(i)`` does it once; ``delivered()`` counts what peers got;
    ``product()`` is what the last step made (a codec case's bytes or messages), for checking."""

    name: str
    step: Callable[[int], None]
    delivered: Callable[[], int]
    per_op: int  # messages a correct router delivers per step
    product: Callable[[], object] = lambda: None


@dataclass(frozen=True)
class Result:
    name: str
    ops: int
    seconds: float
    delivered: int
    expected: int

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else float("inf")


def measure(case: Case, iterations: int) -> Result:
    before = case.delivered()
    step = case.step
    start = time.perf_counter()
    for i in range(1, iterations + 1):
        step(i)
    seconds = time.perf_counter() - start
    return Result(case.name, iterations, seconds, case.delivered() - before, iterations * case.per_op)


# ----------------------------------------------------------------- broker

def _subscribe(peer: CountingPeer, topic: str, match: str | None = None) -> None:
    options = {"match": match} if match else {}
    peer.receive([SUBSCRIBE, peer.count + 1, options, topic])
    if type(peer.last).__name__ != "Subscribed":
        raise RuntimeError(f"subscribing to {topic!r} failed: {peer.last!r}")


def publish_case(subscribers: int, serializer: str | None = None, patterns: int = 0) -> Case:
    """One PUBLISH routed to ``subscribers`` exact subscribers.

    With ``serializer``, each receiver makes the EVENT's bytes as a transport
    would (Autobahn caches them per object serializer: one encoding per
    publication).  With ``patterns``, that many prefix and wildcard
    subscriptions that do not match the topic are present.
    """
    router = make_router()
    obj_ser = OBJECT_SERIALIZERS[serializer] if serializer else None
    receivers = [join_counting(router, serializer=obj_ser) for _ in range(subscribers)]
    for peer in receivers:
        _subscribe(peer, TOPIC)
    if patterns:
        _add_patterns(join_counting(router), patterns)
    for peer in receivers:
        peer.count = 0
    publisher = join_counting(router)
    receive = publisher.session.receive

    def step(i: int) -> None:
        receive([PUBLISH, i, {}, TOPIC, [PAYLOAD]])

    label = f"publish -> {subscribers} subscriber{'s' if subscribers != 1 else ''}"
    if serializer:
        label += f" (+{serializer} bytes)"
    if patterns:
        label += f" ({patterns:,} patterns present)"
    return Case(label, step, lambda: _count(receivers, m.Event), subscribers)


def _add_patterns(holder: CountingPeer, count: int) -> None:
    """Half prefix, half wildcard subscriptions that share the topic's first component."""
    for i in range(count):
        if i % 2:
            _subscribe(holder, f"bench.p{i}.", "prefix")
        else:
            _subscribe(holder, f"bench..w{i}.topic", "wildcard")


def filtered_case(plain: int, filtered: int, same_topic: bool, distinct: int = 1) -> Case:
    """``plain`` plain subscribers, plus ``filtered`` subscribers with ``_fields``/``_where``
    (``distinct`` different filters among them) on the topic or on another one.

    Each PUBLISH carries a device message that passes every filter, so a
    correct router delivers ``plain`` events, plus ``filtered`` when they share
    the topic."""
    router = make_router()
    receivers = [join_counting(router) for _ in range(plain)]
    for peer in receivers:
        _subscribe(peer, TOPIC)
    others = [join_counting(router) for _ in range(filtered)]
    for i, peer in enumerate(others):
        options = {"_fields": "attrs/temperature,metadata", "_where": f"attrs.temperature=gte:{i % distinct};"}
        peer.receive([SUBSCRIBE, 1, options, TOPIC if same_topic else TOPIC + ".other"])
        if type(peer.last).__name__ != "Subscribed":
            raise RuntimeError(f"filtered subscribe failed: {peer.last!r}")
    for peer in receivers + others:
        peer.count = 0
    publisher = join_counting(router)
    receive = publisher.session.receive
    document = {"metadata": {"deviceid": "d1", "tenant": "t", "timestamp": 1}, "attrs": {"temperature": 99, "x": 1}}

    def step(i: int) -> None:
        receive([PUBLISH, i, {}, TOPIC, [document]])

    where = "same topic" if same_topic else "another topic"
    label = f"publish -> {plain} plain + {filtered} filtered ({distinct} filters, {where})"
    counted = receivers + (others if same_topic else [])
    return Case(label, step, lambda: _count(counted, m.Event), plain + (filtered if same_topic else 0))


# ----------------------------------------------------------------- dealer

def call_case(serializer: str | None = None) -> Case:
    """One call through the dealer: CALL -> INVOCATION -> YIELD -> RESULT."""
    router = make_router()
    obj_ser = OBJECT_SERIALIZERS[serializer] if serializer else None
    callee = join_counting(router, serializer=obj_ser)
    callee.receive([REGISTER, 1, {}, PROCEDURE])
    if type(callee.last).__name__ != "Registered":
        raise RuntimeError(f"registering failed: {callee.last!r}")
    caller = join_counting(router, serializer=obj_ser)
    call, answer = caller.session.receive, callee.session.receive

    def step(i: int) -> None:
        call([CALL, i, {}, PROCEDURE, [ARG]])
        answer([YIELD, callee.last.request, {}, [ARG]])

    label = "call through the dealer" + (f" (+{serializer} bytes)" if serializer else "")
    return Case(label, step, lambda: _count([caller], m.Result), 1)


def _count(peers: list[CountingPeer], kind: type) -> int:
    """Messages the peers got, or -1 when one's last message is of the wrong kind (an ERROR)."""
    for peer in peers:
        if peer.count and not isinstance(peer.last, kind):
            return -1
    return sum(peer.count for peer in peers)


# ----------------------------------------------------------------- codecs

def serialize_case(name: str) -> Case:
    """Encode one EVENT (marshal + encode), bypassing Autobahn's per-object cache."""
    obj_ser = OBJECT_SERIALIZERS[name]
    event = m.Event(123456, 2**50 + 7, args=[PAYLOAD])
    made = [b""]
    done = [0]

    def step(i: int) -> None:
        made[0] = obj_ser.serialize(event.marshal())
        done[0] += 1

    return Case(f"serialize EVENT ({name})", step, lambda: done[0], 1, lambda: made[0])


def unserialize_case(name: str) -> Case:
    """Decode one PUBLISH's bytes into Autobahn message objects (what the transport does)."""
    serializer = SERIALIZER_CLASSES[name]()
    data, _ = serializer.serialize(m.Publish(1, TOPIC, args=[PAYLOAD]))
    made = [[]]
    done = [0]

    def step(i: int) -> None:
        made[0] = serializer.unserialize(data)
        done[0] += len(made[0])

    return Case(f"unserialize PUBLISH ({name})", step, lambda: done[0], 1, lambda: made[0])


_PARSE_CASES = {
    "PUBLISH": lambda i: [PUBLISH, i, {"exclude_me": True}, TOPIC, [PAYLOAD]],
    "PUBLISH, an undefined option": lambda i: [PUBLISH, i, {"exclude_me": True, "_trace": UNDEFINED}, TOPIC,
                                               [PAYLOAD]],
    "SUBSCRIBE": lambda i: [SUBSCRIBE, i, {}, TOPIC],
    "SUBSCRIBE, wampy's undefined options": lambda i: [SUBSCRIBE, i, {"match": UNDEFINED, "get_retained": UNDEFINED},
                                                       TOPIC],
}


def parse_case(name: str) -> Case:
    """Turn one decoded array (built fresh each time, as a decoder does) into a message."""
    from relayrouter.core.codec import parse

    build = _PARSE_CASES[name]
    made = [None]
    done = [0]

    def step(i: int) -> None:
        made[0] = parse(build(i))
        done[0] += 1

    return Case(f"parse {name}", step, lambda: done[0], 1, lambda: made[0])


# ----------------------------------------------------------------- logins

def login_case(limited: bool, failing: bool = False) -> Case:
    """One ticket login (HELLO, CHALLENGE, AUTHENTICATE, WELCOME or ABORT) from a
    fresh session, optionally behind the failed-login limiter; ``failing``: a
    wrong ticket from a new authid each time (address ceiling out of reach)."""
    from relayrouter.auth.ratelimit import FailureLimiter, FailureLimits, RateLimited
    from relayrouter.auth.ticket import TicketAuthenticator, TicketPrincipal
    from relayrouter.core.peer import TransportInfo

    router = make_router()
    method = TicketAuthenticator({"alice": TicketPrincipal("alice-ticket", "user")})
    if limited:
        limits = FailureLimits(address_burst=10**9, max_entries=10**7)
        method = RateLimited(method, FailureLimiter(router.clock, limits))
    router.realms["realm1"].authenticators = {"ticket": method}
    transport = TransportInfo(peer="tcp4:10.0.0.1:4000")
    done = [0]
    want = m.Abort if failing else m.Welcome

    def step(i: int) -> None:
        peer = CountingPeer()
        peer.session = router.session(peer, transport)
        authid = f"user{i}" if failing else "alice"
        peer.receive([1, "realm1", {"roles": {"caller": {}}, "authmethods": ["ticket"], "authid": authid}])
        peer.receive([5, "wrong" if failing else "alice-ticket", {}])
        done[0] += type(peer.last) is want
        peer.session.transport_lost()  # gone, so sessions per address stay at one

    label = f"ticket login{', failing' if failing else ''}{' (failure limiter)' if limited else ''}"
    return Case(label, step, lambda: done[0], 1)


# ----------------------------------------------------------------- running

def cases(groups: set[str]) -> list[Callable[[], Case]]:
    """Factories, so that a case's router is built only when it runs."""
    out = []
    if "publish" in groups:
        out += [lambda: publish_case(1), lambda: publish_case(100),
                lambda: publish_case(1, "json"), lambda: publish_case(100, "json"),
                lambda: publish_case(1, "msgpack"), lambda: publish_case(100, "msgpack"),
                *([lambda: publish_case(100, "json-router")] if "json-router" in OBJECT_SERIALIZERS else []),
                *([lambda: publish_case(100, "msgpack-router")] if "msgpack-router" in OBJECT_SERIALIZERS else []),
                lambda: publish_case(1, patterns=PATTERNS)]
    if "filters" in groups:
        out += [lambda: filtered_case(100, 0, True), lambda: filtered_case(100, 100, False, 10),
                lambda: filtered_case(100, 10, True, 10), lambda: filtered_case(0, 100, True, 1),
                lambda: filtered_case(0, 100, True, 100)]
    if "call" in groups:
        out += [lambda: call_case(), lambda: call_case("json"), lambda: call_case("msgpack")]
        if "json-router" in OBJECT_SERIALIZERS:
            out.append(lambda: call_case("json-router"))
        if "msgpack-router" in OBJECT_SERIALIZERS:
            out.append(lambda: call_case("msgpack-router"))
    if "serialize" in groups:
        for name in OBJECT_SERIALIZERS:
            out += [lambda name=name: serialize_case(name), lambda name=name: unserialize_case(name)]
    if "login" in groups:
        out += [lambda: login_case(False), lambda: login_case(True),
                lambda: login_case(False, failing=True), lambda: login_case(True, failing=True)]
    if "parse" in groups:
        out += [lambda name=name: parse_case(name) for name in _PARSE_CASES
                if UNDEFINED is not None or "undefined" not in name]
    return out


def run(case: Case, seconds: float) -> Result:
    """Calibrate on a short run, then time about ``seconds`` worth of iterations."""
    probe = measure(case, 200)
    iterations = max(200, int(probe.ops_per_s * seconds))
    return measure(case, iterations)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per case (default 1.0)")
    parser.add_argument("--only", default="publish,call,serialize,parse,login",
                        help="groups to run: publish, filters, call, serialize, parse, login (comma-separated)")
    args = parser.parse_args(argv)
    groups = set(args.only.split(","))
    print(f"{'case':<52} {'ops/s':>12} {'µs/op':>9} {'delivered/op':>13}")
    bad = 0
    for factory in cases(groups):
        result = run(factory(), args.seconds)
        ok = result.delivered == result.expected
        bad += not ok
        print(f"{result.name:<52} {result.ops_per_s:>12,.0f} {1e6 / result.ops_per_s:>9.2f} "
              f"{result.delivered / result.ops:>13g}{'' if ok else '  WRONG COUNT'}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
