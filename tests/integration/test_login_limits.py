"""Failed-login limits end to end: real Autobahn-Python clients over WebSocket
against the router on loopback, a whole lab behind one address (127.0.0.1).
The limiter's clock is a fake one, so budgets refill only when the test says."""

import random
import string

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from relayrouter.testing import FakeClock

from ..security_support import start, stop
from ..support import LeftBeforeJoining, connect_ws

USERS = {f"student{i:02d}": f"ticket-of-student{i:02d}-0123456789" for i in range(30)}
DENIED = "wrong authid or ticket"
AUTHID_REFUSAL = "too many failed authentication attempts for this authid from your address; try again in"
ADDRESS_REFUSAL = ("too many failed authentication attempts from your address, across many authids; "
                   "try again in")


@pytest.fixture
def lab(monkeypatch, tmp_path):
    principals = []
    for i, (authid, ticket) in enumerate(USERS.items()):
        monkeypatch.setenv(f"LAB_TICKET_{i}", ticket)
        principals.append({"authid": authid, "role": "student", "secret_env": f"LAB_TICKET_{i}"})
    running = pytest_twisted.blockon(start({"realms": [{"name": "realm1", "auth": {
        "ticket": {"principals": principals}}}]}, tmp_path / "state"))  # default auth_limits
    limiter = running.service.security.limiter
    limiter.clock = FakeClock(reactor.seconds())
    running.limiter = limiter
    yield running
    pytest_twisted.blockon(stop(running))


@defer.inlineCallbacks
def attempt(lab, authid, ticket):
    """('joined', authid) or (ABORT reason, message)."""
    try:
        client = yield connect_ws(lab, authmethods=["ticket"], authid=authid, ticket=ticket)
    except LeftBeforeJoining as e:
        return e.reason, e.message
    client.leave()
    return "joined", client.details.authid


@defer.inlineCallbacks
def attempts(lab, pairs, at_once=20):
    """Many attempts, ``at_once`` connections at a time; their outcomes in order."""
    outcomes = []
    for start_at in range(0, len(pairs), at_once):
        batch = yield defer.gatherResults([attempt(lab, a, t) for a, t in pairs[start_at:start_at + at_once]])
        outcomes.extend(batch)
    return outcomes


def refused_with(outcome, text) -> bool:
    reason, message = outcome
    return reason == "wamp.error.authentication_failed" and message.startswith(text)


@pytest_twisted.inlineCallbacks
def test_one_user_failing_50_times_does_not_lock_out_the_other_29(lab):
    unlucky = "student00"
    failing = []
    for _ in range(50):
        failing.append((yield attempt(lab, unlucky, "mistyped")))
    assert all(refused_with(o, DENIED) for o in failing[:10]), failing[:10]
    assert all(refused_with(o, AUTHID_REFUSAL) for o in failing[10:]), failing[10:]

    others = [(a, t) for a, t in USERS.items() if a != unlucky]
    joined = yield defer.gatherResults([attempt(lab, a, t) for a, t in others])  # all at once
    assert joined == [("joined", a) for a, _ in others]

    outcome = yield attempt(lab, unlucky, USERS[unlucky])  # the right ticket, still refused
    assert refused_with(outcome, AUTHID_REFUSAL + " 6 s"), outcome
    lab.limiter.clock.advance(5.5)
    outcome = yield attempt(lab, unlucky, USERS[unlucky])
    assert refused_with(outcome, AUTHID_REFUSAL + " 1 s"), outcome
    lab.limiter.clock.advance(0.6)  # one failure's worth refilled (10 per minute)
    outcome = yield attempt(lab, unlucky, USERS[unlucky])
    assert outcome == ("joined", unlucky)
    counters = lab.limiter.counters
    assert (counters["failures"], counters["refused_authid"], counters["refused_address"]) == (10, 42, 0)


