"""The WAMP reference (docs/reference/wamp.md, made by docs/_ext/wamp_uris.py) against a running router.

A router with every feature (the reference's own configuration, without the cluster: no NATS server
here) is started on loopback; a real client calls every procedure the page lists and must never hear
``wamp.error.no_such_procedure``, and a watcher subscribed to every ``wamp.`` and ``relayrouter.``
topic hears, while sessions come and go, subscribe, register, tenants are made and a pair's peer
joins, exactly the topics the page lists.
"""

import os
import sys
from pathlib import Path

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import SubscribeOptions
from twisted.internet import reactor

from relayrouter import config as cfg
from relayrouter.service import RouterService

from ..security_support import token
from ..support import RunningRouter, connect_ws, eventually, within

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import wamp_uris  # noqa: E402

pytestmark = pytest.mark.timeout(120)

# Registered only by a clustered router (the page's list is made with [cluster]).
CLUSTER_ONLY = {"relayrouter.cluster.nodes"}


def documented(kind: str) -> set[str]:
    return {uri for row in wamp_uris.page_rows() if row.kind == kind for uri in row.uris}


def test_the_page_lists_what_the_router_registers():
    assert wamp_uris.problems(wamp_uris.page_rows(), wamp_uris.router_procedures()) == []


def test_a_procedure_missing_from_the_page_fails_the_check():
    rows = [r for r in wamp_uris.page_rows() if "relayrouter.history.read" not in r.uris]
    assert wamp_uris.problems(rows, wamp_uris.router_procedures()) == [
        "procedure relayrouter.history.read is registered by the router (realms: realm1) but not described"]
    made_up = wamp_uris.Row(("relayrouter.history.erase",), "procedure", "", 7)
    assert wamp_uris.problems(wamp_uris.page_rows() + [made_up], wamp_uris.router_procedures()) == [
        "line 7: procedure relayrouter.history.erase is described but the router registers none"]


def test_the_page_lists_the_connectors_names():
    assert wamp_uris.connector_problems(wamp_uris.page_rows("connectors")) == []
    rows = [r for r in wamp_uris.page_rows("connectors") if "device-data" not in r.uris]
    assert wamp_uris.connector_problems(rows) == ["topic device-data of the iot-agent is in its code but not described"]


