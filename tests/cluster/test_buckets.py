"""The bucket helper's parts that need no NATS server: the default replica count,
and the nats-py internals the quicker watch heartbeats and the kept watches rely on."""

import asyncio
from types import SimpleNamespace
from urllib.parse import urlparse

from nats.js.kv import KeyValue

from relayrouter.cluster.buckets import WATCH_HEARTBEAT, Buckets, _quick_watches, default_replicas, watch_resumes


def _client(*urls):
    return SimpleNamespace(servers=[urlparse(u) for u in urls])


def test_default_replicas_count_distinct_servers_up_to_three():
    assert default_replicas(_client("nats://127.0.0.1:4222")) == 1
    assert default_replicas(_client("nats://a:4222", "nats://a:4222")) == 1
    assert default_replicas(_client("nats://a:4222", "nats://b:4222")) == 2
    assert default_replicas(_client(*(f"nats://h{i}:4222" for i in range(5)))) == 3
    assert Buckets(5).replicas(_client("nats://a:4222")) == 5  # a setting is taken as it is


def test_watches_subscribe_with_the_quicker_heartbeat():
    seen = {}

    class Js:
        async def subscribe(self, *args, **kwargs):
            seen.update(kwargs)

    kv = _quick_watches(KeyValue(name="b", stream="KV_b", pre="$KV.b.", js=Js(), direct=False))
    assert _quick_watches(kv)._js is kv._js  # wrapped once
    asyncio.run(kv._js.subscribe("$KV.b.>", ordered_consumer=True))
    assert seen["idle_heartbeat"] == WATCH_HEARTBEAT
    seen.clear()
    asyncio.run(kv._js.subscribe("$KV.b.>"))
    assert "idle_heartbeat" not in seen  # only the ordered consumers of watches


class _Consumer:
    """A watch's subscription whose consumer answers after ``failures`` refusals (None: never)."""

    def __init__(self, failures):
        self.failures = failures
        self.asked = 0

    async def consumer_info(self):
        self.asked += 1
        if self.failures is None or self.asked <= self.failures:
            raise TimeoutError("no responders")
        return SimpleNamespace(name="c")


def test_a_kept_watch_resumes_once_its_consumer_answers():
    watcher = KeyValue.KeyWatcher(None)
    assert hasattr(watcher, "_sub")  # nats-py's, what watch_resumes asks
    watcher._sub = _Consumer(failures=2)  # made again by nats-py after two missed heartbeats
    assert asyncio.run(watch_resumes(watcher, patience=5.0)) is True
    assert watcher._sub.asked == 3


def test_a_watch_whose_consumer_never_answers_does_not_resume():
    watcher = KeyValue.KeyWatcher(None)
    watcher._sub = _Consumer(failures=None)
    assert asyncio.run(watch_resumes(watcher, patience=0.6)) is False
    assert watcher._sub.asked >= 2
