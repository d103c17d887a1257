"""The CPython ceiling: the least a WAMP relay on Twisted + Autobahn can do.

    python bench/ceiling.py --websocket PORT [--rawsocket PORT2]

Speaks only the WAMP the load generator uses, with no realms, no auth, no
URI checks, no options and no Autobahn message classes: per message it costs
one WebSocket (Autobahn) or RawSocket frame, one stdlib ``json`` or
``msgpack`` decode, a dict lookup and one encode.  A publication is encoded
once per serializer in use, then the same bytes go to every subscriber.
SUBSCRIBE ignores ``match``: a pattern subscription is stored under its
pattern string and never matches anything, so ``pattern_subscriptions``
measures what 10,000 idle entries cost a relay that does no matching.
Binary payloads pass through untouched only between peers of the same
serializer, which is all the benchmark does.

Whatever relayrouter spends above this relay is router logic; the issue's
goals are ratios to it.
"""

import argparse
import itertools
import json
import struct

import msgpack
from twisted.internet import epollreactor

epollreactor.install()

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol  # noqa: E402
from twisted.internet import protocol, reactor  # noqa: E402

HELLO, WELCOME, GOODBYE, ERROR, PUBLISH, SUBSCRIBE, SUBSCRIBED = 1, 2, 6, 8, 16, 32, 33
EVENT, CALL, RESULT, REGISTER, REGISTERED, INVOCATION, YIELD = 36, 48, 50, 64, 65, 68, 70


class Codec:
    __slots__ = ("name", "loads", "dumps", "binary", "rawsocket_id")

    def __init__(self, name, loads, dumps, binary, rawsocket_id):
        self.name, self.loads, self.dumps = name, loads, dumps
        self.binary, self.rawsocket_id = binary, rawsocket_id


JSON = Codec("json", json.loads, lambda msg: json.dumps(msg, separators=(",", ":")).encode(), False, 1)
MSGPACK = Codec("msgpack", lambda data: msgpack.unpackb(data, raw=False), msgpack.packb, True, 2)
CODEC_BY_SUBPROTOCOL = {"wamp.2.json": JSON, "wamp.2.msgpack": MSGPACK}
CODEC_BY_RAWSOCKET_ID = {1: JSON, 2: MSGPACK}


class Relay:
    """The whole routing state: topics, procedures, calls in flight."""

    def __init__(self):
        self.ids = itertools.count(1)
        self.subscribers_by_topic = {}  # topic -> (subscription id, {peer: None})
        self.callee_by_procedure = {}  # procedure -> (registration id, peer)
        self.calls_by_invocation = {}  # invocation id -> (caller peer, call request id)

    def receive(self, peer, msg):
        handler = self.HANDLERS.get(msg[0])
        if handler is not None:
            handler(self, peer, msg)

    def publish(self, peer, msg):  # [PUBLISH, req, opts, topic, args?, kwargs?]
        entry = self.subscribers_by_topic.get(msg[3])
        if entry is None:
            return
        event = [EVENT, entry[0], next(self.ids), {}] + msg[4:]
        encoded = {}  # one encoding per serializer in use
        for receiver in entry[1]:
            if receiver is not peer:
                data = encoded.get(receiver.codec)
                if data is None:
                    data = encoded[receiver.codec] = receiver.codec.dumps(event)
                receiver.send_bytes(data)

    def subscribe(self, peer, msg):  # [SUBSCRIBE, req, opts, topic]
        entry = self.subscribers_by_topic.get(msg[3])
        if entry is None:
            entry = self.subscribers_by_topic[msg[3]] = (next(self.ids), {})
        entry[1][peer] = None
        peer.topics.append(msg[3])
        peer.send([SUBSCRIBED, msg[1], entry[0]])

    def register(self, peer, msg):  # [REGISTER, req, opts, procedure]
        registration = self.callee_by_procedure[msg[3]] = (next(self.ids), peer)
        peer.send([REGISTERED, msg[1], registration[0]])

    def call(self, peer, msg):  # [CALL, req, opts, procedure, args?, kwargs?]
        registration = self.callee_by_procedure.get(msg[3])
        if registration is None:
            peer.send([ERROR, CALL, msg[1], {}, "wamp.error.no_such_procedure"])
            return
        invocation = next(self.ids)
        self.calls_by_invocation[invocation] = (peer, msg[1])
        registration[1].send([INVOCATION, invocation, registration[0], {}] + msg[4:])

    def yield_(self, peer, msg):  # [YIELD, invocation, opts, args?, kwargs?]
        caller = self.calls_by_invocation.pop(msg[1], None)
        if caller is not None:
            caller[0].send([RESULT, caller[1], {}] + msg[3:])

    def hello(self, peer, msg):
        peer.send([WELCOME, next(self.ids), {"roles": {"broker": {}, "dealer": {}}}])

    def goodbye(self, peer, msg):
        peer.send([GOODBYE, {}, "wamp.close.goodbye_and_out"])

    def gone(self, peer):
        for topic in peer.topics:
            entry = self.subscribers_by_topic.get(topic)
            if entry is not None:
                entry[1].pop(peer, None)
                if not entry[1]:
                    del self.subscribers_by_topic[topic]
        for procedure, (_, callee) in list(self.callee_by_procedure.items()):
            if callee is peer:
                del self.callee_by_procedure[procedure]

    HANDLERS = {PUBLISH: publish, SUBSCRIBE: subscribe, REGISTER: register, CALL: call,
                YIELD: yield_, HELLO: hello, GOODBYE: goodbye}


