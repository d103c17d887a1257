import pytest

from relayrouter.auth.onetime import Grant, OneTimeTickets, TooManyTickets
from relayrouter.auth.ratelimit import FailureLimiter, FailureLimits, RateLimited, address_of
from relayrouter.auth.ticketing import TicketMethods
from relayrouter.core.auth import Accept, Challenge, Deny
from relayrouter.core.peer import TransportInfo

from .wire import request


def grant(**kw):
    base = dict(realm="realm1", authid="alice", authrole="user", claims={"sub": "alice"}, expires_at=None)
    return Grant(**{**base, **kw})


def test_ticket_is_long_random_single_use_and_expires(clock):
    vault = OneTimeTickets(clock, lifetime=30)
    ticket = vault.mint(grant())
    assert ticket.startswith("rrt_") and len(ticket) >= 4 + 43  # 256 bits, base64url
    assert ticket not in repr(vault.pending_by_digest)
    assert vault.consume(ticket, "realm1").authid == "alice"
    assert vault.consume(ticket, "realm1") is None
    late = vault.mint(grant())
    clock.now += 30
    assert vault.consume(late, "realm1") is None


def test_ticket_is_bound_to_its_realm_and_never_outlives_the_token(clock):
    vault = OneTimeTickets(clock, lifetime=30)
    assert vault.consume(vault.mint(grant()), "other") is None
    short = vault.mint(grant(expires_at=clock.now + 5))
    clock.now += 6
    assert vault.consume(short, "realm1") is None


def test_void_drops_pending_tickets(clock):
    vault = OneTimeTickets(clock)
    doomed = vault.mint(grant(claims={"bid": "b-1"}))
    kept = vault.mint(grant(authid="bob", claims={"bid": "b-2"}))
    assert vault.void(lambda g: g.claims.get("bid") == "b-1") == 1
    assert vault.consume(doomed, "realm1") is None
    assert vault.consume(kept, "realm1") is not None


def test_ticket_methods_pick_the_check_by_form(clock):
    vault = OneTimeTickets(clock)
    methods = TicketMethods("realm1", one_time=vault)
    assert isinstance(methods.hello(request()), Challenge)
    accepted = methods.authenticate(request(), None, vault.mint(grant()), {})
    assert isinstance(accepted, Accept) and accepted.authprovider == "one-time-ticket"
    assert isinstance(methods.authenticate(request(), None, "rrt_nope", {}), Deny)
    in_url = TransportInfo(http_query={"ticket": [vault.mint(grant())]})
    assert isinstance(methods.hello(request(transport=in_url)), Accept)


def test_rate_limiter_refuses_after_burst_and_recovers(clock):
    limiter = FailureLimiter(clock, FailureLimits(burst=3, per_minute=6))

    class Always:
        authmethod = "ticket"

        def hello(self, request):
            return Deny("no")

    wrapped = RateLimited(Always(), limiter)
    req = request(transport=TransportInfo(peer="tcp4:10.0.0.1:5555"))
    for _ in range(3):
        assert wrapped.hello(req).message == "no"
    limited = wrapped.hello(req)
    assert "too many failed" in limited.message
    other = request(transport=TransportInfo(peer="tcp4:10.0.0.2:5555"))
    assert wrapped.hello(other).message == "no"
    clock.now += 10
    assert wrapped.hello(req).message == "no"
    assert address_of("tcp4:127.0.0.1:1234") == "tcp4:127.0.0.1"


class SharedTickets:
    """The cluster's side of a shared vault, in memory: put_ticket and take_ticket answer Deferreds."""

    def __init__(self, reachable=True):
        self.reachable = reachable
        self.held = {}

    def put_ticket(self, digest, grant, expires_at):
        from twisted.internet import defer

        if not self.reachable:
            return defer.succeed(False)
        self.held[digest] = (grant, expires_at)
        return defer.succeed(True)

    def take_ticket(self, digest, realm):
        from twisted.internet import defer

        entry = self.held.pop(digest, None)
        return defer.succeed(entry[0] if entry is not None and entry[0].realm == realm else None)


