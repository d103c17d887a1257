"""Failed-login limits through the core session, with a fake clock: budgets
per (address, authid), a much larger ceiling per address, and innocent users
behind the same address never locked out by someone else's failures."""

import random
import string

import pytest
from autobahn.wamp import message as m

from relayrouter.auth.ratelimit import (BY_ADDRESS, BY_AUTHID, FailureLimiter, FailureLimits, RateLimited,
                                        claimed_authid)
from relayrouter.auth.ticket import DENIED, TicketAuthenticator, TicketPrincipal
from relayrouter.core.peer import TransportInfo
from relayrouter.testing import ALL_ROLES, FakeClock, connect, make_router

LAB = "tcp4:10.20.30.40"  # one NAT address for a whole lab
USERS = {f"student{i:02d}": f"ticket-of-student{i:02d}" for i in range(30)}
AUTHID_REFUSAL = "too many failed authentication attempts for this authid from your address; try again in"
ADDRESS_REFUSAL = ("too many failed authentication attempts from your address, across many authids; "
                   "try again in")


class Lab:
    """A router whose realm takes static tickets behind the failure limiter."""

    def __init__(self, limits=FailureLimits()) -> None:
        self.clock = FakeClock(1_700_000_000.0)
        self.router = make_router(clock=self.clock)
        self.limiter = FailureLimiter(self.clock, limits)
        tickets = TicketAuthenticator({a: TicketPrincipal(t, "student") for a, t in USERS.items()})
        self.router.realms["realm1"].authenticators = {"ticket": RateLimited(tickets, self.limiter)}
        self.port = 40000

    def login(self, authid, ticket, address=LAB) -> m.Message:
        self.port += 1
        peer = connect(self.router, TransportInfo(peer=f"{address}:{self.port}"))
        peer.receive([1, "realm1", {"roles": ALL_ROLES, "authmethods": ["ticket"], "authid": authid}])
        if isinstance(peer.last(), m.Challenge):
            peer.receive([5, ticket, {}])
        return peer.last()


def welcomed(msg, authid) -> bool:
    return isinstance(msg, m.Welcome) and msg.authid == authid


def aborted(msg, text) -> bool:
    assert isinstance(msg, m.Abort), msg
    assert msg.reason == "wamp.error.authentication_failed", msg.reason
    assert msg.message.startswith(text), msg.message
    return True


def test_one_user_failing_50_times_locks_out_only_that_user():
    lab = Lab()  # defaults: 10 failures per (address, authid), refilled at 10 per minute
    unlucky = "student00"
    answers = [lab.login(unlucky, "mistyped") for _ in range(50)]
    assert all(aborted(a, DENIED) for a in answers[:10])
    assert all(aborted(a, AUTHID_REFUSAL) for a in answers[10:])
    for authid, ticket in USERS.items():  # the other 29, at once
        if authid != unlucky:
            assert welcomed(lab.login(authid, ticket), authid)
    # Refused, even with the right ticket, until a token has grown back ...
    assert aborted(lab.login(unlucky, USERS[unlucky]), AUTHID_REFUSAL + " 6 s")
    lab.clock.advance(5.9)
    assert aborted(lab.login(unlucky, USERS[unlucky]), AUTHID_REFUSAL + " 1 s")
    lab.clock.advance(0.2)
    assert welcomed(lab.login(unlucky, USERS[unlucky]), unlucky)
    # ... and refusals spent nothing: 10 failures, the rest refused (right or wrong, the same answer).
    assert lab.limiter.counters == {"failures": 10, "refused_authid": 42, "refused_address": 0, "successes": 30}


def test_the_same_authid_from_another_address_is_not_affected():
    lab = Lab()
    for _ in range(12):
        lab.login("student01", "guess")
    assert aborted(lab.login("student01", USERS["student01"]), AUTHID_REFUSAL)
    assert welcomed(lab.login("student01", USERS["student01"], address="tcp4:192.0.2.7"), "student01")


def test_500_attempts_across_random_authids_hit_the_address_ceiling():
    lab = Lab()  # defaults: 100 failures per address, refilled at 60 per minute
    regular = "student05"
    assert welcomed(lab.login(regular, USERS[regular]), regular)  # logged in from the lab before
    rng = random.Random(9)
    names = ["".join(rng.choices(string.ascii_lowercase, k=12)) for _ in range(500)]
    answers = [lab.login(name, "password1") for name in names]
    assert all(aborted(a, DENIED) for a in answers[:100])
    assert all(aborted(a, ADDRESS_REFUSAL + " 1 s") for a in answers[100:])
    assert lab.limiter.counters["failures"] == 100 and lab.limiter.counters["refused_address"] == 400
    # While the ceiling is spent: an authid that logged in from here lately is
    # still checked; one that did not is refused unchecked, right ticket or not.
    assert welcomed(lab.login(regular, USERS[regular]), regular)
    assert aborted(lab.login("student06", USERS["student06"]), ADDRESS_REFUSAL)
    assert welcomed(lab.login("student06", USERS["student06"], address="tcp4:192.0.2.8"), "student06")
    lab.clock.advance(1.0)  # one failure's worth of the address's budget
    assert welcomed(lab.login("student06", USERS["student06"]), "student06")


