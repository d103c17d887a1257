"""Meta events for the whole cluster: a subscriber on any node hears every
node's wamp.session.on_join/on_leave and subscription and registration meta
events, each once."""

import time

import pytest
import pytest_twisted
from autobahn.wamp.types import SubscribeOptions

from ..support import connect_ws, eventually
from .harness import PATIENCE, nats_and_nodes, sleep
from .test_cluster_calls import named

TOPICS = ("wamp.session.on_join", "wamp.session.on_leave", "wamp.subscription.on_create",
          "wamp.subscription.on_subscribe", "wamp.subscription.on_unsubscribe", "wamp.subscription.on_delete",
          "wamp.registration.on_create", "wamp.registration.on_register", "wamp.registration.on_unregister",
          "wamp.registration.on_delete")


@pytest.fixture(scope="module", params=[1, 3], ids=["one-nats-server", "three-nats-servers"])
def cluster(tmp_path_factory, request):
    """Three nodes on one NATS server, or each on its own server of a NATS cluster."""
    yield from nats_and_nodes(tmp_path_factory.mktemp("cluster-meta-events"), servers=request.param)


class Heard:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, *args, details=None) -> None:
        self.events.append((details.topic, list(args)))

    def about(self, session_id) -> list:
        """(topic, args) of the events about ``session_id``, in the order heard."""
        return [(t, a) for t, a in self.events if a[0] == session_id or (type(a[0]) is dict
                                                                         and a[0].get("session") == session_id)]


@pytest_twisted.inlineCallbacks
def listener(node):
    """A session subscribed to every meta topic, wamp.session.on_join last: NATS passes
    interest on in order, so once another node's on_join arrives, every topic's does."""
    session = yield connect_ws(node)
    heard = Heard()
    for topic in TOPICS[::-1]:
        yield session.subscribe(heard, topic, options=SubscribeOptions(details=True))
    return session, heard


@pytest_twisted.inlineCallbacks
def heard_from(node, listeners, seconds: float = PATIENCE):
    """Sessions join and leave ``node`` until every listener heard one of them join."""
    deadline = time.monotonic() + seconds
    while True:
        probe = yield connect_ws(node)
        probe_id = probe._session_id
        probe.leave()
        yield sleep(0.1)
        if all(heard.about(probe_id) for heard in listeners):
            return
        assert time.monotonic() < deadline, "the listeners never heard the other node's meta events"


@pytest_twisted.inlineCallbacks
def test_every_node_hears_every_nodes_meta_events_once(cluster):
    nats, nodes = cluster
    on_a, heard_a = yield listener(nodes["a"])
    on_c, heard_c = yield listener(nodes["c"])
    yield heard_from(nodes["b"], [heard_a, heard_c])

    worker = yield connect_ws(nodes["b"])
    sid = worker._session_id
    subscription = yield worker.subscribe(lambda *a: None, "com.meta.readings")
    registration = yield worker.register(named("b"), "com.meta.status")
    yield subscription.unsubscribe()
    yield registration.unregister()
    worker.leave()
    expected = ["wamp.session.on_join",
                "wamp.subscription.on_create", "wamp.subscription.on_subscribe",
                "wamp.registration.on_create", "wamp.registration.on_register",
                "wamp.subscription.on_unsubscribe", "wamp.subscription.on_delete",
                "wamp.registration.on_unregister", "wamp.registration.on_delete",
                "wamp.session.on_leave"]
    for heard in (heard_a, heard_c):
        yield eventually(lambda: len(heard.about(sid)) >= len(expected))
    # A session joining and leaving on node a itself: heard there (locally) and on c, once each.
    local = yield connect_ws(nodes["a"])
    local_sid = local._session_id
    local.leave()
    for heard in (heard_a, heard_c):
        yield eventually(lambda: [t for t, _ in heard.about(local_sid)] == ["wamp.session.on_join",
                                                                            "wamp.session.on_leave"])
    for heard in (heard_a, heard_c):
        about = heard.about(sid)
        assert [t for t, _ in about] == expected  # once each, in the order node b published them
        join = about[0][1][0]
        assert join["session"] == sid
        assert about[2][1] == [sid, subscription.id]
        assert about[-1][1][0] == sid
    on_a.leave()
    on_c.leave()
