"""A router with the relay on, practable-style tokens, and a raw WebSocket client."""

import time

import jwt as pyjwt
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, reactor

from ..connectors.processes import waiting_with_the_reactor
from ..security_support import HS_SECRET, http, start, stop  # noqa: F401 (re-exported)

AUDIENCE = "https://relay.example.org/access"


def relay_config(monkeypatch, roles=None, **relay):
    monkeypatch.setenv("RELAY_SECRET", HS_SECRET)
    realm = {
        "name": "lab",
        "auth": {"jwt": {"algorithms": ["HS256"], "audience": AUDIENCE, "authrole": "relay", "as_ticket": True,
                         "keys": [{"secret_env": "RELAY_SECRET"}]}},
    }
    if roles is not None:
        realm["roles"] = roles
    return {
        "realms": [realm],
        "revocation": {"claims": ["bid", "booking_id", "jti", "sub"], "close_grace": 1},
        "relay": {"realm": "lab", **relay},
    }


def practable_token(topic="pend00", scopes=("read", "write"), prefix="session", booking_id="bk-1",
                    lifetime=600, aud=AUDIENCE, **extra) -> str:
    """A token the way the seed's `relay token` makes them (no sub; booking_id)."""
    now = int(time.time())
    claims = {"topic": topic, "prefix": prefix, "scopes": list(scopes), "booking_id": booking_id,
              "aud": [aud], "iat": now, "nbf": now, "exp": now + lifetime, **extra}
    return pyjwt.encode({k: v for k, v in claims.items() if v is not None}, HS_SECRET, algorithm="HS256")


def admin_token(scopes=("relay:admin",), lifetime=600) -> str:
    now = int(time.time())
    return pyjwt.encode({"scopes": list(scopes), "aud": [AUDIENCE], "iat": now, "exp": now + lifetime,
                         "topic": "admin", "prefix": "session"}, HS_SECRET, algorithm="HS256")


@defer.inlineCallbacks
def post_access(router, topic, token, prefix="session", bearer=False):
    headers = {"Authorization": f"Bearer {token}" if bearer else token}
    code, _, body = yield http("POST", f"{router.http_url}/{prefix}/{topic}", headers=headers)
    return code, body


class _Raw(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        f = self.factory
        frame = payload if isBinary else payload.decode("utf8")
        f.waiting = [d for d in f.waiting if not d.called]  # timed-out waits are gone
        if f.waiting:
            f.waiting.pop(0).callback(frame)
        else:
            f.inbox.append(frame)

    def onClose(self, wasClean, code, reason):
        f = self.factory
        f.close_info = (code, reason)
        if not f.opened.called:
            f.opened.errback(RawRefused(code, reason, None))
        if not f.closed.called:
            f.closed.callback((code, reason))
        for d in f.waiting:
            d.errback(RawRefused(code, reason, None))
        f.waiting = []


class RawRefused(Exception):
    def __init__(self, code, reason, status):
        super().__init__(f"closed {code} {reason} (HTTP {status})")
        self.code, self.reason, self.status = code, reason, status


class RawPeerClient:
    """A practable-style experiment or page: plain frames on a WebSocket."""

    def __init__(self, factory, proto):
        self.factory, self.proto = factory, proto

    def send_text(self, text: str):
        self.proto.sendMessage(text.encode("utf8"), isBinary=False)

    def send_binary(self, data: bytes):
        self.proto.sendMessage(data, isBinary=True)

    def next(self, timeout=10):
        f = self.factory
        if f.inbox:
            return defer.succeed(f.inbox.pop(0))
        if f.closed.called:
            return defer.fail(RawRefused(*f.close_info, None))
        d = defer.Deferred()
        f.waiting.append(d)
        return d.addTimeout(timeout, reactor)

    def closed(self, timeout=10):
        return self.factory.closed.addTimeout(timeout, reactor) if not self.factory.closed.called \
            else defer.succeed(self.factory.close_info)

    def close(self):
        self.proto.sendClose(1000)


@defer.inlineCallbacks
def open_raw(router, uri: str, headers=None):
    """Open the URI the access point gave; RawRefused if the upgrade is refused."""
    factory = WebSocketClientFactory(uri, headers=headers)
    factory.protocol = _Raw
    factory.opened, factory.closed = defer.Deferred(), defer.Deferred()
    factory.inbox, factory.waiting = [], []
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", router.ws_port)
    yield endpoint.connect(factory)
    proto = yield factory.opened.addTimeout(10, reactor)
    return RawPeerClient(factory, proto)


@defer.inlineCallbacks
def connect_topic(router, topic="pend00", scopes=("read", "write"), **kw):
    code, body = yield post_access(router, topic, practable_token(topic=topic, scopes=scopes, **kw))
    assert code == 200, body
    client = yield open_raw(router, body["uri"])
    return client


# ----------------------------------------------------------------- tools

class Tool:
    """``relayrouter <command> ...`` as a child process; its stdout and stderr kept."""

    def __init__(self, args, env_extra=None, cwd=None):
        import os
        import subprocess
        import sys
        import tempfile

        self.out = tempfile.NamedTemporaryFile(prefix="relay-tool-", suffix=".out", delete=False)
        self.err = tempfile.NamedTemporaryFile(prefix="relay-tool-", suffix=".err", delete=False)
        env = dict(os.environ, **(env_extra or {}))
        self.proc = subprocess.Popen([sys.executable, "-m", "relayrouter.cli", *args], stdout=self.out,
                                     stderr=self.err, env=env, cwd=cwd)

    def stdout(self) -> str:
        with open(self.out.name, encoding="utf8", errors="replace") as f:
            return f.read()

    def stderr(self) -> str:
        with open(self.err.name, encoding="utf8", errors="replace") as f:
            return f.read()

    def signal(self, signum) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> int:
        import signal

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                waiting_with_the_reactor(self.proc.wait, 10)  # the test's sessions answer a GOODBYE
            except Exception:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode
