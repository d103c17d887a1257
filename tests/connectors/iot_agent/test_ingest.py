"""The agent's group commits (connectors/iot_agent/ingest.py), in memory: a
store whose commits the test lands, on a fake clock.  The real store and
agent are tested with real processes in test_agent.py."""

import json

from twisted.internet import defer, task

from connectors.iot_agent.ingest import Ingest


class Store:
    """Holds each batch's Deferred until the test lands it."""

    def __init__(self) -> None:
        self.batches: list[tuple[list, defer.Deferred]] = []

    def run(self, fn, rows):
        self.batches.append((rows, defer.Deferred()))
        return self.batches[-1][1]

    def land(self, clock, seconds: float) -> None:
        """The oldest batch in flight commits ``seconds`` after it was handed over."""
        clock.advance(seconds)
        rows, d = next((r, d) for r, d in self.batches if not d.called)
        d.callback(None)


def make():
    clock, store = task.Clock(), Store()
    published = []
    ingest = Ingest(store, None, clock, publish=lambda tenant, topic, m: published.append(m["attrs"]["n"]))
    return clock, store, ingest, published


def message(n: int) -> dict:
    return {"metadata": {"tenant": "acme", "deviceid": "d", "timestamp": n}, "attrs": {"n": n}}


def post(ingest, n: int, answered: list):
    d = ingest.queue([message(n)])
    d.addCallback(lambda _: answered.append(n))


def numbers(batch) -> list[int]:
    """The messages of a batch handed to the store, by the rows it stores."""
    return [json.loads(attrs)["n"] for _tenant, _device, _ts, attrs in batch[0]]


def test_a_message_that_finds_the_store_idle_is_committed_at_once():
    clock, store, ingest, published = make()
    answered = []
    post(ingest, 1, answered)
    clock.advance(0)
    assert [numbers(b) for b in store.batches] == [[1]]
    store.land(clock, 0.001)
    assert answered == [1] and published == [1]
    post(ingest, 2, answered)  # idle again: no lingering
    clock.advance(0)
    assert [numbers(b) for b in store.batches] == [[1], [2]]


def test_the_next_batch_lingers_for_the_callers_just_answered_then_goes_at_once():
    """Two cohorts (1, 2 in a commit; 3, 4 arriving meanwhile) merge: the
    next commit waits for 1 and 2 to come back, and goes when they have."""
    clock, store, ingest, _ = make()
    answered = []
    post(ingest, 1, answered)
    post(ingest, 2, answered)
    clock.advance(0)
    post(ingest, 3, answered)
    post(ingest, 4, answered)
    store.land(clock, 0.001)
    assert answered == [1, 2] and len(store.batches) == 1  # 3 and 4 linger
    post(ingest, 5, answered)
    assert len(store.batches) == 1
    post(ingest, 6, answered)  # all four awaited are here: no waiting for the timer
    assert [numbers(b) for b in store.batches] == [[1, 2], [3, 4, 5, 6]]
    assert clock.getDelayedCalls() == []


def test_a_lingering_batch_waits_no_longer_than_the_last_commit_took_nor_max_linger():
    clock, store, ingest, _ = make()
    answered = []
    post(ingest, 1, answered)
    clock.advance(0)
    post(ingest, 2, answered)
    store.land(clock, 0.0005)  # that commit took 0.5 ms
    clock.advance(0.0004)
    assert len(store.batches) == 1
    clock.advance(0.0001)
    assert [numbers(b) for b in store.batches] == [[1], [2]]
    post(ingest, 3, answered)
    store.land(clock, 0.5)  # a slow commit: the next waits at most max_linger
    clock.advance(ingest.max_linger)
    assert [numbers(b) for b in store.batches] == [[1], [2], [3]] and answered == [1, 2]


def test_a_full_batch_waits_for_nobody():
    clock, store, ingest, _ = make()
    ingest.max_batch = 3
    answered = []
    post(ingest, 0, answered)
    clock.advance(0)
    for n in range(1, 5):
        post(ingest, n, answered)
    store.land(clock, 0.001)
    assert [numbers(b) for b in store.batches] == [[0], [1, 2, 3]]  # at once, and 4 waits its turn


def test_a_failed_commit_fails_its_callers_and_the_next_batch_still_goes(logged_errors):
    logged_errors.expect(r"disk full")
    clock, store, ingest, published = make()
    failed = []
    d = ingest.queue([message(1)])
    d.addErrback(lambda f: failed.append(f.getErrorMessage()))
    clock.advance(0)
    answered = []
    post(ingest, 2, answered)
    store.batches[0][1].errback(RuntimeError("disk full"))
    assert failed == ["disk full"] and published == [] and ingest.counters["store_failed"] == 1
    clock.advance(ingest.max_linger)
    assert [numbers(b) for b in store.batches] == [[1], [2]]
