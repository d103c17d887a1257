"""The live feed (Server-Sent Events) with the real router and connector processes: the search's
filters, replay from a record id (after= or Last-Event-ID), then live, nothing twice or missed."""

import json
import time

import pytest_twisted
import treq
from twisted.internet import defer, reactor, task

from .support import connect_publisher, get, token, until_stored
from .test_end_to_end import connectors, doc, publish_all, router, world  # noqa: F401 (fixtures)


class Events:
    """A follower: the events of one /feed stream as they arrive."""

    def __init__(self) -> None:
        self.events = []
        self.buffer = b""
        self.response = None

    def received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.decode().split("\n") if not line.startswith(":"))
            if fields:
                self.events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))

    @property
    def orders(self) -> list:
        return [data["document"]["order"] for _, _, data in self.events]

    @defer.inlineCallbacks
    def until(self, count: int, seconds: float = 15.0):
        deadline = time.monotonic() + seconds
        while len(self.events) < count:
            assert time.monotonic() < deadline, f"{len(self.events)} events of {count}: {self.orders}"
            yield task.deferLater(reactor, 0.02, lambda: None)


@defer.inlineCallbacks
def follow(connector, params=None, headers=None):
    events = Events()
    response = yield treq.get(connector.url + "/feed", params=params, unbuffered=True,
                              headers={"Authorization": f"Bearer {token()}", **(headers or {})})
    assert response.code == 200 and response.headers.getRawHeaders("content-type")[0].startswith(
        "text/event-stream")
    events.response = response
    events.done = treq.collect(response, events.received)
    events.done.addErrback(lambda _: None)  # the connection is cut when the test ends
    return events


@pytest_twisted.inlineCallbacks
def test_the_feed_follows_committed_records_with_the_searchs_filters_and_resumes(world, router,  # noqa: F811
                                                                                 connectors):  # noqa: F811
    acme = connectors("acme")
    publisher = yield connect_publisher(router)
    first = [(doc(1, 5.0, "new", "Lyon", "blue vase"), ["acme"]), (doc(2, 9.0, "paid", "Paris", "red chair"), ["acme"]),
             (doc(3, 12.0, "paid", "Lyon", "green vase"), ["acme"])]
    yield publish_all(publisher, world, first)
    yield until_stored(acme, 3)
    page = yield get(acme, "/search", {"order": "created"})
    ids = {r["document"]["order"]: r["id"] for r in page["records"]}

    paid = yield follow(acme, {"status": "paid"})  # live only
    vases = yield follow(acme, {"q": "vase", "after": "0"})  # every stored vase, then live ones
    resumed = yield follow(acme, headers={"Last-Event-ID": str(ids[2])})  # after record 2, as EventSource does
    yield vases.until(2)
    yield resumed.until(1)
    assert vases.orders == [1, 3] and resumed.orders == [3] and paid.events == []

    later = [(doc(4, 20.0, "paid", "Nice", "a vase, paid"), ["acme"]), (doc(5, 1.0, "new", "Nice", "a chair"), ["acme"]),
             (doc(6, 7.0, "paid", "Lyon", "a lamp"), ["acme"])]
    yield publish_all(publisher, world, later)
    yield until_stored(acme, 6)
    yield paid.until(2)
    yield vases.until(3)
    yield resumed.until(4)
    assert paid.orders == [4, 6] and vases.orders == [1, 3, 4] and resumed.orders == [3, 4, 5, 6]
    for follower in (paid, vases, resumed):
        record_ids = [i for i, _, _ in follower.events]
        assert record_ids == sorted(set(record_ids))  # in id order, none twice
        assert all(kind == "record" and data["id"] == i and data["sender"] == "supplier"
                   for i, kind, data in follower.events)
    status = yield get(acme, "/status")
    assert status["feed"]["followers"] == 3 and status["feed"]["commit_to_write_ms_p50"] is not None
    for follower in (paid, vases, resumed):
        follower.response.original._transport.loseConnection()
    deadline = time.monotonic() + 15
    while (yield get(acme, "/status"))["feed"]["followers"]:  # gone followers are let go
        assert time.monotonic() < deadline
        yield task.deferLater(reactor, 0.05, lambda: None)
    assert "Traceback" not in acme.output() and "Unhandled" not in acme.output()
    publisher.leave()


@pytest_twisted.inlineCallbacks
def test_the_feed_refuses_like_every_endpoint(world, router, connectors):  # noqa: F811
    acme = connectors("acme")
    missing = yield get(acme, "/feed", bearer=False, expect=401)
    assert missing["message"] == "send Authorization: Bearer <JWT>"
    narrow = yield get(acme, "/feed", bearer=token(scopes=("status",)), expect=403)
    assert narrow["message"] == "the token lacks the scope 'search'"
    bad = yield get(acme, "/feed", {"after": "-1"}, expect=400)
    assert bad["message"] == "after: '-1' is not a record id"
    bad = yield get(acme, "/feed", {"amount.near": "1"}, expect=400)
    assert bad["message"].startswith("amount.near: unknown operator")
    response = yield treq.get(acme.url + "/feed", headers={"Authorization": f"Bearer {token()}",
                                                           "Last-Event-ID": "x1"})
    assert response.code == 400 and (yield response.json())["message"] == "Last-Event-ID: 'x1' is not a record id"
    response = yield treq.post(acme.url + "/feed", b"", headers={"Authorization": f"Bearer {token()}"})
    assert response.code == 405
    yield response.content()


def test_a_follower_that_stops_reading_is_closed_and_resumes_from_its_last_id():
    """Its socket full (the transport paused it), MAX_BEHIND more events and it is let go; what it got
    ends at an id it can resume after (twisted.web's own DummyRequest stands in for the connection)."""
    from twisted.internet.task import Clock
    from twisted.web.test.requesthelper import DummyRequest

    from connectors.decrypt_search.feed import MAX_BEHIND, Feed, Follower

    feed = Feed(None, None, Clock())
    request = DummyRequest([b"feed"])
    follower = Follower(feed, request, (), (), None)
    follower.write({"id": 1, "document": {}})
    follower.pauseProducing()
    follower.resumeProducing()  # reading again: the count starts over
    follower.pauseProducing()
    for record_id in range(2, MAX_BEHIND + 3):
        follower.write({"id": record_id, "document": {}})
    assert request.finished and feed.overflowed == 1 and follower.closed
    written = b"".join(request.written)
    assert written.count(b"event: record") == MAX_BEHIND + 2 and follower.last == MAX_BEHIND + 2
    follower.write({"id": MAX_BEHIND + 3, "document": {}})  # nothing after the close
    assert b"".join(request.written) == written


def test_live_conditions_compare_as_the_store_does():
    from connectors.decrypt_search.feed import holds
    from connectors.decrypt_search.ingest import Record
    from connectors.decrypt_search.query import Condition

    record = Record(1, "com.orders.eu", "m", "globex", "k", 100.0, 101.0, {}, {"amount": 12.5, "status": "paid"}, "")
    assert holds(Condition("amount", "gte", 12.5), record) and not holds(Condition("amount", "gt", 12.5), record)
    assert holds(Condition("status", "in", ("new", "paid")), record) and holds(Condition("topic", "eq", "com.orders.eu"),
                                                                             record)
    assert not holds(Condition("city", "eq", "Lyon"), record)  # a missing value holds no condition
    assert holds(Condition("created", "lt", 100.5), record) and not holds(Condition("sender", "eq", "acme"), record)