@pytest.fixture
def router(tmp_path, monkeypatch):
    data = wamp_uris.every_feature(str(tmp_path / "state"), cluster=False)
    data["listeners"] = [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1"}]
    # Anonymous sessions are the admins here, so that the tenants' procedures run; JWT logins as tickets.
    data["revocation"]["admin_roles"] = data["tenants"]["admin_roles"] = ["anonymous"]
    data["realms"][0]["auth"]["jwt"]["as_ticket"] = True
    config = cfg.parse(data).with_defaults()
    service = RouterService(config, reactor, reload_config=lambda: config)
    service.startService()
    ports = pytest_twisted.blockon(service.when_listening())
    running = RunningRouter(service, ports)
    yield running
    for session in list(running.router.sessions()):
        session.peer.close()
    pytest_twisted.blockon(service.stopService())


@pytest_twisted.inlineCallbacks
def test_every_listed_procedure_answers(router):
    listed = documented("procedure")
    assert set(router.realm().procedures.uris()) == listed - CLUSTER_ONLY
    client = yield connect_ws(router)
    for uri in sorted(listed - CLUSTER_ONLY):
        try:
            yield within(client.call(uri))
        except ApplicationError as e:  # a call without its arguments is refused: by the procedure
            assert e.error != "wamp.error.no_such_procedure", uri
    with pytest.raises(ApplicationError) as refused:
        yield within(client.call("relayrouter.history.erase"))
    assert refused.value.error == "wamp.error.no_such_procedure"
    yield client.leave()


@pytest_twisted.inlineCallbacks
def test_the_topics_the_router_publishes_are_listed(router):
    heard: set[str] = set()

    def hear(*args, details=None, **kwargs):
        heard.add(details.topic)

    # Every namespace of the router's URIs; a pair's own URIs only its two peers may use (its manager here).
    watcher = yield connect_ws(router)
    for prefix in sorted(namespaces() - {"relayrouter.pair."}):
        yield watcher.subscribe(hear, prefix, options=SubscribeOptions(match="prefix", details=True))
    manager = yield connect_ws(router, authmethods=["ticket"], authid="manager:s1:b1", ticket=pair_token("manager"))
    yield manager.subscribe(hear, "relayrouter.pair.s1.b1.", options=SubscribeOptions(match="prefix", details=True))
    # Sessions, subscriptions and registrations coming and going.
    other = yield connect_ws(router)
    subscription = yield other.subscribe(lambda *a: None, "com.example.news")
    yield subscription.unsubscribe()
    registration = yield other.register(lambda: None, "com.example.add")
    yield registration.unregister()
    yield other.leave()
    # A tenant made and deleted; the pair's gateway joining and leaving; the relay's statistics.
    yield watcher.call("relayrouter.realm.create", name="acme", template="tenant")
    yield watcher.call("relayrouter.realm.delete", name="acme")
    gateway = yield connect_ws(router, authmethods=["ticket"], authid="gateway:s1:b1", ticket=pair_token("gateway"))
    yield gateway.leave()
    yield watcher.call("relayrouter.stats.get", publish=True)

    listed = documented("topic")
    patterns = [wamp_uris.topic_pattern(uri) for uri in listed]
    yield eventually(lambda: all(any(p.match(t) for t in heard) for p in patterns))
    assert [t for t in sorted(heard) if not any(p.match(t) for p in patterns)] == []
    yield watcher.leave()
    yield manager.leave()


def namespaces() -> set[str]:
    """``wamp.`` and each ``relayrouter.<name>.`` of the page's URIs (``relayrouter.stats`` itself too)."""
    found = set()
    for row in wamp_uris.page_rows():
        for uri in row.uris:
            head = uri.split(".")[:2]
            found.add("wamp." if head[0] == "wamp" else ".".join(head) + ("." if uri != ".".join(head) else ""))
    return found


def pair_token(peer_class: str) -> str:
    sub = f"{peer_class}:s1:b1"
    return token(secret=os.environ[wamp_uris.SECRET_ENV], sub=sub, role=peer_class)


@pytest_twisted.inlineCallbacks
def test_decrypt_search_registers_the_listed_procedures(tmp_path):
    """The connector started against a router: the registrations under its prefix, listed through the
    meta API, are the page's ``{procedures}.*``."""
    from ..connectors.decrypt_search import support
    from ..connectors.processes import RouterProcess

    # The connectors' role may also read the registrations (the meta API is authorized like any call).
    toml = support.ROUTER_TOML + '\n[[realms.roles.rules]]\nuri = "wamp.registration."\nmatch = "prefix"\n' \
                                 'allow = ["call"]\n'
    router = RouterProcess(tmp_path, toml, env={"ACME_TICKET": support.TICKETS["acme"],
                                                "GLOBEX_TICKET": support.TICKETS["globex"]})
    router.start()
    connector = None
    try:
        connector = support.Connector(tmp_path, support.World(tmp_path), "acme", router)  # the router's port
        connector.start()
        caller = yield support.connect_ws_url(router, authmethods=["ticket"], authid="globex-connector",
                                              ticket=support.TICKETS["globex"])
        ids = yield within(caller.call("wamp.registration.list"))
        uris = []
        for registration in [i for policy in ids.values() for i in policy]:
            details = yield within(caller.call("wamp.registration.get", registration))
            uris.append(details["uri"])
        prefix = "com.acme.records."
        registered = {"{procedures}." + u[len(prefix):] for u in uris if u.startswith(prefix)}
        listed = {uri for row in wamp_uris.page_rows("connectors") if row.kind == "procedure" for uri in row.uris
                  if uri.startswith("{procedures}.")}
        assert registered == listed and len(listed) == 7
        yield caller.leave()
    finally:
        if connector is not None:
            connector.stop()
        router.stop()
