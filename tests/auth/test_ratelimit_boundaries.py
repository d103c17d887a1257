"""The failed-login limiter where a broken line went unnoticed: failures
another cluster node verified, the success of an unguessable login
remembered for its own address and authid (to the second), IPv6 peers, the
longest token read, claims that are not strings, a token that is not valid
UTF-8, the JWT method's token picking the budget at HELLO, decisions that
come later, WAMP-CRA refused at HELLO, and which entries make room first."""

import base64
import json

import pytest
from twisted.internet.defer import Deferred

from relayrouter.auth.ratelimit import (_MAX_TOKEN, BY_ADDRESS, BY_AUTHID, FailureLimiter, FailureLimits,
                                        RateLimited, address_of, claimed_authid)
from relayrouter.core.auth import Accept, Challenge, Deny, JoinRequest
from relayrouter.core.peer import TransportInfo
from relayrouter.testing import FakeClock

from .test_ratelimit import jwt_like, token_hash

A, B = "tcp4:10.0.0.1", "tcp4:10.0.0.2"


def _request(authid, method="ticket"):
    return JoinRequest("realm1", (method,), authid, None, {}, TransportInfo(peer=f"{A}:1"))


def test_a_failure_another_node_verified_spends_the_same_budgets_and_is_counted_apart():
    limiter = FailureLimiter(FakeClock(0.0), FailureLimits(burst=2, address_burst=3))
    shared = []
    limiter.share = lambda address, authid: shared.append((address, authid))
    for _ in range(2):
        limiter.failed_elsewhere(A, "u")
    assert limiter.peek(A, "u").by == BY_AUTHID
    assert limiter.peek(B, "u") is None
    limiter.failed_elsewhere(A, "v")
    assert limiter.peek(A, "w").by == BY_ADDRESS
    assert limiter.counters["failures_elsewhere"] == 3 and limiter.counters["failures"] == 0
    assert shared == []  # not shared again: the node that verified it did


def test_an_unguessable_login_keeps_its_authid_checked_past_its_addresss_ceiling():
    limiter = FailureLimiter(FakeClock(0.0), FailureLimits(address_burst=2, address_per_minute=0.001))
    accept = Accept("u", "device", "jwt")
    assert limiter.settle(A, "u", None, accept) is accept
    for other in ("x1", "x2"):
        limiter.failed(A, other)
    assert limiter.peek(A, "u") is None
    assert limiter.peek(A, "v").by == BY_ADDRESS


def test_a_login_exempts_its_authid_for_remember_success_seconds_to_the_second():
    clock = FakeClock(0.0)
    limiter = FailureLimiter(clock, FailureLimits(address_burst=1, address_per_minute=0.0001,
                                                  remember_success=100.0))
    limiter.succeeded(A, "u")
    limiter.failed(A, "x")
    clock.advance(100)
    assert limiter.peek(A, "u") is None
    clock.advance(0.5)
    assert limiter.peek(A, "u").by == BY_ADDRESS


@pytest.mark.parametrize("peer, address", [
    ("tcp4:10.0.0.1:53120", "tcp4:10.0.0.1"), ("tcp6:::1:53120", "tcp6:::1"),
    ("tcp6:2001:db8::7:443", "tcp6:2001:db8::7"), ("unix:/run/relayrouter.sock", "unix:/run/relayrouter.sock"),
])
def test_the_address_of_a_peer_leaves_out_its_port(peer, address):
    assert address_of(peer) == address


def _token_of_length(length: int, sub: str) -> str:
    token = jwt_like(json.dumps({"sub": sub}))
    return token + "s" * (length - len(token))  # the signature makes up the length


def test_the_longest_token_read_is_max_token_characters():
    assert claimed_authid(_token_of_length(_MAX_TOKEN, "edge")) == "edge"
    assert claimed_authid(_token_of_length(_MAX_TOKEN + 1, "edge")) == ""


@pytest.mark.parametrize("claims, authid", [
    ({"booking_id": 5, "prefix": "session", "topic": "pend00"}, "topic:session/pend00"),
    ({"bid": ["bk-1"], "prefix": "session", "topic": "pend00"}, "topic:session/pend00"),
    ({"booking_id": "", "bid": "bk-2"}, "booking:bk-2"),
])
def test_a_claim_that_is_not_a_non_empty_string_does_not_name_the_budget(claims, authid):
    assert claimed_authid(jwt_like(json.dumps(claims))) == authid


@pytest.mark.parametrize("topic", [7, ["pend00"], {"t": 1}])
def test_a_topic_that_is_not_a_string_leaves_the_token_counted_by_its_hash(topic):
    credential = jwt_like(json.dumps({"prefix": "session", "topic": topic}))
    assert claimed_authid(credential) == token_hash(credential)


