"""The device-post lane: HTTP/1.1 keep-alive POSTs of device data answered
in front of twisted.web, every other request handed to twisted.web unchanged.

Theory of operation
-------------------
twisted.web spends about half of the agent's CPU on a device post (header
lines parsed one at a time, a Request object, resource traversal, the
response's headers).  Each connection therefore starts in this lane, which
reads one request at a time and *takes* it only when it is exactly the
plain case:

- the request line is ``POST <an ingest path> HTTP/1.1``, the path without a
  query (``INGEST_PATHS``);
- the head is CRLF-delimited, at most ``HEAD_LIMIT`` bytes and ``MAX_HEADERS``
  lines, each ``name: value`` without folding, with one ``Host``, one
  ``Content-Length`` (digits, at most the body limit), no
  ``Transfer-Encoding``, ``Expect`` or ``Upgrade``, and ``Connection``
  absent, ``keep-alive`` or ``close`` (answered, then the connection closed);
- and the agent accepts it: the device's credentials are good, the body is
  JSON within the bounded reader's depth, it passes dojot's schema and it
  normalizes (``take`` returns the Deferred of its commit).

A taken request is answered ``204`` once its messages are stored (as the
route does), then the next one is read; requests pipelined behind it wait
in the buffer and are answered in order.  Anything else - another route or
method, HTTP/1.0, a chunked body, ``Expect: 100-continue``, a malformed or
oversized head, a refusal of any kind - is handed to twisted.web with every
byte the lane has read, and from then on the connection is twisted.web's:
its status codes, error bodies, limits and timeouts are what the client
gets, exactly as without the lane.  Deciding costs nothing a refusal would
see: ``take`` counts nothing until it accepts (twisted.web counts the
refusal when it answers it).

Timeouts: an idle connection is closed after the site's ``timeOut`` (60 s,
twisted.web's); a request that has begun must be whole within the same
time of its first byte, or it is answered ``408`` and the connection
closed (a byte now and then does not keep it open, as it would an idle
timer).  The deadline moves with every request; one timer per connection
follows it lazily (it is rescheduled when it fires early, not cancelled
and made anew twice a request).
"""

import json
from dataclasses import dataclass

from twisted.internet.interfaces import IProtocolNegotiationFactory, ITCPTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer
from twisted.python.failure import Failure
from twisted.web import http

from connectors.common.http import SLUGS

log = Logger()

HEAD_LIMIT = http.HTTPChannel.totalHeadersSize  # twisted.web's: 16 KiB of header lines
MAX_HEADERS = http.HTTPChannel.maxHeaders  # 500
INGEST_ROUTES = {  # path -> (create-many, unsecure), as http_api's routes match them
    f"/http-agent/v1{unsecure}/incoming-messages{many}{slash}".encode(): (bool(many), bool(unsecure))
    for unsecure in ("", "/unsecure") for many in ("", "/create-many") for slash in ("", "/")}
REFUSED_HEADERS = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
SINGLE_HEADERS = frozenset({b"host", b"content-length", b"authorization", b"connection"})


@dataclass(frozen=True, slots=True)
class Head:
    """A request head the lane may take."""

    length: int  # of the body
    authorization: str
    many: bool  # /create-many
    unsecure: bool  # /unsecure/
    close: bool  # Connection: close


def parse_head(block: bytes, max_body: int) -> Head | None:
    """The head of a request the lane may take (``block``: request line and
    header lines, without the blank line), or None: twisted.web answers it."""
    lines = block.split(b"\r\n")
    if block.count(b"\n") != len(lines) - 1 or block.count(b"\r") != len(lines) - 1:
        return None  # a bare CR or LF
    if len(lines) - 1 > MAX_HEADERS:
        return None
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"POST" or parts[2] != b"HTTP/1.1" or parts[1] not in INGEST_ROUTES:
        return None
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip(b" \t"):
            return None  # no colon, an empty name, folding or space before the colon
        name = name.lower()
        if name in REFUSED_HEADERS or (name in SINGLE_HEADERS and name in headers):
            return None
        headers[name] = value.strip(b" \t")
    length = headers.get(b"content-length")
    if b"host" not in headers or length is None or not length.isdigit() or len(length) > 9:
        return None
    connection = headers.get(b"connection", b"keep-alive").lower()
    if int(length) > max_body or connection not in (b"keep-alive", b"close"):
        return None
    many, unsecure = INGEST_ROUTES[parts[1]]
    return Head(int(length), headers.get(b"authorization", b"").decode("latin-1"), many, unsecure,
                connection == b"close")


@implementer(IProtocolNegotiationFactory)
class LaneFactory(Factory):
    """Wraps a twisted.web ``site``: ``take(head, body, transport)`` returns
    the Deferred of a request the agent accepts, or None.  Under TLS it
    offers the site's ALPN protocols, so the handshake is the site's own."""

    def __init__(self, site, take, max_body: int, counters) -> None:
        self.site = site
        self.take = take
        self.max_body = max_body
        self.counters = counters
        self._date = (0, b"")

    def buildProtocol(self, addr):  # noqa: N802
        return Lane(self, addr)

    def acceptableProtocols(self) -> list[bytes]:  # noqa: N802
        return self.site.acceptableProtocols()

    def startFactory(self) -> None:  # noqa: N802
        self.site.doStart()

    def stopFactory(self) -> None:  # noqa: N802
        self.site.doStop()

    def date(self) -> bytes:
        now = int(self.site.reactor.seconds())
        if self._date[0] != now:
            self._date = (now, http.datetimeToString(now))
        return self._date[1]


