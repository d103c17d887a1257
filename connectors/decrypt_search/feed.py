"""The live feed: decrypted, validated records as they are committed, for local applications.

``GET /feed`` (scope ``search``) answers ``text/event-stream`` (Server-Sent
Events): one event per record, ``id:`` the record id, ``event: record``,
``data:`` the record as the API gives it.  The search's filters apply (``q``
and field conditions; no order, no paging: records come in id order).

Resuming.  ``after=<record id>`` (or the ``Last-Event-ID`` header a browser's
EventSource sends when it reconnects) first replays the stored records after
that id that pass the filters, page by page, then goes live; without it the
feed starts with the next record committed.  Gap-free: a follower is
registered before its replay reads the store, records committed meanwhile are
held and sent after the replay, and nothing at or below the last id sent is
sent again.

Filters on live records.  Field conditions are checked in the reactor on the
values that were committed (the same values the store compares); a text
condition is checked by the store itself for each committed batch (one
indexed read), so a record matches live exactly when it would match a search.

A follower that does not read (its socket's buffer full and more than
``MAX_BEHIND`` events written since) is closed: it resumes with its last id.
"""

import json
import operator
import time

from twisted.internet import defer, task
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from connectors.common.http import HttpError, JsonResource
from relayrouter.api import httpinput

from . import http_doc, query

log = Logger(namespace="decrypt_search.feed")

