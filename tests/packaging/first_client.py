"""The README's first client, as a user would run it: register + call, subscribe + publish.

    python first_client.py URL REALM   -> prints "called:5" and "event:hello"
"""

import sys

from autobahn.twisted.component import Component
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer, task

url, realm = sys.argv[1:3]
component = Component(transports=[{"url": url, "max_retries": 0}], realm=realm)
outcome = {"status": 1}


@component.on_join
async def joined(session, details):
    try:
        await session.register(lambda a, b: a + b, "com.example.add")
        print(f"called:{await session.call('com.example.add', 2, 3)}", flush=True)
        received = defer.Deferred()
        await session.subscribe(received.callback, "com.example.hello")
        await session.publish("com.example.hello", "hello",
                              options=PublishOptions(acknowledge=True, exclude_me=False))
        print(f"event:{await received}", flush=True)
        outcome["status"] = 0
    except Exception as e:
        print(f"error:{e!r}", file=sys.stderr, flush=True)
    finally:
        await session.leave()


def main(reactor):
    def check(_):
        if outcome["status"]:
            raise SystemExit(outcome["status"])

    reactor.callLater(60, lambda: reactor.stop())
    return component.start(reactor).addCallback(check)


task.react(main)