NO_CONTENT = b"HTTP/1.1 204 No Content\r\nDate: %s\r\n\r\n"
NO_CONTENT_CLOSE = b"HTTP/1.1 204 No Content\r\nDate: %s\r\nConnection: close\r\n\r\n"


def json_answer(status: bytes, body: dict, close: bool = False) -> bytes:
    """A whole JSON response, its body as the connectors' error helper writes it."""
    data = json.dumps(body, sort_keys=True).encode() + b"\n"
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
            + (b"Connection: close\r\n" if close else b"") + b"Content-Length: %d\r\n\r\n" % len(data) + data)


class Lane(Protocol):
    """One connection: read by the lane until it hands it to twisted.web (``channel``)."""

    def __init__(self, factory: LaneFactory, addr) -> None:
        self.factory = factory
        self.addr = addr
        self.buffer = b""
        self.channel = None  # twisted.web's protocol, once handed over
        self.waiting = False  # a taken request is being stored
        self.closing = False  # it asked for Connection: close
        self.paused = False
        self.timer = None
        self.deadline = None  # when the connection times out, unless something moves it; None: no timeout

    def connectionMade(self) -> None:  # noqa: N802
        if ITCPTransport.providedBy(self.transport):
            self.transport.setTcpNoDelay(True)  # as twisted.web does: on plain TCP only (not under TLS)
        self._arm()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.channel is not None:
            self.channel.dataReceived(data)
            return
        if not self.buffer and not self.waiting:
            self._arm()  # a request's time runs from its first byte
        self.buffer += data
        if self.waiting:
            if not self.paused and len(self.buffer) > HEAD_LIMIT + self.factory.max_body:
                self.paused = True  # pipelined requests wait in the kernel, not here
                self.transport.pauseProducing()
            return
        self._read()

    def connectionLost(self, reason=None) -> None:  # noqa: N802
        self._stop_timer()
        if self.channel is not None:
            self.channel.connectionLost(reason)
        self.buffer = b""

    # ------------------------------------------------------------ reading

    def _read(self) -> None:
        """Take the buffer's first request, or wait for more of it, or hand over."""
        if not self.buffer:
            return
        end = self.buffer.find(b"\r\n\r\n", 0, HEAD_LIMIT + 4)
        if end < 0:
            if len(self.buffer) > HEAD_LIMIT or b"\n\n" in self.buffer:
                self._hand_over()
            return
        head = parse_head(self.buffer[:end], self.factory.max_body)
        if head is None:
            self._hand_over()
            return
        whole = end + 4 + head.length
        if len(self.buffer) < whole:
            return
        try:
            d = self.factory.take(head, self.buffer[end + 4:whole], self.transport)
        except Exception:  # noqa: BLE001 - whatever it is, twisted.web's route answers it (and logs it)
            d = None
        if d is None:
            self._hand_over()
            return
        self.buffer = self.buffer[whole:]
        self.closing = head.close
        self.waiting = True
        self._disarm()
        self.factory.counters["http_lane_taken"] += 1
        d.addCallbacks(self._stored, self._not_stored)

    def _stored(self, _) -> None:
        self._answered((NO_CONTENT_CLOSE if self.closing else NO_CONTENT) % self.factory.date())

    def _not_stored(self, failure: Failure) -> None:
        log.failure("unexpected error answering POST (device data)", failure)
        self._answered(json_answer(b"500 Internal Server Error", {
            "error": SLUGS[500], "message": "internal error; the connector's log has the details"}, self.closing))

    def _answered(self, response: bytes) -> None:
        self.waiting = False
        if self.transport is None or not self.transport.connected:
            return
        self.transport.write(response)
        if self.closing:
            self.buffer = b""  # what follows Connection: close is not read
            self.transport.loseConnection()
            return
        if self.paused:
            self.paused = False
            self.transport.resumeProducing()
        self._arm()
        self._read()

    def _hand_over(self) -> None:
        """From now on the connection is twisted.web's, starting with what was read."""
        self._stop_timer()
        self.factory.counters["http_lane_handed_over"] += 1
        self.channel = self.factory.site.buildProtocol(self.addr)
        self.channel.makeConnection(self.transport)
        data, self.buffer = self.buffer, b""
        if data:
            self.channel.dataReceived(data)

    # ------------------------------------------------------------ timeout

    def _arm(self) -> None:
        reactor = self.factory.site.reactor
        self.deadline = reactor.seconds() + self.factory.site.timeOut
        if self.timer is None:
            self.timer = reactor.callLater(self.factory.site.timeOut, self._timer_fired)

    def _disarm(self) -> None:
        self.deadline = None

    def _stop_timer(self) -> None:
        self.deadline = None
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def _timer_fired(self) -> None:
        self.timer = None
        if self.deadline is None:
            return
        left = self.deadline - self.factory.site.reactor.seconds()
        if left > 0:
            self.timer = self.factory.site.reactor.callLater(left, self._timer_fired)
            return
        self._timed_out()

    def _timed_out(self) -> None:
        self.deadline = None
        if self.buffer:
            seconds = self.factory.site.timeOut
            self.transport.write(json_answer(b"408 Request Timeout", {
                "error": "request_timeout", "message": f"the request was not whole within {seconds} s"}, close=True))
            self.factory.counters["http_lane_timed_out"] += 1
        self.transport.loseConnection()
