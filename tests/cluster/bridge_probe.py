"""NatsBridge.run driven from a process of its own, so that the bridge can sit
on either reactor: ``python -m tests.cluster.bridge_probe thread|reactor URL``
(``reactor`` installs Twisted's asyncio reactor first).  Prints one JSON line
with what it saw; test_bridge_run.py checks it."""

import json
import sys


async def kv_round_trip(nc, js, value):
    kv = await js.create_key_value(bucket="bridge_probe")
    revision = await kv.put("k", value)
    entry = await kv.get("k")
    return revision, entry.value.decode()


async def fails(nc, js):
    raise ValueError("from the loop")


async def where(nc, js):
    import asyncio
    import threading

    return threading.current_thread().name, id(asyncio.get_running_loop())


def main(loop: str, url: str, dead_url: str) -> None:
    if loop == "reactor":
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import defer, reactor, task

    from relayrouter.cluster.bridge import NatsBridge, NotConnected
    from relayrouter.config.cluster import ClusterConfig

    out = {"reactor": type(reactor).__name__}

    def bridge(server):
        config = ClusterConfig(servers=(server,), node="probe", reconnect_wait=0.2, loop=loop)
        return NatsBridge(config, reactor, lambda batch: None, lambda state, text: None)

    @defer.inlineCallbacks
    def run():
        live = bridge(url)
        live.start()
        for _ in range(200):
            if live.connected:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        out["connected"] = live.connected
        out["kv"] = list((yield live.run(kv_round_trip, b"v1")))
        try:
            yield live.run(fails)
        except ValueError as e:
            out["failure"] = str(e)
        thread, loop_id = yield live.run(where)
        out["thread"] = thread
        out["on_reactor_loop"] = loop_id == id(getattr(reactor, "_asyncioEventloop", None))
        yield live.stop()  # a Deferred on the reactor's loop, None with a thread
        dead = bridge(dead_url)
        dead.start()
        try:
            yield dead.run(kv_round_trip, b"v")
        except NotConnected as e:
            out["dead"] = f"NotConnected: {e}"
        yield dead.stop()

    from twisted.python.failure import Failure

    def finish(result):
        if isinstance(result, Failure):
            out["error"] = result.getTraceback()
        print(json.dumps(out), flush=True)
        reactor.stop()

    reactor.callWhenRunning(lambda: run().addBoth(finish))
    reactor.run()


if __name__ == "__main__":
    main(*sys.argv[1:4])
