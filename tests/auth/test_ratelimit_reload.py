"""A configuration reload changes the failed-login budgets without forgiving
or charging what was already earned: a spent bucket keeps what it had refilled
at the old rate, and the new limits apply to everything after."""

from relayrouter.auth.ratelimit import FailureLimiter, FailureLimits

ADDRESS, AUTHID = "tcp4:10.0.0.1", "alice"


def _spent(now, **limits) -> FailureLimiter:
    limiter = FailureLimiter(lambda: now[0], FailureLimits(**limits))
    for _ in range(limits["burst"]):
        limiter.failed(ADDRESS, AUTHID)
    assert limiter.check(ADDRESS, AUTHID) is not None
    return limiter


def test_a_bucket_keeps_what_it_refilled_at_the_old_rate():
    now = [1000.0]
    limiter = _spent(now, burst=2, per_minute=60)  # one token a second
    now[0] += 1  # one token back
    limiter.reload(FailureLimits(burst=2, per_minute=6))  # one token per 10 s from now on
    assert limiter.check(ADDRESS, AUTHID) is None
    limiter.failed(ADDRESS, AUTHID)
    refusal = limiter.check(ADDRESS, AUTHID)
    assert refusal is not None and round(refusal.retry_after) == 10


def test_a_bucket_refilled_before_the_reload_is_whole_after_it():
    now = [1000.0]
    limiter = _spent(now, burst=2, per_minute=60)
    now[0] += 5  # full again at the old rate
    limiter.reload(FailureLimits(burst=2, per_minute=6))
    for _ in range(2):
        assert limiter.check(ADDRESS, AUTHID) is None
        limiter.failed(ADDRESS, AUTHID)
    assert limiter.check(ADDRESS, AUTHID) is not None


def test_the_new_limits_decide_what_a_success_is_remembered_for():
    now = [1000.0]
    limiter = FailureLimiter(lambda: now[0], FailureLimits(remember_success=10))
    limiter.reload(FailureLimits(remember_success=100))
    limiter.succeeded(ADDRESS, AUTHID)
    now[0] += 50
    assert limiter._logged_in_lately(ADDRESS, AUTHID)
