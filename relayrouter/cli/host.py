"""``relayrouter host``: run beside an experiment and stream a local source to a relay topic.

The relay side is the seed's access flow (``--session`` access URL and a
token), reconnected forever with backoff.  The local side is one of:

* ``--command CMD``: a shell command; its stdout goes out, frames that
  arrive go to its stdin; restarted ``--restart-delay`` seconds after it exits;
* ``--tcp HOST:PORT``: a TCP connection, both ways, reconnected with backoff;
* ``--websocket URL``: a local WebSocket server, messages both ways;
* ``--device PATH``: a serial-like device file (a tty, a FIFO), both ways;
* ``--ts ENDPOINT``: an HTTP listener (e.g. ``tcp:8888:interface=127.0.0.1``)
  that takes MPEG-TS pushed by ffmpeg as ``POST /ts/{feed}`` (chunked or
  not), as the seed's video host does; sent as binary frames of whole
  188-byte TS packets, so that a viewer that loses frames loses whole packets.

``--mode text`` sends one text frame per line (without the newline) and
writes arriving text frames as lines; ``--mode binary`` (the default for
``--tcp``, ``--device`` and ``--ts``) sends bytes as they come as binary
frames and writes arriving frames as they are.  What the source produces
while the relay is not connected is dropped and counted.
"""

import argparse
import os
import sys

from twisted.internet import protocol
from twisted.logger import Logger

from . import CliError
from ._relay import add_token_arguments, env, run_reactor, start_logging, token_source

log = Logger(namespace="relayrouter.host")

ENV = "RELAYROUTER_HOST"
TS_PACKET = 188
MAX_FRAME = 64 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--session", default=env(ENV, "SESSION"), metavar="URL",
                        help=f"access URL, e.g. https://relay.example.org/session/pend00 [env {ENV}_SESSION]")
    add_token_arguments(parser, ENV)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--command", metavar="CMD", help="a shell command: stdout out, frames to stdin")
    source.add_argument("--tcp", metavar="HOST:PORT", help="a local TCP port, both ways")
    source.add_argument("--websocket", metavar="URL", help="a local WebSocket server, both ways")
    source.add_argument("--device", metavar="PATH", help="a serial-like device file, both ways")
    source.add_argument("--ts", metavar="ENDPOINT", help="listen for ffmpeg's MPEG-TS: POST /ts/{feed}")
    parser.add_argument("--mode", choices=("text", "binary"), default=None,
                        help="text: a frame per line; binary: bytes as they come "
                             "(default: text for --command and --websocket, else binary)")
    parser.add_argument("--restart-delay", type=float, default=1.0, metavar="SECONDS",
                        help="wait before restarting an exited --command (default 1)")
    parser.add_argument("--verbose", action="store_true", help="debug logging on stderr")


def run(args: argparse.Namespace) -> int:
    if not args.session:
        raise CliError(f"--session URL is required (or {ENV}_SESSION)")
    token = token_source(args)
    mode = args.mode or ("text" if args.command or args.websocket else "binary")
    if args.ts and mode == "text":
        raise CliError("--ts carries binary MPEG-TS: --mode text does not apply")
    if args.tcp:
        _host_port(args.tcp)
    start_logging(args.verbose)
    return run_reactor(lambda done: Host(args, token, mode == "text").start())


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise CliError(f"--tcp {text}: expected HOST:PORT")
    return host, int(port)


class Host:
    """The relay connection and one local source, joined."""

    def __init__(self, args, token, text: bool) -> None:
        from twisted.internet import reactor

        from ..relay.client import Reconnecting

        self.reactor = reactor
        self.args = args
        self.text = text
        self.dropped = 0  # local data produced while the relay was not connected
        self.relay = Reconnecting(reactor, args.session, token, self._from_relay)
        self.local = None  # has write(bytes)

    def start(self) -> None:
        args = self.args
        if args.command:
            self.local = CommandSource(self)
        elif args.tcp:
            self.local = TcpSource(self, *_host_port(args.tcp))
        elif args.websocket:
            self.local = WebSocketSource(self, args.websocket)
        elif args.device:
            self.local = DeviceSource(self, args.device)
        else:
            self.local = TsListener(self, args.ts)
        self.local.start()
        self.relay.start()

    # local -> relay
    def out(self, data: bytes) -> None:
        """Bytes from the local source: lines or chunks become frames."""
        if not self.relay.send(data, not self.text):
            self.dropped += 1

    # relay -> local
    def _from_relay(self, payload: bytes, is_binary: bool) -> None:
        if self.local is None:
            return
        if self.text and not payload.endswith(b"\n"):
            payload += b"\n"
        self.local.write(payload)