RELAY = Relay()


class WebSocketPeer(WebSocketServerProtocol):
    codec = None
    topics = ()

    def onConnect(self, request):
        for subprotocol in request.protocols:
            codec = CODEC_BY_SUBPROTOCOL.get(subprotocol)
            if codec is not None:
                self.codec, self.topics = codec, []
                return subprotocol
        raise ValueError("no WAMP subprotocol offered that this relay speaks")

    def onMessage(self, payload, isBinary):
        RELAY.receive(self, self.codec.loads(payload))

    def send(self, msg):
        self.sendMessage(self.codec.dumps(msg), self.codec.binary)

    def send_bytes(self, data):
        self.sendMessage(data, self.codec.binary)

    def onClose(self, wasClean, code, reason):
        RELAY.gone(self)


class RawSocketPeer(protocol.Protocol):
    """RawSocket: a 4-octet handshake, then frames of a 4-octet header and a payload."""

    def __init__(self):
        self.codec, self.topics, self.buffer = None, [], b""

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)  # as Autobahn does for WebSocket

    def dataReceived(self, data):
        buffer = self.buffer + data
        if self.codec is None:
            if len(buffer) < 4:
                self.buffer = buffer
                return
            self.codec = CODEC_BY_RAWSOCKET_ID.get(buffer[1] & 0x0F)
            if buffer[0] != 0x7F or self.codec is None:
                self.transport.write(b"\x7f\x10\x00\x00")  # error 1: serializer unsupported
                self.transport.loseConnection()
                return
            self.transport.write(bytes([0x7F, 0xF0 | self.codec.rawsocket_id, 0, 0]))
            buffer = buffer[4:]
        offset, end = 0, len(buffer)
        while end - offset >= 4:
            (header,) = struct.unpack_from(">I", buffer, offset)
            length = header & 0xFFFFFF
            if end - offset - 4 < length:
                break
            kind = header >> 24
            frame = buffer[offset + 4:offset + 4 + length]
            offset += 4 + length
            if kind == 0:
                RELAY.receive(self, self.codec.loads(frame))
            elif kind == 1:  # PING: answer PONG with the same payload
                self.transport.write(struct.pack(">I", (2 << 24) | length) + frame)
        self.buffer = buffer[offset:]

    def send(self, msg):
        self.send_bytes(self.codec.dumps(msg))

    def send_bytes(self, data):
        self.transport.writeSequence((struct.pack(">I", len(data)), data))

    def connectionLost(self, reason=None):
        RELAY.gone(self)


def main():
    parser = argparse.ArgumentParser(description="CPython WAMP relay ceiling for bench/run.py")
    parser.add_argument("--websocket", type=int, required=True, help="WebSocket port on 127.0.0.1")
    parser.add_argument("--rawsocket", type=int, help="RawSocket port on 127.0.0.1")
    args = parser.parse_args()
    factory = WebSocketServerFactory(f"ws://127.0.0.1:{args.websocket}")
    factory.protocol = WebSocketPeer
    factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=60,
                               maxFramePayloadSize=0, maxMessagePayloadSize=0)
    reactor.listenTCP(args.websocket, factory, backlog=4096, interface="127.0.0.1")
    if args.rawsocket:
        reactor.listenTCP(args.rawsocket, protocol.Factory.forProtocol(RawSocketPeer),
                          backlog=4096, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
