"""Real clients for the IoT agent tests: HTTP (urllib, in a thread), MQTT
devices (paho-mqtt with its own network thread, as a device would run it),
WAMP (Autobahn-Python) and plain WebSocket (Autobahn) for Kafka-WS."""

import json
import queue
import ssl
import threading
import urllib.error
import urllib.request

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from autobahn.twisted.websocket import (WampWebSocketClientFactory, WebSocketClientFactory,
                                        WebSocketClientProtocol)
from autobahn.wamp.types import ComponentConfig
from twisted.internet import defer, endpoints, reactor, threads

from ...support import SERIALIZERS, Client

TIMEOUT = 20


def blocking(fn, *args, **kwargs) -> defer.Deferred:
    return threads.deferToThread(fn, *args, **kwargs)


def http_sync(method: str, url: str, body=None, bearer=None, headers=None, context=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, method=method, data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if bearer is not None:
        request.add_header("Authorization", f"Bearer {bearer}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as response:
            content = response.read()
            return response.status, (json.loads(content) if content else None)
    except urllib.error.HTTPError as e:
        content = e.read()
        return e.code, (json.loads(content) if content else None)


def http(*args, **kwargs) -> defer.Deferred:
    return blocking(http_sync, *args, **kwargs)


class MqttDevice:
    """A device: paho-mqtt (MQTT 5 or 3.1.1), its own loop thread; every wait bounded.

    Its client id is its username unless given (the agent's convention:
    ``tenant:id`` for both)."""

    def __init__(self, port: int, username: str | None, password: str | None, client_id: str | None = None,
                 clean: bool = True, protocol: str = "5") -> None:
        self.port = port
        if client_id is None:
            client_id = username or ""
        if protocol == "5":
            self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        else:
            self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      protocol=paho.MQTTv311, clean_session=clean)
        self.protocol = protocol
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack = queue.Queue()
        self.acks: dict[int, queue.Queue] = {}
        self.messages: queue.Queue = queue.Queue()
        self.subscribed = queue.Queue()
        self.disconnects = queue.Queue()
        self._lock = threading.Lock()
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(rc)
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc)
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.put(rcs)
        self.clean = clean

    def connect(self):
        """The CONNACK's reason code (success or the broker's refusal); after a
        refusal the client stops (no reconnection)."""
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            if not self.clean:
                props.SessionExpiryInterval = 3600  # a session the broker keeps
            self.client.connect("127.0.0.1", self.port, 30, clean_start=self.clean, properties=props)
        else:
            self.client.connect("127.0.0.1", self.port, 30)
        self.client.loop_start()
        try:
            rc = self.connack.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("no CONNACK from the broker") from None
        if rc.is_failure:
            self.client.loop_stop()
        return rc

    def _on_publish(self, client, userdata, mid, rc, properties) -> None:
        with self._lock:
            box = self.acks.setdefault(mid, queue.Queue())
        box.put(rc)

    def publish(self, topic: str, payload, qos: int = 1):
        """The PUBACK's reason code (QoS 1)."""
        if not isinstance(payload, (bytes, str)):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=qos)
        with self._lock:
            box = self.acks.setdefault(info.mid, queue.Queue())
        try:
            return box.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no PUBACK for {topic}") from None

    def subscribe(self, topic: str):
        self.client.subscribe(topic, qos=1)
        return self.subscribed.get(timeout=TIMEOUT)

    def next_message(self, seconds: float = TIMEOUT):
        try:
            return self.messages.get(timeout=seconds)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def try_connect(port: int, username: str, password: str, client_id: str, protocol: str = "5",
                clean: bool = True):
    """Blocking: the CONNACK's reason code of a device that then goes away."""
    device = MqttDevice(port, username, password, client_id=client_id, protocol=protocol, clean=clean)
    rc = device.connect()
    if not rc.is_failure:
        device.close()
    return rc


@defer.inlineCallbacks
def wamp(router_ws_url: str, port: int, realm: str, ticket: str):
    session = Client(ComponentConfig(realm, {"authmethods": ["ticket"], "authid": "tester", "ticket": ticket}))
    factory = WampWebSocketClientFactory(lambda: session, url=router_ws_url, serializers=[SERIALIZERS["json"]()])
    yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    yield session.joined.addTimeout(TIMEOUT, reactor)
    return session


class _KafkaWsClient(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        self.factory.messages.append(json.loads(payload))
        waiters, self.factory.waiters = self.factory.waiters, []
        for d in waiters:
            d.callback(None)

    def onClose(self, wasClean, code, reason):
        self.factory.close = (code, reason)
        if not self.factory.closed.called:
            self.factory.closed.callback((code, reason))
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"closed before opening: {code} {reason}"))


@defer.inlineCallbacks
def kafka_ws(port: int, path: str):
    """A plain WebSocket client of Kafka-WS: .messages, .closed (code, reason), .wait_messages(n)."""
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}{path}")
    factory.protocol = _KafkaWsClient
    factory.messages = []
    factory.waiters = []
    factory.close = None
    factory.opened = defer.Deferred()
    factory.closed = defer.Deferred()

    @defer.inlineCallbacks
    def messages(count):
        """Wait until ``count`` messages came (they may have come already)."""
        while len(factory.messages) < count:
            d = defer.Deferred()
            factory.waiters.append(d)
            yield d.addTimeout(TIMEOUT, reactor)
        return factory.messages
    factory.wait_messages = messages
    yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(factory)
    return factory


def tls_context(ca_file, cert_file=None, key_file=None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = False
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file))
    return context
