"""A device for the console test: joins with a ticket, subscribes and
registers something, then stays until the router ends its session (it
prints why) or it is stopped.  With "call": {"procedure", "kwargs"} in the
configuration it calls that instead, prints the result and leaves.

    python console_client.py '{"url": ..., "realm": ..., "authid": ..., "ticket": ...}'
"""

import json
import sys

from autobahn.twisted.wamp import ApplicationRunner, ApplicationSession
from autobahn.wamp.serializer import JsonSerializer


def emit(obj) -> None:
    # The runner's logging takes over sys.stdout; JSON lines go to the real one.
    print(json.dumps(obj), file=sys.__stdout__, flush=True)


class Device(ApplicationSession):
    def onConnect(self) -> None:
        self.join(self.config.realm, authmethods=["ticket"], authid=self.config.extra["authid"])

    def onChallenge(self, challenge):
        return self.config.extra["ticket"]

    async def onJoin(self, details) -> None:
        call = self.config.extra.get("call")
        if call is not None:
            result = await self.call(call["procedure"], **call.get("kwargs", {}))
            emit({"event": "called", "result": result})
            self.leave()
            return
        await self.subscribe(lambda *a: None, "com.example.console.readings")
        await self.register(lambda: "ok", "com.example.console.status")
        emit({"event": "joined", "session": details.session})

    def onLeave(self, details) -> None:
        emit({"event": "left", "reason": details.reason, "message": details.message})
        self.disconnect()

    def onDisconnect(self) -> None:
        from twisted.internet import reactor

        if reactor.running:
            reactor.stop()


if __name__ == "__main__":
    cfg = json.loads(sys.argv[1])
    runner = ApplicationRunner(cfg["url"], cfg["realm"], extra=cfg, serializers=[JsonSerializer()])
    runner.run(Device, auto_reconnect=False)
