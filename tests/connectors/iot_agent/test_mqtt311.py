"""The ingesting MQTT 3.1.1 connection: its codec without I/O, and its session
over an in-memory transport (the real broker is in test_agent.py's MQTT tests)."""

import struct

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport

from connectors.iot_agent.mqtt311 import (IngestConnection, ProtocolError, Reader, connect_packet, decode_publish,
                                          puback_packet, subscribe_packet)


def publish(topic: str, payload: bytes, packet_id: int = 0, qos: int = 1, dup: bool = False) -> bytes:
    body = struct.pack("!H", len(topic.encode())) + topic.encode()
    if qos:
        body += struct.pack("!H", packet_id)
    body += payload
    return _with_length(0x30 | qos << 1 | (8 if dup else 0), body)


def _with_length(first: int, body: bytes) -> bytes:
    out, n = bytearray([first]), len(body)
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def test_connect_packet_is_mqtt_3_1_1_with_a_persistent_session():
    packet = connect_packet("agent-0", "admin", "secret", 60)
    assert packet[0] == 0x10 and packet[1] == len(packet) - 2
    body = packet[2:]
    assert body[:6] == b"\x00\x04MQTT" and body[6] == 4  # protocol name and level 4 (3.1.1)
    assert body[7] == 0xC0  # user name and password, clean session off
    assert body[8:10] == b"\x00\x3c"
    assert body[10:] == b"\x00\x07agent-0\x00\x05admin\x00\x06secret"
    assert connect_packet("c", None, None, 10, clean_session=True)[9] == 0x02


def test_subscribe_and_puback_packets():
    assert subscribe_packet(7, [("a/+", 1)]) == b"\x82\x08\x00\x07\x00\x03a/+\x01"
    assert puback_packet(0x1234) == b"\x40\x02\x12\x34"


