"""Envelopes through the real router: Autobahn-Python publisher and subscriber,
and a raw subscriber that sees the exact ppt_* details and bytes."""

import base64

import pytest_twisted
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig
from twisted.internet import defer, endpoints, reactor

from relayrouter import e2e
from relayrouter.e2e.keys import FileKeys
from relayrouter.e2e.wamp import enable_payload_passthru, publish_envelope, publish_sealed

from ..support import SERIALIZERS, Client, connect_raw, within

PPT_ROLES = {role: {"features": {"payload_passthru_mode": True}}
             for role in ("publisher", "subscriber", "caller", "callee")}


@defer.inlineCallbacks
def connect_passthru(running, serializer="json"):
    session = Client(ComponentConfig("realm1", {}))
    enable_payload_passthru(session)
    factory = WampWebSocketClientFactory(lambda: session, url=running.ws_url,
                                         serializers=[SERIALIZERS[serializer]()])
    yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", running.ws_port).connect(factory)
    yield within(session.joined)
    return session


def inbox():
    box = {"events": [], "next": defer.Deferred()}

    def on_event(*args, **kwargs):
        box["events"].append((args, kwargs))
        d, box["next"] = box["next"], defer.Deferred()
        d.callback(None)

    return box, on_event


@pytest_twisted.inlineCallbacks
def test_autobahn_envelope_passes_the_router_untouched(running):
    acme, globex = FileKeys.generate("acme"), FileKeys.generate("globex")
    raw = yield connect_raw(running)
    yield raw.hello(details={"roles": PPT_ROLES})
    raw.send([32, 1, {}, "com.orders"])
    yield raw.next()
    subscribers = []
    for serializer in ("json", "msgpack", "cbor"):
        session = yield connect_passthru(running, serializer)
        box, on_event = inbox()
        yield session.subscribe(on_event, "com.orders")
        subscribers.append(box)
    publisher = yield connect_passthru(running, "cbor")
    document = {"order": 7, "note": "fragile", "blob": "x" * 300}
    envelope = e2e.seal(document, "com.orders", acme, [globex.public])
    yield publish_envelope(publisher, "com.orders", envelope, acknowledge=True)
    event = yield raw.next()
    assert event[0] == 36
    assert event[3] == e2e.ppt_options(envelope)  # the ppt_* details, forwarded as published
    assert event[4] == ["\u0000" + base64.b64encode(envelope).decode()]  # byte for byte
    for box in subscribers:
        if not box["events"]:
            yield within(box["next"])
        [(args, kwargs)] = box["events"]
        assert args == (envelope,) and kwargs == {}
        opened = e2e.open_envelope(args[0], globex, {acme.public.signing_kid: acme.public}, topic="com.orders")
        assert opened.document == document and opened.sender.org == "acme"


@pytest_twisted.inlineCallbacks
def test_publish_sealed_without_acknowledge_and_the_hello_announcement(running):
    acme = FileKeys.generate("acme")
    subscriber = yield connect_passthru(running)
    box, on_event = inbox()
    yield subscriber.subscribe(on_event, "com.notes")
    publisher = yield connect_passthru(running)
    assert publish_sealed(publisher, "com.notes", {"n": 1}, acme, [acme.public]) is None
    yield within(box["next"])
    [(args, _)] = box["events"]
    assert e2e.open_envelope(args[0], acme, {acme.public.signing_kid: acme.public}).document == {"n": 1}
    [session] = [s for s in running.router.sessions() if s.session_id == publisher._session_id]
    assert session.supports("publisher", "payload_passthru_mode")
