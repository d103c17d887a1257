"""Failed-login limits never punish valid relay tokens: practable's tokens have no
sub, and a stale page retrying its expired token must not lock out the other
bookings behind the same address (a school's NAT), over HTTP or WAMP."""

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from relayrouter.testing import FakeClock

from ..support import LeftBeforeJoining, connect_ws
from .support import post_access, practable_token, relay_config, start, stop

AUTHID_REFUSAL = "too many failed authentication attempts for this authid from your address"
ADDRESS_REFUSAL = "too many failed authentication attempts from your address, across many authids"


@pytest.fixture
def router(monkeypatch, tmp_path):
    data = relay_config(monkeypatch, stats_interval=0)
    data["auth_limits"] = {"burst": 10, "per_minute": 10, "address_burst": 30, "address_per_minute": 1}
    data["realms"][0]["auth"]["one_time_tickets"] = {"lifetime": 30}
    running = pytest_twisted.blockon(start(data, tmp_path / "state"))
    running.service.security.limiter.clock = FakeClock(reactor.seconds())  # nothing refills by itself
    yield running
    pytest_twisted.blockon(stop(running))


def expired(booking_id="bk-stale", topic="pend00"):
    return practable_token(topic=topic, booking_id=booking_id, lifetime=-60)


@pytest_twisted.inlineCallbacks
def test_a_stale_page_does_not_lock_out_another_booking(router):
    """The finding: 12 expired tokens from one address, then a different booking's valid token -> 429."""
    stale = expired()
    codes = []
    for _ in range(12):
        code, body = yield post_access(router, "pend00", stale)
        codes.append(code)
    assert codes == [401] * 10 + [429] * 2  # the stale token's own budget is spent ...
    assert body["message"].startswith(AUTHID_REFUSAL)
    for booking in ("bk-other", "bk-stale"):  # ... nobody else's, not even its booking's next token
        code, body = yield post_access(router, "pend00", practable_token(booking_id=booking))
        assert code == 200 and body["uri"].startswith("ws://"), body


@pytest_twisted.inlineCallbacks
def test_valid_tokens_pass_even_when_the_address_ceiling_is_spent(router):
    for i in range(40):  # 40 bookings' expired tokens: the address ceiling (30) is spent
        yield post_access(router, "pend00", expired(booking_id=f"gone-{i}"))
    code, body = yield post_access(router, "pend00", expired(booking_id="gone-40"))
    assert code == 429 and body["message"].startswith(ADDRESS_REFUSAL), body
    # The booking system mints many tokens, a page asks again and again: never refused.
    for i in range(60):
        code, body = yield post_access(router, "pend00", practable_token(booking_id=f"bk-{i}"))
        assert code == 200, (i, body)
    limiter = router.service.security.limiter
    assert limiter.counters["successes"] >= 60


@pytest_twisted.inlineCallbacks
def test_a_stale_page_buying_one_time_tickets_does_not_lock_out_another_booking(router):
    """POST /ticket as POST /session: the expired token's own budget is spent, no other booking's."""
    from .support import http

    url = f"{router.http_url}/ticket?realm=lab"
    codes = []
    for _ in range(12):
        code, _, body = yield http("POST", url, bearer=expired(booking_id="bk-tab"))
        codes.append(code)
    assert codes == [401] * 10 + [429] * 2, codes
    assert body["message"].startswith(AUTHID_REFUSAL), body
    for booking in ("bk-other", "bk-tab"):
        code, _, body = yield http("POST", url, bearer=practable_token(booking_id=booking))
        assert code == 200 and body["ticket"].startswith("rrt_"), body


@defer.inlineCallbacks
def wamp_attempt(router, ticket):
    try:
        client = yield connect_ws(router, realm="lab", authmethods=["ticket"], ticket=ticket)
    except LeftBeforeJoining as e:
        return e.reason, e.message
    client.leave()
    return "joined", client.details.authid


@pytest_twisted.inlineCallbacks
def test_wamp_joins_with_expired_relay_tokens_lock_out_only_those_tokens(router):
    stale = expired()
    outcomes = []
    for _ in range(12):
        outcomes.append((yield wamp_attempt(router, stale)))
    assert all(o == ("wamp.error.authentication_failed", "token expired") for o in outcomes[:10]), outcomes
    assert all(o[1].startswith(AUTHID_REFUSAL) for o in outcomes[10:]), outcomes
    assert (yield wamp_attempt(router, practable_token(booking_id="bk-other", scopes=("read",)))) == \
        ("joined", "bk-other")
    assert (yield wamp_attempt(router, practable_token(booking_id="bk-stale", scopes=("read",)))) == \
        ("joined", "bk-stale")


@pytest.mark.parametrize("trusted, second_client", [(["127.0.0.1"], 401), ([], 429)])
@pytest_twisted.inlineCallbacks
def test_behind_a_trusted_proxy_the_forwarded_client_is_the_address(monkeypatch, tmp_path, trusted,
                                                                      second_client):
    """relay.trusted_proxies: failures behind the proxy count against the client X-Forwarded-For
    names, so one client's failures do not spend another's ceiling (without it, the proxy's)."""
    from .support import http

    data = relay_config(monkeypatch, stats_interval=0, trusted_proxies=trusted)
    data["auth_limits"] = {"burst": 10, "per_minute": 10, "address_burst": 30, "address_per_minute": 1}
    running = yield start(data, tmp_path / "state")
    running.service.security.limiter.clock = FakeClock(reactor.seconds())
    url = f"{running.http_url}/session/pend00"
    try:
        for i in range(31):
            yield http("POST", url, headers={"Authorization": expired(booking_id=f"gone-{i}"),
                                             "X-Forwarded-For": "203.0.113.1"})
        code, _, _ = yield http("POST", url, headers={"Authorization": expired(booking_id="other"),
                                                      "X-Forwarded-For": "203.0.113.2"})
        assert code == second_client
    finally:
        yield stop(running)
