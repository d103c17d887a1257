"""The Python half of the cross-client tests; its Node twin is wamp/peer.js.

An Autobahn-Python ``ApplicationSession`` over ``WampWebSocketClientFactory``,
run as its own process so the pytest process never needs a running reactor.
It takes one JSON argument (the same config as peer.js), prints JSON lines on
stdout ({"event": ...} while it runs, {"result": ...} at the end), exits 0 on
success and 1 with "FAIL: ..." on stderr otherwise. Every wait is bounded.

mode "join": join and leave (the smallest check that WebSocket sessions work).
mode "serve": register <prefix>.add2/.echo/.fail, subscribe <prefix>.topic,
  print {"event": "ready"}, end once `expect_events` events arrived.
mode "drive": call the other side's procedures and publish one event.
"""

import json
import sys
from urllib.parse import urlparse

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.serializer import CBORSerializer, JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import CallResult, ComponentConfig, PublishOptions
from twisted.internet import defer, endpoints, task

SERIALIZERS = {"json": JsonSerializer, "msgpack": MsgPackSerializer, "cbor": CBORSerializer}
EVENT_ARGS = ["from", "python", 42]
EVENT_KWARGS = {"lang": "py", "list": [1, 2.5, None, True]}
BLOB = bytes([0, 1, 2, 0x7F, 0x80, 0xFF])


def emit(obj) -> None:
    print(json.dumps(obj, default=_json_default), flush=True)


def _json_default(value):
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    raise TypeError(f"cannot print {type(value).__name__} as JSON")


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr, flush=True)


class Signals:
    """What main() waits on; the session is created only once the WebSocket opens."""

    def __init__(self):
        self.joined = defer.Deferred()
        self.outcome = defer.Deferred()
        self.gone = defer.Deferred()


class Peer(ApplicationSession):
    """Runs cfg's mode once joined; `self.outcome` fires with its result."""

    def __init__(self, config, cfg, signals):
        super().__init__(config)
        self.cfg = cfg
        self.joined = signals.joined  # fires on WELCOME
        self.outcome = signals.outcome  # fires with the mode's result
        self.gone = signals.gone  # fires once the connection is closed
        self.left_with = None

    @defer.inlineCallbacks
    def onJoin(self, details):
        if not self.joined.called:  # not already timed out
            self.joined.callback(None)
        try:
            result = yield self.modes()[self.cfg["mode"]]()
        except Exception as e:
            self._settle(e)
        else:
            self._settle(result)
        self.leave()

    def onLeave(self, details):
        self.left_with = details.reason
        self.disconnect()

    def onDisconnect(self):
        self._settle(RuntimeError("disconnected before the test finished"))
        if not self.gone.called:
            self.gone.callback(None)

    def modes(self) -> dict:
        """mode name -> method returning a Deferred of the result (subclasses add modes)."""
        return {"join": self.joined_only, "serve": self.serve, "drive": self.drive}

    def _settle(self, value) -> None:
        if not self.outcome.called:
            if isinstance(value, Exception):
                self.outcome.errback(value)
            else:
                self.outcome.callback(value)

    def joined_only(self):
        return defer.succeed({"session": self._session_id, "realm": self._realm})

    @defer.inlineCallbacks
    def serve(self):
        prefix, want = self.cfg["prefix"], self.cfg.get("expect_events", 1)
        events, got_all = [], defer.Deferred()

        def fail_proc(n):
            raise ApplicationError("com.example.error", "it failed", n, code=42, why="asked to")

        def on_event(*args, **kwargs):
            events.append({"args": list(args), "kwargs": kwargs})
            emit({"event": "received", "args": list(args), "kwargs": kwargs})
            if len(events) >= want and not got_all.called:
                got_all.callback(None)

        yield self.register(lambda a, b: a + b, prefix + ".add2")
        yield self.register(lambda *a, **kw: CallResult(*a, **kw), prefix + ".echo")
        yield self.register(fail_proc, prefix + ".fail")
        yield self.subscribe(on_event, prefix + ".topic")
        emit({"event": "ready", "session": self._session_id})
        yield got_all
        return {"events": events}

    @defer.inlineCallbacks
    def drive(self):
        prefix, out = self.cfg["prefix"], {}
        out["add2"] = yield self.call(prefix + ".add2", 2, 3)
        echo_kwargs = {"nested": {"a": [1, "b"]}}
        if self.cfg.get("binary"):
            echo_kwargs["blob"] = BLOB
        echo = yield self.call(prefix + ".echo", "x", 1.5, None, **echo_kwargs)
        out["echo"] = _call_result(echo)
        out["app_error"] = yield self._call_error(prefix + ".fail", 7)
        out["no_such_procedure"] = yield self._call_error(prefix + ".nothing")
        kwargs = dict(EVENT_KWARGS, **({"blob": BLOB} if self.cfg.get("binary") else {}))
        pub = yield self.publish(prefix + ".topic", *EVENT_ARGS,
                                 options=PublishOptions(acknowledge=True), **kwargs)
        out["published"] = bool(pub and pub.id)
        return out

    @defer.inlineCallbacks
    def _call_error(self, procedure, *args):
        try:
            res = yield self.call(procedure, *args)
        except ApplicationError as e:
            return {"error": e.error, "args": list(e.args), "kwargs": e.kwargs or {}}
        raise AssertionError(f"call {procedure} should have failed but returned {res!r}")


def _call_result(res):
    # One positional result comes back as itself, several as CallResult.
    if isinstance(res, CallResult):
        return {"args": list(res.results), "kwargs": res.kwresults}
    return {"args": [res], "kwargs": {}}


@defer.inlineCallbacks
def main(reactor, cfg, session_class=None):
    url = urlparse(cfg["url"])
    signals = Signals()
    session = {}

    def make_session():
        session["peer"] = (session_class or Peer)(ComponentConfig(realm=cfg.get("realm", "realm1")), cfg, signals)
        return session["peer"]

    serializer = SERIALIZERS[cfg.get("serializer", "json")]()
    factory = WampWebSocketClientFactory(make_session, url=cfg["url"], serializers=[serializer])
    budget = cfg.get("total_timeout_ms", 20000) / 1000
    signals.outcome.addTimeout(budget, reactor)
    try:
        result = yield _run(reactor, cfg, factory, url, signals)
    finally:
        signals.outcome.addErrback(lambda _: None)  # reported once, by run()
    result["leave"] = {"details": {"reason": session["peer"].left_with}}
    emit({"result": result})


@defer.inlineCallbacks
def _run(reactor, cfg, factory, url, signals):
    endpoint = endpoints.TCP4ClientEndpoint(reactor, url.hostname, url.port, timeout=5)
    yield endpoint.connect(factory)
    step = cfg.get("step_timeout_ms", 5000) / 1000
    try:
        yield signals.joined.addTimeout(step, reactor)
    except defer.TimeoutError:
        raise AssertionError(f"no WELCOME: did not join {cfg.get('realm', 'realm1')} "
                             f"at {cfg['url']} within {step:.0f} s") from None
    result = yield signals.outcome
    yield signals.gone.addTimeout(step, reactor)
    return result


def run(session_class=None) -> int:
    cfg = json.loads(sys.argv[1])
    failed = []

    def on_error(f):
        failed.append(f)
        fail(f"{f.type.__name__}: {f.getErrorMessage()}")

    def go(reactor):
        return main(reactor, cfg, session_class).addErrback(on_error)

    try:
        task.react(go)
    except SystemExit as e:
        return 1 if failed else (e.code or 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