@pytest.mark.parametrize("size", [0, 127, 128, 16383, 16384, 70000])
def test_reader_takes_every_remaining_length_and_any_cut(size):
    packets = [publish("t/attrs", b"x" * size, 1), publish("t/attrs", b"{}", 2), b"\xd0\x00"]
    stream = b"".join(packets)
    for cut in sorted({1, 2, 3, 4, 5, len(stream) // 2, len(stream) - 1}):
        reader = Reader()
        got = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [first for first, _ in got] == [0x32, 0x32, 0xD0]
        assert decode_publish(*got[0]) == ("t/attrs", b"x" * size, 1, 1)
        assert got[2][1] == b""


def test_reader_fed_byte_by_byte():
    stream = publish("a/attrs", b'{"v": 1}', 9) + publish("b/attrs", b"0", 0, qos=0)
    reader = Reader()
    got = [packet for byte in stream for packet in reader.feed(bytes([byte]))]
    assert [decode_publish(*p) for p in got] == [("a/attrs", b'{"v": 1}', 1, 9), ("b/attrs", b"0", 0, 0)]


def test_a_remaining_length_of_five_bytes_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="longer than four bytes"):
        Reader().feed(b"\x30\xff\xff\xff\xff\x01")


@pytest.mark.parametrize("first, body, words", [
    (0x34, b"\x00\x01a\x00\x01", "QoS 2"),
    (0x36, b"\x00\x01a\x00\x01", "QoS 3"),
    (0x32, b"\x00", "too short"),
    (0x32, b"\x00\x02\xff\xfe\x00\x01", "not UTF-8"),
    (0x32, b"\x00\x09ab\x00\x01", "without a valid topic"),
    (0x32, b"\x00\x00\x00\x01", "without a valid topic"),
    (0x32, b"\x00\x03a\x00b\x00\x01", "without a valid topic"),
    (0x32, b"\x00\x01a\x00\x00", "without a packet identifier"),
    (0x32, b"\x00\x01a\x00", "without a packet identifier"),
])
def test_malformed_publish_is_a_protocol_error(first, body, words):
    with pytest.raises(ProtocolError, match=words):
        decode_publish(first, body)


class Session:
    """An IngestConnection whose wire is a StringTransport."""

    def __init__(self, **kw):
        self.reactor = MemoryReactorClock()
        self.messages = []
        self.ups = []
        self.conn = IngestConnection(self.reactor, "127.0.0.1", 1883, "agent-0", "admin", "pw",
                                     on_message=lambda c, m: self.messages.append(m),
                                     on_connected=self.ups.append, name="worker 0", **kw)
        self.conn.start()
        self.wire, self.transport = self.attach()

    def attach(self):
        host, port, factory, timeout, _ = self.reactor.tcpClients[-1]
        assert (host, port) == ("127.0.0.1", 1883)
        wire = factory.buildProtocol(None)
        transport = StringTransport()
        wire.makeConnection(transport)
        return wire, transport

    def sent(self) -> bytes:
        out = self.transport.value()
        self.transport.clear()
        return out


def test_session_connects_acks_on_its_own_connection_only():
    s = Session()
    assert s.sent() == connect_packet("agent-0", "admin", "pw", 60)
    assert not s.conn.connected
    s.wire.dataReceived(b"\x20\x02\x00\x00")
    assert s.conn.connected and s.conn.status == "ready" and s.ups == [s.conn]
    d = s.conn.subscribe([("$share/g/+/attrs", 1)])
    assert s.sent() == subscribe_packet(1, [("$share/g/+/attrs", 1)])
    granted = []
    d.addCallback(granted.append)
    s.wire.dataReceived(b"\x90\x03\x00\x01\x01" + publish("acme:d1/attrs", b'{"t": 1}', 5) + publish("x/attrs", b"1", 6))
    assert granted == [[1]]
    assert [(m.topic, m.payload, m.qos) for m in s.messages] == [("acme:d1/attrs", b'{"t": 1}', 1), ("x/attrs", b"1", 1)]
    s.conn.ack(s.messages[1].mid, 1)
    s.conn.ack(s.messages[0].mid, 1)
    assert s.sent() == puback_packet(6) + puback_packet(5)
    old = s.messages[0].mid
    s.wire.connectionLost(_Reason("gone"))
    assert not s.conn.connected and s.conn.status == "connecting" and "gone" in s.conn.last_error
    s.reactor.advance(16)  # the backoff
    s.wire, s.transport = s.attach()
    s.sent()
    s.wire.dataReceived(b"\x20\x02\x01\x00")
    s.conn.ack(old, 1)  # a message of the lost connection: the broker sends it again on this one
    assert s.sent() == b""


def test_a_refused_connection_is_retried_and_named():
    s = Session()
    s.wire.dataReceived(b"\x20\x02\x00\x05")
    assert not s.conn.connected and s.conn.last_error == "the broker refused the connection: not authorized"
    assert s.transport.disconnecting


def test_a_refused_subscription_fails_its_deferred():
    s = Session()
    s.wire.dataReceived(b"\x20\x02\x00\x00")
    failures = []
    s.conn.subscribe([("a", 1), ("b", 1)]).addErrback(failures.append)
    s.wire.dataReceived(b"\x90\x04\x00\x01\x01\x80")
    assert "refused a subscription" in failures[0].getErrorMessage()


@pytest.mark.parametrize("data, words", [
    (publish("a/attrs", b"1", 1), "unexpected packet of type 3 before CONNACK"),  # PUBLISH before CONNACK
    (b"\x20\x03\x00\x00\x00", "not two bytes"),
])
def test_a_broker_breaking_the_protocol_is_disconnected_and_named(data, words):
    s = Session()
    s.wire.dataReceived(data)
    assert words in s.conn.last_error and s.transport.disconnecting
    assert s.messages == []


def test_unexpected_packet_after_connack_aborts():
    s = Session()
    s.wire.dataReceived(b"\x20\x02\x00\x00" + b"\x40\x02\x00\x01")  # a PUBACK: we publish nothing
    assert "unexpected packet of type 4" in s.conn.last_error and s.transport.disconnecting


def test_no_connack_and_no_pingresp_drop_the_connection():
    s = Session(timeout=5)
    s.reactor.advance(5)
    assert "no CONNACK" in s.conn.last_error and s.transport.disconnecting
    s = Session()
    s.wire.dataReceived(b"\x20\x02\x00\x00")
    s.sent()
    s.reactor.advance(30)
    assert s.sent() == b"\xc0\x00"
    s.wire.dataReceived(b"\xd0\x00")
    s.reactor.advance(30)
    assert s.sent() == b"\xc0\x00" and not s.transport.disconnecting
    s.reactor.advance(30)  # no PINGRESP this time
    assert "no PINGRESP" in s.conn.last_error and s.transport.disconnecting


def test_stop_says_disconnect():
    s = Session()
    s.wire.dataReceived(b"\x20\x02\x00\x00")
    s.sent()
    s.conn.stop()
    assert s.sent() == b"\xe0\x00" and s.transport.disconnecting and s.conn.status == "stopped"


class _Reason:
    def __init__(self, text):
        self.text = text

    def getErrorMessage(self):  # noqa: N802
        return self.text

