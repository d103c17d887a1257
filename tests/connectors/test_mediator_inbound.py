"""The mediator-proxy's inbound delivery loop in memory: a fake clock, the
router session and the agent as test doubles, the real state store."""

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.web.http_headers import Headers

from connectors.common import RouterSettings, StateStore
from connectors.mediator_proxy.inbound import ACK, ENDPOINT, TAKE, Inbound
from connectors.mediator_proxy.service import ProxyConfig

from ..support import eventually


class Response:
    def __init__(self, code, body=b"", headers=None):
        self.code = code
        self.body = body
        self.headers = Headers(headers or {})


class Agent:
    """treq's post() and content(); each POST waits until the test answers it."""

    def __init__(self):
        self.posts = []

    def post(self, url, data, headers, pool, timeout):
        d = defer.Deferred()
        self.posts.append((int(headers.getRawHeaders("x-message-id")[0]), data, d))
        return d

    def content(self, response):
        return defer.succeed(response.body)

    def ids(self):
        return [i for i, _, _ in self.posts]

    def answer(self, response, index=-1):
        self.posts[index][2].callback(response)


class Session:
    def __init__(self):
        self.attached = True
        self.acks = []
        self.progress = None

    def is_attached(self):
        return self.attached

    def call(self, procedure, *args, options=None, **kwargs):
        d = defer.Deferred()
        if procedure == ENDPOINT:
            d.callback({"mailbox": args[0], "realm": "lab", "token": "t", "path": f"/mailbox/{args[0]}/t",
                        "url": None})
        elif procedure == TAKE:
            self.progress = options.on_progress
        elif procedure == ACK:
            self.acks.append((args[1], d))
        return d

    def put(self, i, attempt=1):
        self.progress({"id": i, "attempt": attempt, "timestamp": 1.0, "args": [b"m%d" % i],
                       "kwargs": {"content_type": "text/plain"}})

    def ack_all(self):
        for _, d in self.acks:
            if not d.called:
                d.callback(1)


class Proxy:
    def __init__(self, tmp_path, **config):
        from twisted.internet import reactor

        self.reactor = task.Clock()
        self.store = StateStore(str(tmp_path / "state"), reactor)
        self.config = ProxyConfig(RouterSettings("ws://127.0.0.1:1/ws", "lab"), "http://agent/", str(tmp_path),
                                  agent_retry_initial=1.0, agent_retry_max=8.0, **config)
        self.mailbox = "mailbox.agentb"
        self.router = self


@pytest.fixture
def inbound(tmp_path):
    proxy = Proxy(tmp_path, max_attempts=2)
    inbound = Inbound(proxy)
    inbound.http = Agent()
    pytest_twisted.blockon(inbound.load())
    yield inbound
    inbound.session_ended()
    proxy.store.close()


@pytest_twisted.inlineCallbacks
def started(inbound):
    session = Session()
    inbound.proxy.session = session
    inbound.start(session, "mailbox.agentb")
    yield eventually(lambda: inbound.taking)
    return session


@pytest_twisted.inlineCallbacks
def test_the_next_post_waits_for_the_ack_of_the_last(inbound):
    session = yield started(inbound)
    agent = inbound.http
    for i in (1, 2, 3):
        session.put(i)
    assert agent.ids() == [1]
    agent.answer(Response(200))
    assert [i for i, _ in session.acks] == [1] and agent.ids() == [1]  # ack asked, not answered: 2 waits
    session.ack_all()
    assert agent.ids() == [1, 2]
    agent.answer(Response(204))
    session.ack_all()
    agent.answer(Response(200))
    session.ack_all()
    assert agent.ids() == [1, 2, 3] and inbound.delivered == 3 and len(inbound.queue) == 0


@pytest_twisted.inlineCallbacks
def test_retry_after_is_honoured_and_a_redelivered_head_is_not_queued_twice(inbound):
    session = yield started(inbound)
    agent, clock = inbound.http, inbound.reactor
    session.put(1)
    session.put(2)
    agent.answer(Response(503, headers={"Retry-After": ["7"]}))
    session.put(1, attempt=2)  # the router's visibility timeout hands it out again
    assert len(inbound.queue) == 2
    clock.advance(6.9)
    assert agent.ids() == [1]
    clock.advance(0.2)
    assert agent.ids() == [1, 1]
    agent.answer(Response(200))
    session.ack_all()
    agent.answer(Response(200))
    session.ack_all()
    assert agent.ids() == [1, 1, 2] and inbound.retries == 1 and inbound.agent_up is True


@pytest_twisted.inlineCallbacks
def test_agent_down_backs_off_exponentially_up_to_the_ceiling(inbound):
    session = yield started(inbound)
    agent, clock = inbound.http, inbound.reactor
    session.put(1)
    for _ in range(6):
        agent.posts[-1][2].errback(ConnectionRefusedError("down"))
        posts = len(agent.posts)
        clock.advance(8.0)  # never more than agent_retry_max apart
        assert len(agent.posts) == posts + 1
    assert inbound.agent_up is False and "ConnectionRefusedError" in inbound.last_error["message"]


@pytest_twisted.inlineCallbacks
def test_refusals_make_a_dead_letter_that_a_new_session_acks_without_posting(inbound, logged_errors):
    logged_errors.expect(r"message 1 of mailbox\.agentb moved to the dead letters after 2 refusals \(HTTP 422 worse\)")
    session = yield started(inbound)
    agent, clock = inbound.http, inbound.reactor
    session.put(1)
    session.put(2)
    agent.answer(Response(400, b"bad"))
    clock.advance(8.0)
    agent.answer(Response(422, b"worse"))
    yield eventually(lambda: session.acks)
    assert len(inbound.dead) == 1 and 1 in inbound.dead_ids and inbound.recent_dead[0]["status"] == 422
    session.ack_all()
    assert agent.ids() == [1, 1, 2]
    # the ack was lost with the session: the next session gets message 1 again
    inbound.session_ended()
    again = yield started(inbound)
    again.put(1, attempt=2)
    assert [i for i, _ in again.acks] == [1] and agent.ids() == [1, 1, 2]


@pytest_twisted.inlineCallbacks
def test_a_post_answered_after_the_session_ended_is_not_acked(inbound):
    session = yield started(inbound)
    agent = inbound.http
    session.put(1)
    inbound.session_ended()
    agent.answer(Response(200))
    assert session.acks == [] and inbound.delivered == 0
    again = yield started(inbound)
    again.put(1, attempt=2)
    assert agent.ids() == [1, 1]