REPLAY_PAGE = 200
MAX_BEHIND = 1000  # events written while the client's socket would not take more
MAX_FOLLOWERS = 100
HEARTBEAT = 15.0  # seconds between keep-alive comments (proxies close idle streams)
LATENCIES = 1000  # commit -> write samples kept for /status
COMPARE = {"eq": operator.eq, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def holds(condition: query.Condition, record) -> bool:
    """A field condition on a committed record, as the store would compare it (a missing value fails)."""
    name = condition.field
    value = getattr(record, name) if name in ("topic", "sender", "created", "received") else record.fields.get(name)
    if value is None:
        return False
    if condition.op == "in":
        return value in condition.value
    return COMPARE[condition.op](value, condition.value)


def event(record: dict) -> bytes:
    data = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    return f"id: {record['id']}\nevent: record\ndata: {data}\n\n".encode("utf8")


@implementer(IPushProducer)
class Follower:
    def __init__(self, feed, request, conditions: tuple, terms: tuple, after: int | None) -> None:
        self.feed = feed
        self.request = request
        self.conditions = conditions
        self.terms = terms
        self.last = after or 0
        self.held = [] if after is not None else None  # live batches held while the replay runs
        self.chain = defer.succeed(None)  # text checks, in commit order
        self.paused = False
        self.behind = 0
        self.closed = False

    # IPushProducer: the transport says when its buffer is full
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused, self.behind = False, 0

    def stopProducing(self) -> None:
        self.closed = True

    def offer(self, stored: list, committed: float) -> None:
        items = [(i, r) for i, r in stored if i > self.last and all(holds(c, r) for c in self.conditions)]
        if not items or self.closed:
            return
        if self.held is not None:
            self.held.append((items, committed))
        else:
            self._queue(items, committed)

    def _queue(self, items: list, committed: float) -> None:
        if not self.terms:
            self.chain.addCallback(lambda _: self._send_records(items, committed))
            return
        ids = [i for i, _ in items]
        self.chain.addCallback(lambda _: self.feed.db.read("text_matches", self.terms, ids))
        self.chain.addCallback(lambda ok: self._send_records([x for x in items if x[0] in ok], committed))
        self.chain.addErrback(self._failed)

    def _send_records(self, items: list, committed: float) -> None:
        for record_id, record in items:
            self.write(record.as_dict(record_id))
        self.feed.delivered(committed)

    def write(self, record: dict) -> None:
        if self.closed or record["id"] <= self.last:
            return
        self.request.write(event(record))
        self.last = record["id"]
        if self.paused:
            self.behind += 1
            if self.behind > MAX_BEHIND:
                self.feed.overflowed += 1
                self.close()

    @defer.inlineCallbacks
    def replay(self):
        while not self.closed:
            page = yield self.feed.db.read("after", self.conditions, self.terms, self.last, REPLAY_PAGE)
            for record in page:
                self.write(record)
            if len(page) < REPLAY_PAGE:
                break
        held, self.held = self.held, None
        for items, committed in held or ():
            self._queue(items, committed)

    def _failed(self, failure) -> None:
        log.failure("the live feed could not check a batch's text; closing the follower", failure)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.request.unregisterProducer()
            self.request.finish()


class Feed:
    """The followers, offered each committed batch."""

    def __init__(self, db, config, reactor) -> None:
        self.db = db
        self.config = config
        self.reactor = reactor
        self.followers: set = set()
        self.latencies: list = []
        self.sent_batches = 0
        self.overflowed = 0
        self.heartbeat = task.LoopingCall(self._beat)
        self.heartbeat.clock = reactor

    def start(self) -> None:
        self.heartbeat.start(HEARTBEAT, now=False)

    def stop(self) -> None:
        if self.heartbeat.running:
            self.heartbeat.stop()
        for follower in list(self.followers):
            follower.close()

    def publish(self, stored: list, committed: float) -> None:
        """Called after a commit (``committed``: its time.perf_counter()) with its (record id, Record) pairs."""
        if stored and self.followers:
            for follower in list(self.followers):
                follower.offer(stored, committed)

    def delivered(self, committed: float) -> None:
        self.sent_batches += 1
        self.latencies.append(time.perf_counter() - committed)
        if len(self.latencies) > LATENCIES:
            del self.latencies[:LATENCIES // 2]

    def follow(self, request, params) -> Follower:
        if len(self.followers) >= MAX_FOLLOWERS:
            raise HttpError(503, f"{MAX_FOLLOWERS} followers already; try again later")
        conditions, terms, after = parse_feed(params, httpinput.header(request, "Last-Event-ID"), self.config)
        follower = Follower(self, request, conditions, terms, after)
        self.followers.add(follower)
        request.notifyFinish().addBoth(lambda _: self._gone(follower))
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        request.registerProducer(follower, True)
        request.write(b": following\n\n")
        if after is not None:
            follower.replay().addErrback(follower._failed)
        return follower

    def _gone(self, follower: Follower) -> None:
        follower.closed = True
        self.followers.discard(follower)

    def _beat(self) -> None:
        for follower in list(self.followers):
            if not follower.closed:
                follower.request.write(b": keep-alive\n\n")

    def describe(self) -> dict:
        samples = sorted(self.latencies)
        p50 = samples[len(samples) // 2] * 1000 if samples else None
        return {"followers": len(self.followers), "batches_sent": self.sent_batches,
                "closed_for_not_reading": self.overflowed,
                "commit_to_write_ms_p50": round(p50, 3) if p50 is not None else None}


def parse_feed(params: dict, last_event_id, config) -> tuple:
    """(conditions, terms, after) of a feed request; QueryError naming the parameter."""
    params = query.flat_params(params)
    terms = query.parse_q(params["q"]) if params.get("q") else ()
    conditions = query.parse_conditions(params, config, reserved=("q", "after"))
    after = params.get("after", last_event_id)
    if after is not None:
        text = str(after)
        if not text.isdigit() or len(text) > 18:
            name = "after" if "after" in params else "Last-Event-ID"
            raise query.QueryError(name, f"{text[:40]!r} is not a record id")
        after = int(text)
    return conditions, terms, after


class FeedResource(JsonResource):
    """``GET /feed``: needs the ``search`` scope, like searching.  Refusals are JSON like every
    endpoint's; once following, the answer is the stream (the Deferred below never fires)."""

    openapi = http_doc.FEED

    def __init__(self, api, bearer) -> None:
        super().__init__()
        self.api = api
        self.bearer = bearer

    def render_GET(self, request):
        d = defer.maybeDeferred(self.bearer.claims, request, "search")
        d.addCallback(lambda _: self.api.feed.follow(request, request.args))
        d.addCallback(lambda _: defer.Deferred())
        return d.addErrback(_as_http)


def _as_http(failure):
    if failure.check(query.QueryError):
        raise HttpError(400, failure.value.message)
    return failure