def test_the_address_ceiling_exemption_expires():
    lab = Lab(FailureLimits(address_burst=20, address_per_minute=0.001, remember_success=3600))
    assert welcomed(lab.login("student07", USERS["student07"]), "student07")
    for i in range(20):
        lab.login(f"nobody{i}", "x")
    assert aborted(lab.login("student08", USERS["student08"]), ADDRESS_REFUSAL)
    lab.clock.advance(3500)
    assert welcomed(lab.login("student07", USERS["student07"]), "student07")  # and remembered again
    lab.clock.advance(3500)
    assert welcomed(lab.login("student07", USERS["student07"]), "student07")
    lab.clock.advance(3601)  # the ceiling is still spent (a token per 1000 minutes); the login forgotten
    assert aborted(lab.login("student07", USERS["student07"]), ADDRESS_REFUSAL)


def test_refusal_carries_which_limit_and_when():
    limiter = FailureLimiter(FakeClock(0.0), FailureLimits(burst=2, per_minute=30, address_burst=3,
                                                           address_per_minute=6))
    assert limiter.check("a", "x") is None
    limiter.failed("a", "x")
    limiter.failed("a", "x")
    refusal = limiter.check("a", "x")
    assert (refusal.by, refusal.retry_after) == (BY_AUTHID, 2.0)
    limiter.failed("a", "y")
    refusal = limiter.check("a", "z")
    assert (refusal.by, refusal.retry_after) == (BY_ADDRESS, 10.0)
    assert limiter.refused == 2


def test_memory_stays_bounded_and_refilled_buckets_are_forgotten():
    clock = FakeClock(0.0)
    limiter = FailureLimiter(clock, FailureLimits(max_entries=50, address_burst=10_000))
    for i in range(200):
        limiter.failed(f"tcp4:10.0.{i}.1", f"user{i}")
        limiter.succeeded(f"tcp4:10.0.{i}.2", f"user{i}")
    assert len(limiter.pairs.tokens_by_key) <= 50 and len(limiter.addresses.tokens_by_key) <= 50
    assert len(limiter.logins_by_pair) <= 50
    clock.advance(60)  # one failure refills in 6 s
    limiter.failed("tcp4:10.9.9.9", "late")
    assert list(limiter.pairs.tokens_by_key) == [("tcp4:10.9.9.9", "late")]


def jwt_like(payload: str) -> str:
    import base64

    body = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{body}.c2ln"


def token_hash(credential: str) -> str:
    import hashlib

    return "token:" + hashlib.sha256(credential.encode()).hexdigest()[:32]


@pytest.mark.parametrize("credential, authid", [
    (jwt_like('{"sub": "device-7", "aud": "x"}'), "device-7"),
    (jwt_like('{"booking_id": "bk-1", "topic": "pend00"}'), "booking:bk-1"),
    (jwt_like('{"bid": "bk-2"}'), "booking:bk-2"),
    (jwt_like('{"prefix": "session", "topic": "pend00"}'), "topic:session/pend00"),
    ("a.b", ""), ("rrt_opaque-ticket", ""), (None, ""), ("x." + "a" * 20000 + ".y", ""),
])
def test_the_authid_a_credential_claims(credential, authid):
    assert claimed_authid(credential) == authid


@pytest.mark.parametrize("payload", ['{"sub": 7}', "[1]", "not json", "{}"])
def test_a_jwt_that_names_nobody_is_counted_by_its_hash_not_one_shared_identity(payload):
    credential = jwt_like(payload)
    assert claimed_authid(credential) == token_hash(credential)


