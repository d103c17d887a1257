"""The console's procedures and pages on a real router (the page itself is
driven in Chromium by tests/js/test_js_console.py)."""

import pytest
import pytest_twisted
import treq
from autobahn.wamp.exception import ApplicationError

from ..refusals import assert_refused
from ..security_support import start, stop
from ..support import connect_ws

ADMIN_TICKET = "ops-admin-ticket-0123456789abcdef"


def config(monkeypatch):
    monkeypatch.setenv("OPS_TICKET", ADMIN_TICKET)
    return {
        "revocation": {"admin_roles": ["ops"]},
        "realms": [
            {"name": "lab",
             "auth": {"anonymous": {"role": "guest"},
                      "ticket": {"principals": [{"authid": "ops", "role": "ops", "secret_env": "OPS_TICKET"}]}},
             "roles": [{"name": "guest", "rules": [{"uri": "relayrouter.console.", "match": "prefix",
                                                   "allow": ["call"]}]},
                       {"name": "ops", "rules": [{"uri": "relayrouter.", "match": "prefix", "allow": ["call"]}]}]},
            {"name": "other"},
        ],
    }


@pytest.fixture
def router(monkeypatch, tmp_path):
    running = pytest_twisted.blockon(start(config(monkeypatch), tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


@pytest_twisted.inlineCallbacks
def test_console_procedures_are_for_admins(router):
    guest = yield connect_ws(router, realm="lab")
    ops = yield connect_ws(router, realm="lab", authmethods=["ticket"], authid="ops", ticket=ADMIN_TICKET)
    elsewhere = yield connect_ws(router, "msgpack", realm="other")
    for procedure in ("relayrouter.console.sessions", "relayrouter.console.overview"):
        with pytest.raises(ApplicationError) as refused:
            yield guest.call(procedure)
        assert_refused(refused.value, "wamp.error.not_authorized", "may not use the console")

    listing = yield ops.call("relayrouter.console.sessions")
    assert listing["realm"] == "lab"
    rows = {row["authid"]: row for row in listing["sessions"]}
    assert set(rows) == {"ops", guest.details.authid}
    me = rows["ops"]
    assert me["session"] == ops.details.session and me["authrole"] == "ops" and me["authmethod"] == "ticket"
    assert (me["transport"], me["serializer"]) == ("websocket", "json")
    assert me["rx_bytes"] > 0 and me["tx_bytes"] > 0 and me["since"].endswith("Z")

    other = yield ops.call("relayrouter.console.sessions", realm="other")
    assert [(r["session"], r["serializer"]) for r in other["sessions"]] == [(elsewhere.details.session, "msgpack")]
    with pytest.raises(ApplicationError) as refused:
        yield ops.call("relayrouter.console.sessions", realm="nowhere")
    assert_refused(refused.value, "wamp.error.invalid_argument", "no realm 'nowhere'")

    before = yield ops.call("relayrouter.console.overview")
    yield guest.call("relayrouter.console.overview").addErrback(lambda f: None)
    after = yield ops.call("relayrouter.console.overview")
    assert {r["name"]: r["sessions"] for r in after["realms"]} == {"lab": 2, "other": 1}
    # between the two: the guest's CALL and ERROR, and our second CALL (its RESULT comes after)
    assert after["messages_received"] - before["messages_received"] == 2
    assert after["messages_sent"] - before["messages_sent"] == 2
    assert after["time"] >= before["time"]


@pytest_twisted.inlineCallbacks
def test_console_pages_are_served(router):
    base = router.http_url
    response = yield treq.get(f"{base}/console", allow_redirects=False)
    assert response.code in (301, 302) and response.headers.getRawHeaders("location")[0].endswith("/console/")
    response = yield treq.get(f"{base}/console/")
    page = yield response.text()
    assert response.code == 200 and "<title>relayrouter console</title>" in page
    for name in ("console.js", "console.css", "autobahn.min.js"):
        response = yield treq.get(f"{base}/console/{name}")
        yield response.content()
        assert response.code == 200, name
    response = yield treq.get(f"{base}/console/missing.js")
    yield response.content()
    assert response.code == 404
