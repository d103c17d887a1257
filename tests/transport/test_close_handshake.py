"""A peer slow to answer our WebSocket Close still reads why it was closed.

After an ABORT (or a GOODBYE) the router sends a Close and waits ``closeHandshakeTimeout``
for the peer's. Autobahn then resets the TCP connection, and a reset makes the peer's system
throw away what it received and had not read: a loaded client never learnt why it was
refused (CI: a test's client saw its connection dropped instead of the ABORT it was sent).
The router hangs up with a FIN instead, and resets only a peer that still has not gone
after as long again (autobahn_overrides.WebSocketProtocolOverrides.onCloseHandshakeTimeout).
"""

import json
import socket
import time

import pytest

from ..connectors.processes import RouterProcess, listener
from ..fuzz_net import ws_frame

CONFIG = listener() + '[[realms]]\nname = "realm1"\n'


@pytest.fixture
def router(tmp_path):
    proc = RouterProcess(tmp_path, CONFIG)
    proc.start()
    yield proc
    proc.stop()


def upgraded(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Protocol: wamp.2.json\r\n\r\n")
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    return sock


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked server frame in ``data`` (payloads under 64 KiB)."""
    found, at = [], 0
    while at + 2 <= len(data):
        opcode, size, at = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
        if size == 126:
            size, at = int.from_bytes(data[at:at + 2], "big"), at + 2
        found.append((opcode, data[at:at + size]))
        at += size
    return found


def test_a_peer_that_reads_late_still_reads_the_abort_and_the_close(router):
    sock = upgraded(router.port)
    with sock:
        hello = json.dumps([1, "no.such.realm", {"roles": {"subscriber": {}}}]).encode()
        sock.sendall(ws_frame(0x1, hello))
        time.sleep(3.0)  # past the router's closing handshake timeout (1 s), reading nothing
        received = b""
        while chunk := sock.recv(65536):  # a reset would raise ConnectionResetError, the data lost
            received += chunk
    sent = frames(received)
    assert [opcode for opcode, _ in sent] == [0x1, 0x8], sent
    abort = json.loads(sent[0][1])
    assert abort[0] == 3 and abort[2] == "wamp.error.no_such_realm", abort
    assert int.from_bytes(sent[1][1][:2], "big") == 1000  # the Close the router sent after it



def test_a_peer_that_still_has_not_gone_after_as_long_again_is_reset():
    """In memory, on the listener's clock: the FIN first (loseConnection), the reset only once
    the closing handshake's timeout has passed a second time with the connection still up."""
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from relayrouter.config.limits import ListenerSettings
    from relayrouter.core.router import Router
    from relayrouter.transport.serializers import router_serializers
    from relayrouter.transport.websocket import RouterWebSocketFactory

    clock = Clock()
    router = Router(clock)
    factory = RouterWebSocketFactory(router, router_serializers(), ListenerSettings(), clock=clock,
                                     url="ws://127.0.0.1:8080/ws")
    for still_up in (True, False):
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        transport.registerProducer(proto, True)  # as the WAMP connection's is, once open
        proto.state = proto.STATE_CLOSING  # our Close went out; no answer came
        proto.onCloseHandshakeTimeout()
        assert transport.disconnecting and not transport.disconnected  # a FIN, nothing thrown away
        transport.connected = still_up  # a peer reading nothing keeps our buffer full, and the connection up
        clock.advance(proto.closeHandshakeTimeout - 0.01)
        assert not transport.disconnected
        clock.advance(0.02)
        assert transport.disconnected is still_up
