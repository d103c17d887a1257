from relayrouter.auth.onetime import Grant, OneTimeTickets
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
