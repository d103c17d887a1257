"""The mediator-proxy's delivery decisions, without I/O."""

import json

import pytest

from connectors.mediator_proxy.delivery import (DELIVERED, REFUSED, RETRY, InboundQueue, Message, put_verdict,
                                                retry_after, to_http, verdict)


@pytest.mark.parametrize("status, expected", [
    (200, DELIVERED), (202, DELIVERED), (204, DELIVERED), (None, RETRY), (500, RETRY), (502, RETRY),
    (503, RETRY), (408, RETRY), (425, RETRY), (429, RETRY), (400, REFUSED), (401, REFUSED), (404, REFUSED),
    (413, REFUSED), (301, REFUSED)])
def test_verdicts(status, expected):
    assert verdict(status) == expected


def test_retry_after_seconds_are_capped_and_dates_ignored():
    assert retry_after("3", 30) == 3 and retry_after("120", 30) == 30 and retry_after("-4", 30) == 0
    assert retry_after(None, 30) is None and retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 30) is None


def test_http_puts_come_back_as_they_went_in():
    assert to_http([b"\x00\x01enc"], {"content_type": "application/didcomm-envelope-enc"}) == (
        b"\x00\x01enc", "application/didcomm-envelope-enc")
    assert to_http([b"raw"], {}) == (b"raw", "application/octet-stream")
    assert to_http(["text"], {}) == (b"text", "text/plain; charset=utf-8")


def test_other_wamp_puts_are_delivered_as_json():
    body, content_type = to_http([1, b"\x01"], {"k": "v"})
    assert content_type == "application/json"
    assert json.loads(body) == {"args": [1, "\x00AQ=="], "kwargs": {"k": "v"}}


def message(i, attempt=1):
    return Message.from_take({"id": i, "attempt": attempt, "timestamp": 1.5, "args": [b"m%d" % i],
                              "kwargs": {"content_type": "text/plain"}})


def test_queue_keeps_order_and_each_message_once():
    q = InboundQueue()
    assert [q.offer(message(i)) for i in (1, 2, 3)] == [True, True, True]
    assert not q.offer(message(1, attempt=2))  # a visibility-timeout redelivery of the head
    assert q.head().id == 1 and q.head().body == b"m1" and q.head().content_type == "text/plain"
    q.finish(1)
    assert not q.offer(message(1, attempt=3)) and q.head().id == 2 and len(q) == 2
    q.clear()
    assert q.offer(message(2, attempt=2)) and q.head().attempt == 2  # after a new session: again


def test_a_result_that_is_no_message_is_refused():
    with pytest.raises(ValueError, match="not a mailbox message"):
        Message.from_take({"args": []})


def test_put_verdicts():
    assert put_verdict(None) == RETRY and put_verdict("relayrouter.error.mailbox_full") == RETRY
    assert put_verdict("wamp.error.not_authorized") == REFUSED
    assert put_verdict("relayrouter.error.mailbox_message_too_large") == REFUSED


def test_queue_delivers_lowest_id_first_whatever_the_arrival_order():
    q = InboundQueue()
    for i in (3, 1, 2):
        q.offer(message(i))
    assert [q.head().id, len(q)] == [1, 3]