def test_a_shared_vault_hands_its_tickets_to_the_cluster_and_asks_it_for_others(clock):
    shared = SharedTickets()
    vault = OneTimeTickets(clock)
    vault.shared = shared
    ticket = vault.mint(grant())
    assert vault.share(ticket).result == "cluster"
    assert vault.pending_by_digest == {}  # the cluster's now: used up there, once
    assert ticket not in repr(shared.held)
    assert vault.take(ticket, "realm1").result.authid == "alice"
    assert vault.take(ticket, "realm1").result is None
    # Minted while the cluster is away: kept here, used here, once, without asking the cluster.
    shared.reachable = False
    local = vault.mint(grant(authid="bob"))
    assert vault.share(local).result == "node"
    assert vault.take(local, "realm1").authid == "bob"
    assert vault.take(local, "realm1").result is None  # not here any more: the cluster says unknown


def test_ticket_methods_deny_with_the_clusters_reason_when_it_cannot_be_asked(clock):
    from twisted.internet import defer

    class Away(SharedTickets):
        def take_ticket(self, digest, realm):
            return defer.fail(RuntimeError("this node cannot reach the cluster to check the one-time ticket"))

    vault = OneTimeTickets(clock)
    vault.shared = Away()
    methods = TicketMethods("realm1", one_time=vault)
    decision = methods.authenticate(request(), None, "rrt_" + "x" * 43, {})
    assert decision.result == Deny("this node cannot reach the cluster to check the one-time ticket")


def test_a_ticket_joins_as_the_token_that_minted_it(clock):
    claims = {"sub": "alice", "topic": "pend00"}
    minted = grant(claims=claims, expires_at=clock.now + 600)
    assert minted.accept() == Accept("alice", "user", "ticket", authprovider="one-time-ticket",
                                     permissions=claims, expires_at=clock.now + 600)


def test_a_ticket_carries_256_random_bits():
    tickets = {OneTimeTickets(lambda: 0.0).mint(grant()) for _ in range(20)}
    assert len(tickets) == 20 and {len(t) for t in tickets} == {len("rrt_") + 43}


def test_what_is_not_a_ticket_is_none_of_the_vaults_business(clock):
    vault = OneTimeTickets(clock)
    for value in (7, None, ["rrt_x"], b"rrt_x", "not-a-ticket"):
        assert vault.consume(value, "realm1") is None
        assert vault.take(value, "realm1") is None


def test_pending_tickets_are_capped_and_an_expired_one_makes_room(clock):
    vault = OneTimeTickets(clock, lifetime=30, max_pending=2)
    vault.mint(grant())
    vault.mint(grant())
    with pytest.raises(TooManyTickets) as refused:
        vault.mint(grant())
    assert str(refused.value) == "too many unused tickets are pending"
    clock.now += 30  # both expire this very second: they make room
    assert vault.consume(vault.mint(grant(authid="bob")), "realm1").authid == "bob"


def test_a_vault_alone_keeps_its_tickets_and_tells_the_cluster_each_tickets_expiry(clock):
    assert OneTimeTickets(clock).share("rrt_" + "x" * 43) == "node"
    shared = SharedTickets()
    vault = OneTimeTickets(clock, lifetime=30)
    vault.shared = shared
    vault.share(vault.mint(grant()))
    [(held, expires_at)] = shared.held.values()
    assert held == grant() and expires_at == clock.now + 30


def test_a_ticket_the_cluster_failed_to_store_is_dropped_here_too(clock):
    from twisted.internet import defer

    class Failing(SharedTickets):
        def put_ticket(self, digest, grant, expires_at):
            return defer.fail(ConnectionError("the cluster went away mid-store"))

    vault = OneTimeTickets(clock)
    vault.shared = Failing()
    ticket = vault.mint(grant())
    failures = []
    vault.share(ticket).addErrback(failures.append)
    assert [f.type for f in failures] == [ConnectionError]
    assert vault.pending_by_digest == {}  # maybe stored there: never handed out, so never usable here


def test_a_ticket_voided_while_the_cluster_stores_it_is_still_the_clusters(clock):
    from twisted.internet import defer

    later = defer.Deferred()

    class Slow(SharedTickets):
        def put_ticket(self, digest, grant, expires_at):
            return later

    vault = OneTimeTickets(clock)
    vault.shared = Slow()
    answers = []
    vault.share(vault.mint(grant())).addCallback(answers.append)
    assert vault.void(lambda g: True) == 1
    later.callback(True)
    assert answers == ["cluster"]
