"""The device-post lane in front of twisted.web (connectors/iot_agent/http_lane.py),
in memory: a real twisted.web Site on a fake clock and a StringTransport.
What the lane takes is answered 204 once its Deferred fires, in order; every
other request reaches twisted.web with every byte the lane read.  The real
agent behind it is tested with real clients in test_agent.py."""

from collections import Counter

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport
from twisted.web import resource, server

from connectors.iot_agent.http_lane import HEAD_LIMIT, LaneFactory, parse_head

PATH = b"/http-agent/v1/incoming-messages"
MAX_BODY = 1000


def post(body: bytes = b'{"data": {}}', path: bytes = PATH, extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return (b"POST " + path + b" " + version + b"\r\nHost: agent\r\nAuthorization: Basic abc\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


class Echo(resource.Resource):
    """twisted.web's side: answers 299 with the method, path and body it got."""

    isLeaf = True

    def render(self, request):
        request.setResponseCode(299)
        return b"web " + request.method + b" " + request.path + b" " + request.content.read()


class Lane:
    """A lane on one connection; ``taken`` holds the Deferreds of what it took."""

    def __init__(self, accept=lambda head, body: body.startswith(b"{")) -> None:
        self.clock = task.Clock()
        site = server.Site(Echo(), reactor=self.clock)
        self.taken: list[defer.Deferred] = []
        self.heads = []
        self.counters = Counter()

        def take(head, body, transport):
            if not accept(head, body):
                return None
            self.heads.append((head, body))
            self.taken.append(defer.Deferred())
            return self.taken[-1]

        self.factory = LaneFactory(site, take, MAX_BODY, self.counters)
        self.protocol = self.factory.buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def output(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value


def test_a_taken_post_is_answered_204_once_stored_then_the_next_is_read():
    lane = Lane()
    lane.send(post(b'{"one": 1}'))
    assert lane.output() == b"" and len(lane.taken) == 1  # not before it is stored
    lane.taken[0].callback(None)
    assert lane.output().startswith(b"HTTP/1.1 204 No Content\r\nDate: ")
    lane.send(post(b'{"two": 2}'))
    lane.taken[1].callback(None)
    assert lane.output().startswith(b"HTTP/1.1 204 ")
    assert [body for _, body in lane.heads] == [b'{"one": 1}', b'{"two": 2}']
    assert lane.counters == {"http_lane_taken": 2}
    assert not lane.transport.disconnecting


def test_connection_close_is_answered_then_the_connection_closed():
    lane = Lane()
    lane.send(post(extra=b"Connection: close\r\n") + post())
    lane.taken[0].callback(None)
    out = lane.output()
    assert out.startswith(b"HTTP/1.1 204 No Content\r\n") and out.endswith(b"\r\nConnection: close\r\n\r\n")
    assert lane.transport.disconnecting and len(lane.taken) == 1


def test_a_request_in_pieces_is_taken_when_whole():
    lane = Lane()
    data = post(b'{"x": "' + b"y" * 300 + b'"}')
    for i in range(0, len(data), 7):
        lane.send(data[i:i + 7])
    assert len(lane.taken) == 1 and lane.heads[0][1] == data.partition(b"\r\n\r\n")[2]


def test_pipelined_requests_are_answered_in_order_and_a_refused_one_goes_to_twisted_web():
    lane = Lane()
    lane.send(post(b'{"a": 1}') + post(b"not json") + post(b'{"c": 3}'))
    assert len(lane.taken) == 1  # the second waits for the first's answer
    lane.taken[0].callback(None)
    out = lane.output()
    first, _, rest = out.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 204 ")
    # twisted.web owns the connection from the refused request on: it answers both
    assert rest.count(b"HTTP/1.1 299 ") == 2
    assert b"web POST " + PATH + b" not json" in rest and rest.endswith(b'{"c": 3}')
    assert rest.index(b"not json") < rest.index(b'{"c": 3}')
    assert len(lane.taken) == 1 and lane.counters == {"http_lane_taken": 1, "http_lane_handed_over": 1}


@pytest.mark.parametrize("request_bytes", [
    post(path=b"/device"),  # another route
    post(path=PATH + b"?x=1"),  # a query
    post(version=b"HTTP/1.0"),
    b"GET " + PATH + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    post(extra=b"Expect: 100-continue\r\n"),
    post(extra=b"Connection: upgrade\r\n"),
    post(extra=b"Upgrade: h2c\r\n"),
    post(extra=b"Content-Length: 12\r\n"),  # twice
    post(extra=b"X-Folded: a\r\n b\r\n"),
    post(extra=b"Bad header\r\n"),
    post(extra=b"Name : value\r\n"),
    b"POST " + PATH + b" HTTP/1.1\r\nAuthorization: Basic abc\r\nContent-Length: 2\r\n\r\n{}",  # no Host
    b"POST " + PATH + b" HTTP/1.1\nHost: a\nContent-Length: 2\n\n{}",  # bare LF
    post(body=b"{" + b" " * MAX_BODY + b"}"),  # over the body limit
])
def test_anything_but_the_plain_case_is_twisted_webs(request_bytes):
    lane = Lane(accept=lambda head, body: True)
    lane.send(request_bytes)
    assert lane.taken == [] and lane.counters == {"http_lane_handed_over": 1}
    assert lane.protocol.channel is not None  # twisted.web's from now on
    assert lane.output() == twisted_web_alone(request_bytes)


def test_a_chunked_body_is_read_by_twisted_web():
    lane = Lane(accept=lambda head, body: True)
    lane.send(b"POST " + PATH + b" HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert lane.output().endswith(b"web POST " + PATH + b" hello world")
    assert lane.taken == []


def test_a_head_over_twisted_webs_limit_goes_to_twisted_web_which_refuses_it():
    lane = Lane(accept=lambda head, body: True)
    data = b"POST " + PATH + b" HTTP/1.1\r\nHost: a\r\n" + b"X-Big: y\r\n" * (HEAD_LIMIT // 10)
    lane.send(data)
    assert lane.counters == {"http_lane_handed_over": 1}
    out = lane.output()
    assert out.startswith(b"HTTP/1.1 400 ") and lane.transport.disconnecting
    assert out == twisted_web_alone(data)


def twisted_web_alone(data: bytes) -> bytes:
    """What twisted.web answers ``data`` without the lane."""
    lane = Lane()
    channel = lane.factory.site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(data)
    return transport.value()


def test_a_request_not_whole_in_time_is_answered_408_and_closed_though_bytes_trickle_in():
    lane = Lane()
    timeout = lane.factory.site.timeOut
    data = post()
    assert len(data) > timeout
    for i in range(timeout):
        lane.send(data[i:i + 1])  # one byte a second
        lane.clock.advance(1)
    out = lane.output()
    assert out.startswith(b"HTTP/1.1 408 Request Timeout\r\n") and b"Connection: close" in out
    assert out.endswith(b'{"error": "request_timeout", "message": "the request was not whole within 60 s"}\n')
    assert lane.transport.disconnecting and lane.taken == []


def test_an_idle_connection_is_closed_after_the_sites_timeout_and_not_while_a_post_is_stored():
    lane = Lane()
    lane.send(post())
    lane.clock.advance(lane.factory.site.timeOut * 2)  # being stored: no timeout
    assert not lane.transport.disconnecting
    lane.taken[0].callback(None)
    lane.output()
    lane.clock.advance(lane.factory.site.timeOut - 1)
    assert not lane.transport.disconnecting
    lane.clock.advance(1)
    assert lane.transport.disconnecting and lane.output() == b""  # idle: closed without an answer


def test_one_timer_per_connection_follows_its_requests():
    """The deadline moves with every request; the connection's one timer is
    rescheduled when it fires early, not cancelled and made anew per request."""
    lane = Lane()
    timeout = lane.factory.site.timeOut
    scheduled = []
    call_later = lane.clock.callLater
    lane.clock.callLater = lambda *a, **kw: scheduled.append(a[0]) or call_later(*a, **kw)
    for i in range(50):
        lane.send(post())
        lane.taken[-1].callback(None)
        lane.clock.advance(timeout / 10)
        assert len(lane.clock.getDelayedCalls()) == 1
    assert len(scheduled) <= 6  # 50 requests over 5 timeouts: once at the start, then once per timeout
    assert lane.output().count(b"HTTP/1.1 204 ") == 50 and not lane.transport.disconnecting
    lane.clock.advance(timeout - timeout / 10 - 0.5)  # idle since the last answer: timeOut - 0.5 s
    assert not lane.transport.disconnecting
    lane.clock.advance(0.5)
    assert lane.transport.disconnecting


def test_a_connection_lost_while_stored_gets_no_answer():
    lane = Lane()
    lane.send(post())
    lane.protocol.connectionLost(None)
    lane.transport.connected = False
    lane.taken[0].callback(None)
    assert lane.output() == b""


def test_a_failed_commit_is_a_json_500(logged_errors):
    logged_errors.expect(r"disk full")
    lane = Lane()
    lane.send(post())
    lane.taken[0].errback(RuntimeError("disk full"))
    out = lane.output()
    assert out.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert out.endswith(b'{"error": "internal_error", "message": "internal error; the connector\'s log has the details"}\n')


def test_pipelined_requests_beyond_a_bound_pause_the_connection():
    lane = Lane()
    lane.send(post())
    lane.send(post(b"{" + b" " * 900 + b"}") * 40)
    assert lane.transport.producerState == "paused"
    lane.taken[0].callback(None)
    assert lane.transport.producerState == "producing" and len(lane.taken) == 2


def test_parse_head_reads_the_routes_and_the_credentials():
    head = parse_head(post(path=b"/http-agent/v1/unsecure/incoming-messages/create-many/").split(b"\r\n\r\n")[0],
                      MAX_BODY)
    assert (head.many, head.unsecure, head.authorization, head.length) == (True, True, "Basic abc", 12)
    head = parse_head(b"POST " + PATH + b" HTTP/1.1\r\nhost: a\r\ncontent-length:  7 \r\nConnection: Keep-Alive",
                      MAX_BODY)
    assert (head.many, head.unsecure, head.authorization, head.length, head.close) == (False, False, "", 7, False)
