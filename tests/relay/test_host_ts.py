"""The video ingest's pieces: chunked request bodies, and frames of whole TS packets."""

from relayrouter.cli.host import TS_PACKET, _Body, _TsRequest


def test_chunked_body_is_decoded_across_any_split():
    wire = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"
    for cut in range(1, len(wire)):
        body = _Body(chunked=True)
        got = b"".join(body.feed(wire[:cut])) + b"".join(body.feed(wire[cut:]))
        assert got == b"hello world", cut


class _Host:
    def __init__(self):
        self.frames = []

    def out(self, data):
        self.frames.append(data)


class _Transport:
    def __init__(self):
        self.written = b""

    def write(self, data):
        self.written += data

    def loseConnection(self):
        self.lost = True


def test_ts_frames_hold_whole_packets_only():
    request = _TsRequest()
    request.factory = type("F", (), {"host": _Host()})()
    request.transport = _Transport()
    request.connectionMade()
    packets = bytes(range(256)) * 3  # 768 bytes: 4 packets and 16 bytes over
    request.dataReceived(b"POST /ts/video0 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n" + packets[:100])
    request.dataReceived(packets[100:])
    frames = request.factory.host.frames
    assert request.transport.written.startswith(b"HTTP/1.1 100 Continue")
    assert all(len(f) % TS_PACKET == 0 for f in frames)
    assert b"".join(frames) == packets[:4 * TS_PACKET]
    assert request.packets == packets[4 * TS_PACKET:]


def test_ts_ingest_refuses_other_paths():
    request = _TsRequest()
    request.factory = type("F", (), {"host": _Host()})()
    request.transport = _Transport()
    request.connectionMade()
    request.dataReceived(b"GET /other HTTP/1.1\r\n\r\n")
    assert request.transport.written.startswith(b"HTTP/1.1 404")
