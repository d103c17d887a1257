"""The relay's HTTP access answers only the origins the router allows
(http.allowed_origins), like /ticket and /denylist: a page from elsewhere
cannot spend a visitor's token for a code."""

import pytest
import pytest_twisted

from .support import http, practable_token, relay_config, start, stop

ALLOWED = "https://lab.example.org"


@pytest.fixture
def router(monkeypatch, tmp_path):
    config = relay_config(monkeypatch, stats_interval=0)
    config["http"] = {"allowed_origins": [ALLOWED]}
    running = pytest_twisted.blockon(start(config, tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


def _access(router, origin):
    return http("POST", f"{router.http_url}/session/pend00",
                headers={"Authorization": practable_token(), "Origin": origin})


@pytest_twisted.inlineCallbacks
def test_an_access_request_from_an_origin_not_allowed_is_refused(router):
    code, _, body = yield _access(router, "https://elsewhere.example")
    assert (code, body) == (403, {"error": "wamp.error.not_authorized", "message": "origin not allowed"})


@pytest_twisted.inlineCallbacks
def test_an_access_request_from_an_allowed_origin_gets_its_code(router):
    code, headers, body = yield _access(router, ALLOWED)
    assert code == 200 and "?code=" in body["uri"]
    assert headers.getRawHeaders("Access-Control-Allow-Origin") == [ALLOWED]