def test_without_an_authid_in_hello_the_jwt_subject_picks_the_budget():
    clock = FakeClock(0.0)
    limiter = FailureLimiter(clock, FailureLimits(burst=2))

    class Tokens:  # a ticket method taking JWTs, no authid in HELLO
        authmethod = "ticket"

        def hello(self, request):
            from relayrouter.core.auth import Challenge
            return Challenge("ticket", {})

        def authenticate(self, request, state, signature, extra):
            from relayrouter.core.auth import Accept, Deny
            ok = signature.endswith(".good")
            return Accept(claimed_authid(signature), "device", "ticket") if ok else Deny("bad token")

    router = make_router(clock=clock)
    router.realms["realm1"].authenticators = {"ticket": RateLimited(Tokens(), limiter)}

    def join(sub, good):
        peer = connect(router, TransportInfo(peer=f"{LAB}:1"))
        peer.receive([1, "realm1", {"roles": ALL_ROLES, "authmethods": ["ticket"]}])
        token = jwt_like(f'{{"sub": "{sub}"}}')[:-len(".c2ln")] + (".good" if good else ".bad1")
        peer.receive([5, token, {}])
        return peer.last()

    for _ in range(3):
        join("device-1", good=False)
    assert aborted(join("device-1", good=True), AUTHID_REFUSAL)
    assert welcomed(join("device-2", good=True), "device-2")


def test_anonymous_logins_are_neither_limited_nor_counted():
    from relayrouter.core.auth import AnonymousAuthenticator, Deny

    clock = FakeClock(0.0)
    limiter = FailureLimiter(clock, FailureLimits(burst=1, address_burst=1))

    class Unnamed:  # a method deciding on HELLO alone, without an authid (like TLS)
        authmethod = "tls"

        def hello(self, request):
            return Deny("no certificate")

    router = make_router(clock=clock)
    router.realms["realm1"].authenticators = {"tls": RateLimited(Unnamed(), limiter),
                                              "anonymous": RateLimited(AnonymousAuthenticator(), limiter)}

    def join(method):
        peer = connect(router, TransportInfo(peer=f"{LAB}:2"))
        peer.receive([1, "realm1", {"roles": ALL_ROLES, "authmethods": [method]}])
        return peer.last()

    assert aborted(join("tls"), "no certificate")
    assert aborted(join("tls"), AUTHID_REFUSAL)  # both of its budgets spent
    assert isinstance(join("anonymous"), m.Welcome)
    assert limiter.counters == {"failures": 1, "refused_authid": 1, "refused_address": 0, "successes": 0}


def test_reload_caps_spent_buckets_and_changes_the_rate():
    from relayrouter.auth.ratelimit import FailureLimiter, FailureLimits

    now = [1000.0]
    limiter = FailureLimiter(lambda: now[0], FailureLimits(burst=10, per_minute=60))
    for _ in range(3):
        limiter.failed("tcp4:10.0.0.1", "alice")
    limiter.reload(FailureLimits(burst=2, per_minute=6))
    for _ in range(2):  # 7 tokens held, capped at the new burst of 2
        assert limiter.check("tcp4:10.0.0.1", "alice") is None
        limiter.failed("tcp4:10.0.0.1", "alice")
    refusal = limiter.check("tcp4:10.0.0.1", "alice")
    assert refusal is not None and round(refusal.retry_after) == 10  # the new rate: one token per 10 s
    now[0] += 10
    assert limiter.check("tcp4:10.0.0.1", "alice") is None


class Signed:
    """An authenticator of unguessable credentials (cryptosign-like): the right answer is 'signed'."""

    authmethod = "cryptosign"

    def hello(self, request):
        from relayrouter.core.auth import Challenge
        return Challenge("cryptosign", {}, state=request.authid)

    def authenticate(self, request, state, signature, extra):
        from relayrouter.core.auth import Accept, Deny
        return Accept(state, "device", "cryptosign") if signature == "signed" else Deny("bad signature")


@pytest.mark.parametrize("wrong_by", ["the same authid", "many authids"])
def test_a_valid_unguessable_credential_is_never_refused_by_the_limits(wrong_by):
    clock = FakeClock(0.0)
    limiter = FailureLimiter(clock, FailureLimits(burst=3, address_burst=5))
    router = make_router(clock=clock)
    router.realms["realm1"].authenticators = {"cryptosign": RateLimited(Signed(), limiter)}

    def login(authid, signature):
        peer = connect(router, TransportInfo(peer=f"{LAB}:1"))
        peer.receive([1, "realm1", {"roles": ALL_ROLES, "authmethods": ["cryptosign"], "authid": authid}])
        if isinstance(peer.last(), m.Challenge):
            peer.receive([5, signature, {}])
        return peer.last()

    for i in range(10):
        login("device-1" if wrong_by == "the same authid" else f"device-{i + 10}", "forged")
    refusal = AUTHID_REFUSAL if wrong_by == "the same authid" else ADDRESS_REFUSAL
    assert aborted(login("device-1" if wrong_by == "the same authid" else "device-99", "forged"), refusal)
    assert welcomed(login("device-1", "signed"), "device-1")  # someone else's failures cost it nothing
