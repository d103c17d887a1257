"""The bucket helper's parts that need no NATS server: the default replica count,
and the nats-py internals the quicker watch heartbeats rely on."""

import asyncio
from types import SimpleNamespace
from urllib.parse import urlparse

from nats.js.kv import KeyValue

from relayrouter.cluster.buckets import WATCH_HEARTBEAT, Buckets, _quick_watches, default_replicas


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
