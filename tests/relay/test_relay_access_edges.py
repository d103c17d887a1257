"""The relay's HTTP access at its edges: what is not a topic's path is 404,
a code's answer is never cached, the booking-id lists change only for an
admin token and only with a usable expiry (named when missing or wrong), and
a token's scopes are read as the seed writes them (a list, or one string)."""

import time

import jwt as pyjwt
import pytest_twisted
import treq

from .support import AUDIENCE, HS_SECRET, admin_token, http, post_access, practable_token
from .test_relay_access import router  # noqa: F401 (the fixture)


def token(scopes) -> str:
    now = int(time.time())
    return pyjwt.encode({"scopes": scopes, "aud": [AUDIENCE], "iat": now, "exp": now + 600,
                         "topic": "admin", "prefix": "session"}, HS_SECRET, algorithm="HS256")


def bids(router, which, query=""):
    return f"{router.http_url}/bids/{which}{query}"


@pytest_twisted.inlineCallbacks
def test_a_path_below_a_topic_or_an_empty_topic_is_a_json_404(router):  # noqa: F811
    for path in ("/session/pend00/more", "/session/"):
        code, headers, body = yield http("POST", router.http_url + path,
                                         headers={"Authorization": practable_token()})
        assert code == 404, path
        assert headers.getRawHeaders("content-type") == ["application/json"], path
        assert "no such topic" in body["message"], path


@pytest_twisted.inlineCallbacks
def test_a_codes_answer_is_never_cached(router):  # noqa: F811
    response = yield treq.post(f"{router.http_url}/session/pend00", headers={"Authorization": [practable_token()]})
    assert response.code == 200
    assert response.headers.getRawHeaders("cache-control") == ["no-store"]
    yield response.content()


@pytest_twisted.inlineCallbacks
def test_changing_a_booking_id_list_needs_the_admin_scope(router):  # noqa: F811
    exp = int(time.time()) + 3600
    for which in ("deny", "allow"):
        code, _, body = yield http("POST", bids(router, which, f"?bid=bk-1&exp={exp}"),
                                   headers={"Authorization": practable_token()})
        assert code == 403 and "relay:admin" in body["message"], which
    assert (yield post_access(router, "pend00", practable_token()))[0] == 200  # bk-1 was not denied


@pytest_twisted.inlineCallbacks
def test_allowing_a_booking_id_until_a_past_time_is_refused(router):  # noqa: F811
    past = int(time.time()) - 10
    code, _, body = yield http("POST", bids(router, "allow", f"?bid=bk-1&exp={past}"),
                               headers={"Authorization": admin_token()})
    assert code == 400 and f"booking expiry time (exp) {past} is in the past" in body["message"]


@pytest_twisted.inlineCallbacks
def test_a_missing_or_out_of_range_expiry_is_422_naming_exp(router):  # noqa: F811
    code, _, body = yield http("POST", bids(router, "deny", "?bid=bk-1&exp="), headers={"Authorization": admin_token()})
    assert code == 422 and body["message"] == "exp (booking expiry time) in query is required"
    for exp in (2**63, -2**63 - 1, "soon"):
        code, _, body = yield http("POST", bids(router, "deny", f"?bid=bk-1&exp={exp}"),
                                   headers={"Authorization": admin_token()})
        assert code == 422 and "must be a whole number" in body["message"], exp
    code, _, _ = yield http("POST", bids(router, "allow", f"?bid=bk-1&exp={2**63 - 1}"),
                            headers={"Authorization": admin_token()})
    assert code == 204  # the largest int64 is a valid expiry


@pytest_twisted.inlineCallbacks
def test_scopes_given_as_one_space_separated_string_are_each_a_scope(router):  # noqa: F811
    code, _, body = yield http("GET", bids(router, "deny"), headers={"Authorization": token("read relay:admin")})
    assert code == 200 and body == {"booking_ids": []}
    code, _, _ = yield http("GET", bids(router, "deny"), headers={"Authorization": token("relay:administrator")})
    assert code == 403
