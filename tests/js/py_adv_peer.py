"""The Python half of the Advanced Profile cross-client tests (test_js_advanced.py);
its Node twin is wamp/advanced.js.

Same machinery as py_peer.py (its own process, JSON lines on stdout, every
wait bounded by the config's total_timeout_ms), with one mode per test. Each
mode registers/subscribes under cfg["base"], prints {"event": "ready", ...}
with its session ID, authid and authrole, records what happens to it as
{"event": ...} lines (in the order it happened), and ends when the Node side
publishes to <base>.done.

mode "pattern": prefix, exact and wildcard registrations that report
  details.procedure, and <base>.ctl.publish, which publishes to the topics it
  is given (so the Node subscribers are in place before anything is sent).
mode "subscriber": subscribes <base>.bw and records each event with the
  publisher details; ends at the event whose first argument is "end".
mode "shared": a roundrobin callee of <base>.shared answering "py".
mode "rpc": <base>.progress (progressive results), <base>.stuck (never
  answers; records the INTERRUPT and, for the tag "kill", answers it with its
  own application error), <base>.ping (an ordering marker).
"""

import sys

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions, SubscribeOptions
from twisted.internet import defer

from py_peer import Peer, emit, run

STOPPED_BY_INTERRUPT = "com.example.stopped_by_interrupt"


class AdvancedPeer(Peer):
    def modes(self) -> dict:
        return {"pattern": self.pattern, "subscriber": self.subscriber,
                "shared": self.shared, "rpc": self.rpc}

    def _ready(self) -> None:
        emit({"event": "ready", "session": self._session_id,
              "authid": self._authid, "authrole": self._authrole})

    @defer.inlineCallbacks
    def _until_done(self):
        """Subscribe <base>.done and return a Deferred that fires on its event."""
        done = defer.Deferred()
        yield self.subscribe(lambda *a, **kw: done.called or done.callback(None), self.cfg["base"] + ".done")
        return done

    # ------------------------------------------------------------ pattern

    @defer.inlineCallbacks
    def pattern(self):
        base, seen = self.cfg["base"], []

        def report(*args, details):
            seen.append(details.procedure)
            emit({"event": "invoked", "procedure": details.procedure})
            return {"by": "py", "procedure": details.procedure}

        @defer.inlineCallbacks
        def publish(topics):
            for topic in topics:
                yield self.publish(topic, topic, options=PublishOptions(acknowledge=True))
            return len(topics)

        with_details = dict(details_arg="details")
        yield self.register(report, base + ".proc", options=RegisterOptions(match="prefix", **with_details))
        yield self.register(report, base + ".rpc.exact", options=RegisterOptions(**with_details))
        yield self.register(report, base + ".w..z", options=RegisterOptions(match="wildcard", **with_details))
        yield self.register(publish, base + ".ctl.publish")
        done = yield self._until_done()
        self._ready()
        yield done
        return {"invoked": seen}

    # --------------------------------------------------------- subscriber

    @defer.inlineCallbacks
    def subscriber(self):
        events, end = [], defer.Deferred()

        def on_event(*args, details, **kwargs):
            event = {"args": list(args), "publisher": details.publisher,
                     "publisher_authid": details.publisher_authid,
                     "publisher_authrole": details.publisher_authrole}
            events.append(event)
            emit(dict(event, event="received"))
            if args and args[0] == "end" and not end.called:
                end.callback(None)

        yield self.subscribe(on_event, self.cfg["base"] + ".bw", options=SubscribeOptions(details_arg="details"))
        self._ready()
        yield end
        return {"events": events}

    # ------------------------------------------------------------- shared

    @defer.inlineCallbacks
    def shared(self):
        calls = []

        def answer():
            calls.append("py")
            emit({"event": "invoked", "count": len(calls)})
            return "py"

        yield self.register(answer, self.cfg["base"] + ".shared", options=RegisterOptions(invoke="roundrobin"))
        done = yield self._until_done()
        self._ready()
        yield done
        return {"calls": len(calls)}

    # ---------------------------------------------------------------- rpc

    @defer.inlineCallbacks
    def rpc(self):
        base, log = self.cfg["base"], []

        def record(what, tag):
            log.append([what, tag])
            emit({"event": what, "tag": tag})

        def progress(n, details):
            for i in range(n):
                details.progress(i, step=i)
            return "done"

        def stuck(tag):
            record("invoked", tag)

            def on_interrupt(d):
                # Autobahn-Python cancels the endpoint's Deferred on INTERRUPT. Left
                # alone that fails with CancelledError; for "kill" the callee answers
                # with its own error instead, which the caller must get.
                record("interrupted", tag)
                if tag == "kill":
                    d.errback(ApplicationError(STOPPED_BY_INTERRUPT, "interrupted", tag))

            return defer.Deferred(canceller=on_interrupt)

        def ping(tag):
            record("ping", tag)
            return "pong"

        yield self.register(progress, base + ".progress", options=RegisterOptions(details_arg="details"))
        yield self.register(stuck, base + ".stuck")
        yield self.register(ping, base + ".ping")
        done = yield self._until_done()
        self._ready()
        yield done
        return {"log": log}


if __name__ == "__main__":
    sys.exit(run(AdvancedPeer))