class _Lines:
    """Splits a byte stream into lines (text mode) or passes chunks (binary)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        if not self.host.text:
            for start in range(0, len(data), MAX_FRAME):
                self.host.out(data[start:start + MAX_FRAME])
            return
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.host.out(line.rstrip(b"\r"))


class CommandSource(protocol.ProcessProtocol):
    def __init__(self, host: Host) -> None:
        self.host = host
        self.lines = _Lines(host)
        self.running = False

    def start(self) -> None:
        self.lines = _Lines(self.host)
        self.running = True
        self.host.reactor.spawnProcess(self, "/bin/sh", ["/bin/sh", "-c", self.host.args.command],
                                       env=os.environ, childFDs={0: "w", 1: "r", 2: 2})

    def outReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        self.lines.feed(data)

    def write(self, data: bytes) -> None:
        if self.running and self.transport is not None:
            self.transport.write(data)

    def processEnded(self, reason) -> None:  # noqa: N802
        self.running = False
        log.info("Command exited ({why}); restarting in {delay}s", why=reason.getErrorMessage(),
                 delay=self.host.args.restart_delay)
        self.host.reactor.callLater(self.host.args.restart_delay, self.start)


class _TcpProtocol(protocol.Protocol):
    def connectionMade(self) -> None:  # noqa: N802
        self.factory.source.connected(self)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.factory.source.lines.feed(data)

    def connectionLost(self, reason) -> None:  # noqa: N802
        self.factory.source.lost(self)


class TcpSource:
    def __init__(self, host: Host, address: str, port: int) -> None:
        from relayrouter.client.backoff import Backoff

        self.host = host
        self.address, self.port = address, port
        self.lines = _Lines(host)
        self.proto = None
        self.backoff = Backoff(initial=0.2, maximum=10.0)

    def start(self) -> None:
        from twisted.internet import endpoints

        factory = protocol.Factory.forProtocol(_TcpProtocol)
        factory.source = self
        endpoint = endpoints.TCP4ClientEndpoint(self.host.reactor, self.address, self.port, timeout=10)
        endpoint.connect(factory).addErrback(self._failed)

    def connected(self, proto) -> None:
        self.proto = proto
        self.backoff.reset()
        log.info("Connected to {address}:{port}", address=self.address, port=self.port)

    def lost(self, proto) -> None:
        self.proto = None
        self.lines = _Lines(self.host)
        self._again()

    def _failed(self, failure) -> None:
        log.info("Cannot connect to {address}:{port}: {error}", address=self.address, port=self.port,
                 error=failure.getErrorMessage())
        self._again()

    def _again(self) -> None:
        self.host.reactor.callLater(self.backoff.next(), self.start)

    def write(self, data: bytes) -> None:
        if self.proto is not None:
            self.proto.transport.write(data)


class WebSocketSource:
    """A local WebSocket server (the seed's host forwards those too)."""

    def __init__(self, host: Host, url: str) -> None:
        from relayrouter.client.backoff import Backoff

        self.host = host
        self.url = url
        self.proto = None
        self.backoff = Backoff(initial=0.2, maximum=10.0)

    def start(self) -> None:
        from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS

        source = self

        class Local(WebSocketClientProtocol):
            def onOpen(self):  # noqa: N802
                source.proto = self
                source.backoff.reset()
                log.info("Connected to {url}", url=source.url)

            def onMessage(self, payload, isBinary):  # noqa: N802,N803
                source.host.relay.send(payload, isBinary) or source._count_drop()

            def onClose(self, wasClean, code, reason):  # noqa: N802,N803
                source.proto = None
                source.host.reactor.callLater(source.backoff.next(), source.start)

        factory = WebSocketClientFactory(self.url)
        factory.protocol = Local
        connectWS(factory)

    def _count_drop(self) -> None:
        self.host.dropped += 1

    def write(self, data: bytes) -> None:
        if self.proto is not None:
            text = self.host.text
            self.proto.sendMessage(data.rstrip(b"\n") if text else data, isBinary=not text)


class DeviceSource:
    """A serial-like device file read and written without blocking."""

    def __init__(self, host: Host, path: str) -> None:
        self.host = host
        self.path = path
        self.fd = None
        self.lines = _Lines(host)

    def start(self) -> None:
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as e:
            print(f"relayrouter host: --device {self.path}: {e.strerror}", file=sys.stderr)
            self.host.reactor.callLater(1.0, self.start)
            return
        log.info("Connected to {path}", path=self.path)
        self.host.reactor.addReader(self)

    # IReadDescriptor
    def fileno(self) -> int:
        return self.fd if self.fd is not None else -1

    def doRead(self):  # noqa: N802
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return None
        except OSError as e:
            return e
        if data:
            self.lines.feed(data)
        return None

    def connectionLost(self, reason) -> None:  # noqa: N802
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.host.reactor.callLater(1.0, self.start)

    def logPrefix(self) -> str:  # noqa: N802
        return f"device {self.path}"

    def write(self, data: bytes) -> None:
        if self.fd is None:
            return
        try:
            os.write(self.fd, data)
        except BlockingIOError:
            self.host.dropped += 1


class _TsRequest(protocol.Protocol):
    """One ``POST /ts/{feed}``: HTTP/1.1 request headers, then a (chunked) body streamed out."""

    def connectionMade(self) -> None:  # noqa: N802
        self.head = b""
        self.body = None  # set once the headers are in: a _Body
        self.packets = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.body is None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                if len(self.head) > 16384:
                    self.transport.loseConnection()
                return
            head, _, data = self.head.partition(b"\r\n\r\n")
            if not self._accept(head):
                return
        for chunk in self.body.feed(data):
            self._packets(chunk)

    def _accept(self, head: bytes) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        path = rest.split(" ")[0]
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if method != "POST" or not path.startswith("/ts/") or len(path) <= 4:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.loseConnection()
            return False
        if headers.get("expect", "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.body = _Body(headers.get("transfer-encoding", "").lower() == "chunked")
        log.info("Video feed {feed} started", feed=path[4:])
        return True

    def _packets(self, chunk: bytes) -> None:
        data = self.packets + chunk
        whole = len(data) - len(data) % TS_PACKET
        for start in range(0, whole, MAX_FRAME - MAX_FRAME % TS_PACKET):
            self.factory.host.out(data[start:min(whole, start + MAX_FRAME - MAX_FRAME % TS_PACKET)])
        self.packets = data[whole:]

    def connectionLost(self, reason) -> None:  # noqa: N802
        if self.body is not None:
            log.info("Video feed ended")


class _Body:
    """An HTTP request body: plain, or chunked transfer encoding decoded as it arrives."""

    def __init__(self, chunked: bool) -> None:
        self.chunked = chunked
        self.buffer = b""
        self.remaining = 0  # bytes of the current chunk still to come (chunked)
        self.trailer = False  # a chunk's CRLF still to skip

    def feed(self, data: bytes):
        if not self.chunked:
            if data:
                yield data
            return
        self.buffer += data
        while self.buffer:
            if self.remaining:
                piece, self.buffer = self.buffer[:self.remaining], self.buffer[self.remaining:]
                self.remaining -= len(piece)
                self.trailer = self.remaining == 0
                yield piece
                continue
            if self.trailer:
                if len(self.buffer) < 2:
                    return
                self.buffer, self.trailer = self.buffer[2:], False
                continue
            line, sep, rest = self.buffer.partition(b"\r\n")
            if not sep:
                return
            self.remaining = int(line.split(b";")[0].strip() or b"0", 16)
            self.buffer = rest
            if self.remaining == 0:
                self.buffer = b""
                return


class TsListener:
    def __init__(self, host: Host, endpoint: str) -> None:
        self.host = host
        self.endpoint = endpoint

    def start(self) -> None:
        from twisted.internet import endpoints

        factory = protocol.Factory.forProtocol(_TsRequest)
        factory.host = self.host
        endpoints.serverFromString(self.host.reactor, self.endpoint).listen(factory).addCallbacks(
            lambda port: log.info("Video ingest listening on {address} (POST /ts/{{feed}})",
                                  address=port.getHost()),
            lambda failure: (print(f"relayrouter host: --ts {self.endpoint}: {failure.getErrorMessage()}",
                                   file=sys.stderr), self.host.reactor.stop()))

    def write(self, data: bytes) -> None:
        """Frames arriving for a video source are not for it."""
