"""Property-based: arbitrary message sequences from many sessions never make the
core raise, bad input is answered per spec, and nothing is left behind."""

from autobahn.wamp import message as m
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relayrouter.core.codec import parse
from relayrouter.core.router import Router, RouterObserver
from relayrouter.core.session import State
from relayrouter.testing import ALL_ROLES, FakeClock, connect

URIS = st.sampled_from(["com.a", "com.a.b", "com.", "com..x", "", "com.a b", "wamp.x", "com.b"])
IDS = st.one_of(st.integers(min_value=0, max_value=6), st.just(2**53), st.just(-1))
OPTS = st.one_of(
    st.just({}),
    st.fixed_dictionaries({}, optional={
        "match": st.sampled_from(["exact", "prefix", "wildcard", "bogus", None]),
        "invoke": st.sampled_from(["single", "roundrobin", "random", "first", "last", "x"]),
        "acknowledge": st.booleans(),
        "exclude_me": st.booleans(),
        "receive_progress": st.booleans(),
        "progress": st.booleans(),
        "disclose_me": st.booleans(),
        "eligible": st.lists(IDS, max_size=2),
        "exclude": st.lists(IDS, max_size=2),
        "mode": st.sampled_from(["skip", "kill"]),
    }),
)
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.binary(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=6,
)
ARGS = st.lists(JSONISH, max_size=2)

HELLO = st.builds(lambda r: [1, r, {"roles": ALL_ROLES}], st.sampled_from(["realm1", "realm1", "nope"]))
WELL_FORMED = st.one_of(
    HELLO, HELLO, HELLO,
    st.builds(lambda u: [6, {}, u], st.sampled_from(["wamp.close.normal", "wamp.close.goodbye_and_out"])),
    st.just([3, {}, "wamp.close.normal"]),
    st.builds(lambda i, o, u, a: [16, i, o, u, a], IDS, OPTS, URIS, ARGS),
    st.builds(lambda i, o, u: [32, i, o, u], IDS, OPTS, URIS),
    st.builds(lambda i, s: [34, i, s], IDS, IDS),
    st.builds(lambda i, o, u, a: [48, i, o, u, a], IDS, OPTS, URIS, ARGS),
    st.builds(lambda i, o: [49, i, o], IDS, OPTS),
    st.builds(lambda i, o, u: [64, i, o, u], IDS, OPTS, URIS),
    st.builds(lambda i, r: [66, i, r], IDS, IDS),
    st.builds(lambda i, o, a: [70, i, o, a], IDS, OPTS, ARGS),
    st.builds(lambda i, u, a: [8, 68, i, {}, u, a], IDS, URIS, ARGS),
)
MALFORMED = st.one_of(
    st.builds(lambda t, rest: [t, *rest], st.integers(min_value=-2, max_value=300), st.lists(JSONISH, max_size=4)),
    st.lists(JSONISH, max_size=4),
    JSONISH,
)
STEP = st.tuples(st.integers(min_value=0, max_value=3), st.one_of(
    WELL_FORMED.map(lambda raw: (True, raw)), MALFORMED.map(lambda raw: (False, raw))))


class Faults(RouterObserver):
    def __init__(self) -> None:
        self.internal = []

    def internal_error(self, session, error) -> None:
        self.internal.append(error)


def parses(raw) -> bool:
    try:
        parse(raw)
    except Exception:
        return False
    return True


def answered_per_spec(peer, before: int) -> bool:
    """A message that is not valid WAMP gets ABORT protocol_violation or ERROR."""
    new = peer.sent[before:]
    if not new:
        return peer.session.state in (State.CLOSED, State.CLOSING)
    last = new[-1]
    if isinstance(last, m.Abort):
        return last.reason == "wamp.error.protocol_violation" and peer.closed
    return isinstance(last, m.Error)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=40))
def test_the_core_survives_anything_and_leaves_nothing_behind(steps):
    faults = Faults()
    router = Router(FakeClock(), observer=faults)
    router.add_realm("realm1")
    realm = router.realms["realm1"]
    peers = [connect(router) for _ in range(4)]
    everyone = list(peers)
    for index, (well_formed, raw) in steps:
        peer = peers[index]
        if peer.closed or peer.session.state is State.CLOSED:
            peer = peers[index] = connect(router)  # the client reconnects
            everyone.append(peer)
        was = peer.session.state
        before = len(peer.sent)
        peer.receive(raw)
        if not well_formed and was not in (State.CLOSED, State.CLOSING) and not parses(raw):
            assert answered_per_spec(peer, before), (raw, peer.sent[before:])
        router.clock.advance(0.01)
    assert faults.internal == []
    for peer in everyone:
        peer.session.transport_lost()
    assert realm.sessions == {} and not realm.sessions_by_address
    assert realm.broker.subscriptions_by_id == {} and len(realm.broker.subscriptions) == 0
    assert realm.dealer.registrations_by_id == {} and len(realm.dealer.registrations) == 0
    for peer in everyone:
        session = peer.session
        assert not session.subscriptions and not session.registrations
        assert session.invocations == {} and session.calls == {}