def test_a_token_that_is_not_valid_utf8_is_counted_by_its_hash_not_an_error():
    identity = claimed_authid("x.e30.\ud800sig")  # a lone surrogate, as JSON's "\ud800" decodes
    assert identity.startswith("token:") and len(identity) == len("token:") + 32


def test_the_jwt_methods_token_picks_the_budget_at_hello():
    limiter = FailureLimiter(FakeClock(0.0), FailureLimits(burst=1))

    class Jwt:  # decides at HELLO on authextra.token, like the JWT authenticator
        authmethod = "jwt"

        def hello(self, request):
            token = request.authextra["token"]
            return Accept(claimed_authid(token), "device", "jwt") if token.endswith(".ok") else Deny("bad token")

    limited = RateLimited(Jwt(), limiter)

    def hello(sub, suffix):
        token = jwt_like(json.dumps({"sub": sub}))[:-len(".c2ln")] + suffix
        return limited.hello(JoinRequest("realm1", ("jwt",), None, None, {"token": token},
                                         TransportInfo(peer=f"{A}:1")))

    assert hello("device-1", ".no").message == "bad token"
    assert limiter.peek(A, "device-1").by == BY_AUTHID  # device-1's budget, not the shared ""
    assert limiter.peek(A, "") is None
    assert isinstance(hello("device-2", ".ok"), Accept)


def test_a_failure_verified_here_is_handed_to_the_cluster_with_its_address_and_authid():
    limiter = FailureLimiter(FakeClock(0.0))
    shared = []
    limiter.share = lambda address, authid: shared.append((address, authid))
    limiter.failed(A, "u")
    assert shared == [(A, "u")]


def test_a_decision_that_comes_later_is_settled_when_it_comes():
    limiter = FailureLimiter(FakeClock(0.0), FailureLimits(burst=1))
    pending = []

    class Later:  # a JWT key refresh, or a one-time ticket asked of the cluster
        authmethod = "ticket"

        def hello(self, request):
            pending.append(Deferred())
            return pending[-1]

    limited = RateLimited(Later(), limiter)
    results = []
    limited.hello(_request("u")).addCallback(results.append)
    pending[-1].callback(Deny("bad ticket"))
    assert results[-1].message == "bad ticket" and limiter.counters["failures"] == 1
    limited.hello(_request("u")).addCallback(results.append)
    pending[-1].callback(Deny("bad ticket"))  # over the budget now: the limit answers
    assert results[-1].message.startswith("too many failed authentication attempts for this authid")
    limited.hello(_request("v")).addCallback(results.append)
    pending[-1].callback(Accept("v", "device", "ticket"))
    assert isinstance(results[-1], Accept) and limiter.counters["successes"] == 1


def test_wampcra_over_its_budget_is_refused_at_hello_with_the_limits_message():
    limiter = FailureLimiter(FakeClock(0.0), FailureLimits(burst=1))

    class Cra:
        authmethod = "wampcra"

        def hello(self, request):
            return Challenge("wampcra", {"challenge": "{}"})

    limited = RateLimited(Cra(), limiter)
    assert isinstance(limited.hello(_request("u")), Challenge)
    limiter.failed(A, "u")
    refused = limited.hello(_request("u"))
    assert isinstance(refused, Deny)
    assert refused.message.startswith("too many failed authentication attempts for this authid")
    assert limiter.counters["refused_authid"] == 1


def test_the_least_recent_login_is_forgotten_first_and_a_new_login_makes_it_recent():
    limiter = FailureLimiter(FakeClock(0.0), FailureLimits(address_burst=1, address_per_minute=0.0001,
                                                           max_entries=3))
    for authid in ("u1", "u2", "u1", "u3", "u4"):
        limiter.succeeded(A, authid)
    limiter.failed(A, "x")
    assert [limiter.peek(A, authid) for authid in ("u1", "u3", "u4")] == [None, None, None]
    assert limiter.peek(A, "u2").by == BY_ADDRESS  # the least recent login, though not the first


def test_the_least_recently_spent_budget_is_forgotten_first():
    limiter = FailureLimiter(FakeClock(0.0), FailureLimits(burst=1, per_minute=0.0001, max_entries=3))
    for authid in ("u1", "u2", "u1", "u3", "u4"):
        limiter.failed(A, authid)
    assert all(limiter.peek(A, authid).by == BY_AUTHID for authid in ("u1", "u3", "u4"))
    assert limiter.peek(A, "u2") is None  # forgotten to make room: the least recently spent, not the first