@pytest_twisted.inlineCallbacks
def test_500_attempts_across_random_authids_hit_the_per_address_ceiling(lab):
    regular = "student03"
    outcome = yield attempt(lab, regular, USERS[regular])
    assert outcome == ("joined", regular)
    rng = random.Random(5)
    guesses = [("".join(rng.choices(string.ascii_lowercase, k=10)), "123456") for _ in range(500)]
    outcomes = yield attempts(lab, guesses)
    denied = [o for o in outcomes if refused_with(o, DENIED)]
    ceiling = [o for o in outcomes if refused_with(o, ADDRESS_REFUSAL)]
    assert (len(denied), len(ceiling)) == (100, 400), outcomes[95:105]  # defaults: 100 per address
    assert outcomes[:100] == denied  # checked until the ceiling, refused unchecked after
    counters = lab.limiter.counters
    assert (counters["failures"], counters["refused_address"]) == (100, 400)

    # With the ceiling spent: who logged in from here lately is still checked,
    # a newcomer is refused; one failure's worth later (60 per minute) it is checked.
    outcome = yield attempt(lab, regular, USERS[regular])
    assert outcome == ("joined", regular)
    outcome = yield attempt(lab, "student04", USERS["student04"])
    assert refused_with(outcome, ADDRESS_REFUSAL + " 1 s"), outcome
    lab.limiter.clock.advance(1.0)
    outcome = yield attempt(lab, "student04", USERS["student04"])
    assert outcome == ("joined", "student04")


@pytest_twisted.inlineCallbacks
def test_http_tokens_are_limited_by_the_subject_they_claim(monkeypatch, tmp_path):
    """POST /ticket: bad JWTs claiming one subject refuse those bad JWTs (429), not the
    subject's valid token, nor the others."""
    from ..security_support import HS_SECRET, ISSUER, http, token

    monkeypatch.setenv("JWT_SECRET", HS_SECRET)
    running = yield start({"realms": [{"name": "realm1", "auth": {
        "jwt": {"algorithms": ["HS256"], "audience": "relayrouter", "issuer": ISSUER, "authrole": "device",
                "keys": [{"secret_env": "JWT_SECRET"}]},
        "one_time_tickets": {"lifetime": 30}}}],
        "auth_limits": {"burst": 3, "per_minute": 1}}, tmp_path / "state")
    try:
        url = f"{running.http_url}/ticket"
        forged = token(secret="not-the-secret-0123456789abcdef-0123456789abcdef", sub="device-1")
        codes = []
        for _ in range(5):
            code, _, body = yield http("POST", url, bearer=forged)
            codes.append((code, body["message"]))
        assert [c for c, _ in codes] == [401, 401, 401, 429, 429]
        assert codes[3][1].startswith(AUTHID_REFUSAL), codes[3]
        # A valid token cannot be guessed: never refused because forgeries claimed its subject.
        code, _, body = yield http("POST", url, bearer=token(sub="device-1"))
        assert code == 200 and body["ticket"].startswith("rrt_"), body
        code, _, body = yield http("POST", url, bearer=forged)  # the forgeries are still refused
        assert (code, body["message"][:len(AUTHID_REFUSAL)]) == (429, AUTHID_REFUSAL)
        code, _, body = yield http("POST", url, bearer=token(sub="device-2"))  # same address, other subject
        assert code == 200 and body["ticket"].startswith("rrt_")
    finally:
        yield stop(running)


@pytest_twisted.inlineCallbacks
def test_jwt_tickets_without_an_authid_are_limited_by_their_subject(monkeypatch, tmp_path):
    """Clients that send a JWT as ticket and no authid in HELLO: the token's sub picks the budget
    of the bad tokens; a valid token gets in whatever that budget says."""
    from relayrouter.auth.jwt import BAD_SIGNATURE

    from ..security_support import HS_SECRET, ISSUER, token

    monkeypatch.setenv("JWT_SECRET", HS_SECRET)
    running = yield start({"realms": [{"name": "realm1", "auth": {
        "jwt": {"algorithms": ["HS256"], "audience": "relayrouter", "issuer": ISSUER, "authrole": "device",
                "as_ticket": True, "keys": [{"secret_env": "JWT_SECRET"}]}}}]}, tmp_path / "state")
    running.service.security.limiter.clock = FakeClock(reactor.seconds())
    forged = token(secret="not-the-secret-0123456789abcdef-0123456789abcdef", sub="device-1")
    try:
        outcomes = []
        for _ in range(12):
            outcomes.append((yield attempt(running, None, forged)))
        assert all(refused_with(o, BAD_SIGNATURE) for o in outcomes[:10]), outcomes[:10]
        assert all(refused_with(o, AUTHID_REFUSAL) for o in outcomes[10:]), outcomes[10:]
        outcome = yield attempt(running, None, token(sub="device-1"))  # a good token, same subject
        assert outcome == ("joined", "device-1")  # a valid signed token is never refused by the limit
        outcome = yield attempt(running, None, forged)
        assert refused_with(outcome, AUTHID_REFUSAL), outcome
        outcome = yield attempt(running, None, token(sub="device-2"))  # same address, other subject
        assert outcome == ("joined", "device-2")
    finally:
        yield stop(running)
