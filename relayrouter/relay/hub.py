"""The :class:`Relay`: access codes, raw connections, booking ids and stats of one router.

Built by the router service when the configuration has a ``[relay]``
table.  It owns the one-time codes (a :class:`OneTimeTickets` vault: only a
SHA-256 of each code is kept, single use, voided when its booking id is
denied), the raw connections, the allow list of recently seen booking ids,
and a monitor session that counts what is published on relay topics and
publishes the ``relayrouter.stats`` reports.
"""

import json
import os
import re
from dataclasses import dataclass, replace
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.wamp import message as m
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, task
from twisted.logger import Logger

from ..auth.onetime import Grant, OneTimeTickets
from ..core import errors
from ..httpinput import BadInput, json_value
from ..core.auth import Accept, Deny
from ..core.peer import TransportInfo
from ..core.revocation import DenyListError
from ..core.procedures import ProcedureError
from ..transport import http_doc
from ..transport.tickets import HttpRefusal, _header
from . import frames
from .. import proxies
from .access import BidsResource, PrefixResource, StatusResource, _scopes
from .config import RelayConfig
from .raw import RawRelayFactory
from .stats import Direction, iso, iso_seconds
from .scope import RelayScope
from .tokens import BID, BOOKING_ID, RelayTokenChecker

log = Logger(namespace="relayrouter.relay")

STATS_TOPIC = "relayrouter.stats"
STATS_GET = "relayrouter.stats.get"
MONITOR_AUTHID = "relayrouter-relay-monitor"
MIN_PUBLISH_INTERVAL = 1.0  # on-request stats publications, at most one per second


@dataclass(frozen=True, slots=True)
class RawGrant:
    """What a consumed code lets one raw connection do."""

    prefix: str
    topic: str
    wamp_topic: str
    accept: Accept
    scopes: tuple
    booking_id: str | None

    @property
    def can_read(self) -> bool:
        return "read" in self.scopes

    @property
    def can_write(self) -> bool:
        return "write" in self.scopes


class Relay:
    def __init__(self, config: RelayConfig, router, security, limits, clock) -> None:
        self.config = config
        self.router = router
        self.security = security
        self.clock = clock
        self.realm = router.realms[config.realm]
        self.realm.confinement = RelayScope(config, security.admin)  # a token's claims are its ceiling
        self.codes = OneTimeTickets(clock.seconds, lifetime=config.code_lifetime)
        security.guard.revocation_listeners.append(self._void_codes)
        self.peers: dict = {}  # RawPeer -> None, in connection order
        self.allowed_until: dict[str, float] = {}  # booking id -> exp, from access requests and /bids/allow
        self.published_by_topic: dict[str, Direction] = {}  # WAMP topic -> what was published there
        self.factory = RawRelayFactory(self, limits)
        self.ws_resource = WebSocketResource(self.factory)
        self._topic_pattern = _template_pattern(config.wamp_topic)
        self._frame_event = None
        self._frame = (b"", 0)
        self._last_publish = float("-inf")
        self._stats_loop = None
        self.monitor = _Monitor(self)
        self.realm.procedures.add(STATS_GET, self._stats_procedure)

    # ------------------------------------------------------------- service

    def start(self) -> None:
        self.monitor.join()
        if self.config.stats_interval > 0:
            self._stats_loop = task.LoopingCall(self.publish_stats)
            self._stats_loop.clock = self.clock
            self._stats_loop.start(self.config.stats_interval, now=False)

    def stop(self) -> None:
        if self._stats_loop is not None and self._stats_loop.running:
            self._stats_loop.stop()

    def http_resources(self) -> dict[bytes, Any]:
        resources = {p.encode(): PrefixResource(self, p) for p in self.config.prefixes}
        resources[b"bids"] = BidsResource(self)
        resources[b"status"] = StatusResource(self)
        resources[b"relay"] = static_pages()
        return resources

    # -------------------------------------------------------------- access

    def check_token(self, token: str):
        """Accept or Deny for a relay token, as a Deferred (a JWKS refetch may be needed)."""
        checker = self.checker()
        if checker is None:
            return defer.succeed(Deny(f"realm '{self.config.realm}' no longer takes JWTs"))
        return defer.maybeDeferred(checker.check, token)

    def checker(self) -> RelayTokenChecker | None:
        """The realm's current JWT keys and policy (a configuration reload may change them)."""
        jwt = self.security.jwt_by_realm.get(self.config.realm)
        if jwt is None:
            return None
        return RelayTokenChecker(jwt.keys, jwt.policy, self.clock.seconds, authrole=self.config.authrole)

    def mint_code(self, prefix: str, topic: str, accept: Accept) -> str:
        claims = accept.permissions
        if claims.get("topic") != topic:
            raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, f"the token is not for topic '{topic}'")
        if claims.get("prefix") != prefix:
            raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, f"the token is not for connection type '{prefix}'")
        scopes = _scopes(claims)
        if not ({"read", "write"} & set(scopes)):
            raise HttpRefusal(401, errors.AUTHENTICATION_FAILED, "the token has neither the read nor the write scope")
        bid = claims.get(BID)
        if not bid and not self.config.allow_no_booking_id:
            raise HttpRefusal(400, errors.INVALID_ARGUMENT, "the token has no booking id (booking_id or bid claim)")
        if self.security.denylist.match(accept.authid, claims) is not None:
            raise HttpRefusal(403, errors.NOT_AUTHORIZED, "the booking id has been denied (the session was cancelled)")
        wamp_topic = self.config.wamp_topic_for(prefix, topic)
        if "." in topic or _uri_problem(wamp_topic):  # one stream is one topic, never a subtree
            raise HttpRefusal(400, errors.INVALID_ARGUMENT, f"'{topic}' cannot be a topic (no '.', '#' or spaces)")
        if bid and accept.expires_at is not None:
            self.allowed_until[bid] = accept.expires_at
        return self.codes.mint(Grant(self.config.realm, accept.authid, accept.authrole, claims, accept.expires_at))

    def base_url(self, request) -> str:
        if self.config.public_url:
            return self.config.public_url
        scheme = "wss" if request.isSecure() else "ws"
        host = (_header(request, b"host") or "localhost").strip()
        return f"{scheme}://{host}"

    def grant_for_upgrade(self, path: str, code: str | None) -> RawGrant:
        """The grant for a raw WebSocket upgrade on ``path`` with ``code``, or ConnectionDeny."""
        parts = [p for p in path.split("/") if p]
        if len(parts) != 2 or parts[0] not in self.config.prefixes:
            raise ConnectionDeny(404, "use /{prefix}/{topic}?code=...")
        prefix, topic = parts
        grant = self.codes.consume(code, self.config.realm) if code else None
        if grant is None:
            raise ConnectionDeny(401, "the code is missing, used, expired or unknown: POST for a new one")
        claims = grant.claims
        if claims.get("topic") != topic or claims.get("prefix") != prefix:
            raise ConnectionDeny(403, "the code is for another topic")
        # Checked again: a booking may be cancelled between code and upgrade.
        if self.security.denylist.match(grant.authid, claims) is not None:
            raise ConnectionDeny(403, "the booking id has been denied")
        now = self.clock.seconds()
        nbf = claims.get("nbf")
        checker = self.checker()
        leeway = checker.policy.leeway if checker is not None else 0.0
        if isinstance(nbf, (int, float)) and now + leeway < nbf:
            raise ConnectionDeny(401, "the token is not valid yet")
        if grant.expires_at is not None and now >= grant.expires_at:
            raise ConnectionDeny(401, "the token has expired")
        accept = replace(grant.accept(), realm=self.config.realm, authprovider="relay")
        return RawGrant(prefix, topic, self.config.wamp_topic_for(prefix, topic), accept,
                        _scopes(claims), claims.get(BID))

    def _void_codes(self, entry) -> None:
        denylist = self.security.denylist
        self.codes.void(lambda grant: denylist.denies(entry, grant.authid, grant.claims))

    def remote_addr(self, transport) -> str:
        """The client's address for reports: the TCP peer (``host:port``), or, from a
        listed proxy (``relay.trusted_proxies``), the client its X-Forwarded-For names."""
        peer = _address(transport.peer)
        trusted = self.config.trusted_proxies
        if not trusted:
            return peer
        host = _host(transport.peer)
        client = proxies.client_host(host, transport.http_headers.get("x-forwarded-for"), trusted)
        return peer if client == host else client

    def client_peer(self, request, peer: str) -> str:
        """``tcp4:HOST:0`` of an HTTP request's client, the same way (for the failed-login limits)."""
        trusted = self.config.trusted_proxies
        host = _host(peer)
        client = proxies.client_host(host, _header(request, b"x-forwarded-for"), trusted) if trusted else host
        return peer if client == host else f"{'tcp6' if ':' in client else 'tcp4'}:{client}:0"

    # --------------------------------------------------------- connections

    def opened(self, peer) -> None:
        grant = peer.grant
        session = peer.session
        if not session.join_authenticated(grant.accept):
            return  # refused at admission: the ABORT closed the connection
        self.peers[peer] = None
        if grant.can_write:
            refusal = self.realm.authorize(session, "publish", grant.wamp_topic)
            if refusal is not None:
                session.abort(errors.NOT_AUTHORIZED, refusal)
                return
        if grant.can_read:
            session.receive_message(m.Subscribe(1, grant.wamp_topic))

    def closed(self, peer) -> None:
        self.peers.pop(peer, None)

    def frame_for(self, event) -> tuple[bytes, int]:
        """The WebSocket frame for an EVENT, made once for all raw readers of its subscription."""
        if event is not self._frame_event:
            payload, binary = frames.event_payload(event)
            self._frame = (frames.frame(payload, binary), len(payload))
            self._frame_event = event
        return self._frame

    def raw_frame_in(self, peer, value) -> None:
        """A frame from a raw writer, before it is published (the seed's stats command)."""
        if (peer.grant.topic == self.config.stats_topic and peer.grant.prefix == self.config.prefixes[0]
                and isinstance(value, str) and '"update"' in value):
            try:
                command = json_value(value, field="the stats command")
            except BadInput:
                return
            if isinstance(command, dict) and command.get("cmd") == "update":
                self.clock.callLater(0, self.publish_stats, True)

    # ------------------------------------------------------------ booking ids

    def denied_bids(self) -> list[str]:
        return sorted({e.value for e in self.security.denylist.entries() if e.claim in (BID, BOOKING_ID)})

    def allowed_bids(self) -> list[str]:
        now = self.clock.seconds()
        for bid in [b for b, exp in self.allowed_until.items() if exp <= now]:
            del self.allowed_until[bid]
        denied = set(self.denied_bids())
        return sorted(b for b in self.allowed_until if b not in denied)

    def deny_bid(self, bid: str, exp: int) -> None:
        guard = self.security.guard
        claims = [c for c in (BID, BOOKING_ID) if c in guard.denylist.claims]
        if not claims:
            raise HttpRefusal(403, errors.NOT_AUTHORIZED, "the deny list takes no booking ids (revocation.claims)")
        try:
            for claim in claims:
                guard.revoke(claim, bid, float(exp), "denied through /bids/deny")
        except DenyListError as e:
            raise HttpRefusal(400, errors.INVALID_ARGUMENT, f"booking expiry time (exp) {exp}: {e}") from None
        self.allowed_until.pop(bid, None)
        log.info("Booking id denied until {exp}; its connections closed", exp=exp)

    def allow_bid(self, bid: str, exp: int) -> None:
        for claim in (BID, BOOKING_ID):
            self.security.guard.unrevoke(claim, bid)
        if exp > self.clock.seconds():
            self.allowed_until[bid] = float(exp)

    # ------------------------------------------------------------------ stats

    def count_published(self, topic: str, size: int) -> None:
        if self._topic_pattern.match(topic) is None:
            return
        direction = self.published_by_topic.get(topic)
        if direction is None:
            direction = self.published_by_topic[topic] = Direction(self.clock.seconds())
        direction.count(size, self.clock.seconds())

    def connection_report(self, peer, now: float) -> dict:
        grant = peer.grant
        accept = grant.accept
        queued_messages, queued_bytes = peer.queued
        return {
            "session": peer.session.session_id,
            "topic": grant.topic,
            "prefix": grant.prefix,
            "wamp_topic": grant.wamp_topic,
            "booking_id": grant.booking_id,
            "can_read": grant.can_read,
            "can_write": grant.can_write,
            "scopes": list(grant.scopes),
            "connected_at": iso(peer.connected_at),
            "expires_at": iso(accept.expires_at),
            "remote_addr": self.remote_addr(peer.session.transport),
            "user_agent": peer.session.transport.http_headers.get("user-agent", ""),
            "rx": peer.rx.report(now),
            "tx": peer.tx.report(now),
            "dropped": peer.dropped,
            "refused": peer.refused,
            "queued": {"messages": queued_messages, "bytes": queued_bytes},
        }

    def topic_reports(self, now: float) -> list[dict]:
        readers: dict[str, list] = {}
        for peer in self.peers:
            readers.setdefault(peer.grant.wamp_topic, []).append(peer)
        topics = sorted(set(readers) | set(self.published_by_topic))
        reports = []
        for topic in topics:
            peers = readers.get(topic, [])
            published = self.published_by_topic.get(topic)
            subscription = self.realm.broker.subscriptions.get(topic, "exact")
            reports.append({
                "topic": topic,
                "raw_readers": sum(1 for p in peers if p.grant.can_read),
                "raw_writers": sum(1 for p in peers if p.grant.can_write),
                "subscribers": len(subscription.subscribers) if subscription is not None else 0,
                "published": (published or Direction(now)).report(now),
                "delivered_raw": {"messages": sum(p.tx.messages for p in peers),
                                  "bytes": sum(p.tx.bytes for p in peers)},
                "dropped": sum(p.dropped for p in peers),
            })
        return reports

    def report(self) -> dict:
        now = self.clock.seconds()
        return {"time": iso(now), "interval": self.config.stats_interval,
                "connections": [self.connection_report(p, now) for p in self.peers],
                "topics": self.topic_reports(now)}

    def status_reports(self) -> list[dict]:
        """``GET /status``: the seed's report fields, its stats block, and our counters."""
        now = self.clock.seconds()
        out = []
        for peer in self.peers:
            grant = peer.grant
            out.append({
                "topic": grant.topic,
                "can_read": grant.can_read,
                "can_write": grant.can_write,
                "connected_at": iso_seconds(peer.connected_at),
                "expires_at": iso_seconds(grant.accept.expires_at),
                "remote_addr": self.remote_addr(peer.session.transport),
                "scopes": list(grant.scopes),
                "user_agent": peer.session.transport.http_headers.get("user-agent", ""),
                "stats": {"tx": peer.tx.practable(now), "rx": peer.rx.practable(now)},
                "relayrouter": self.connection_report(peer, now),
            })
        return out

    def practable_stats(self) -> list[dict]:
        """The seed's stats-topic report list (its camelCase field names)."""
        now = self.clock.seconds()
        return [{"topic": p.grant.topic, "canRead": p.grant.can_read, "canWrite": p.grant.can_write,
                 "connected": iso_seconds(p.connected_at), "expiresAt": iso_seconds(p.grant.accept.expires_at),
                 "remoteAddr": self.remote_addr(p.session.transport), "scopes": list(p.grant.scopes),
                 "userAgent": p.session.transport.http_headers.get("user-agent", ""),
                 "stats": {"tx": p.tx.practable(now), "rx": p.rx.practable(now)}}
                for p in self.peers]

    def publish_stats(self, on_request: bool = False) -> bool:
        """Publish the reports on ``relayrouter.stats`` (and the seed's stats topic);
        on request at most once per second.  True when published."""
        now = self.clock.seconds()
        if on_request and now - self._last_publish < MIN_PUBLISH_INTERVAL:
            return False
        self._last_publish = now
        report = self.report()
        self.monitor.publish(STATS_TOPIC, report)
        if self.config.stats_topic:
            topic = self.config.wamp_topic_for(self.config.prefixes[0], self.config.stats_topic)
            self.monitor.publish(topic, json.dumps(self.practable_stats()))
        if not on_request:
            for peer in self.peers:
                peer.rx.mark(now)
                peer.tx.mark(now)
            for direction in self.published_by_topic.values():
                direction.mark(now)
        return True

    def _stats_procedure(self, call) -> dict:
        publish = call.kwargs.get("publish", False)
        if not isinstance(publish, bool):
            raise ProcedureError(errors.INVALID_ARGUMENT, "publish must be true or false")
        report = self.report()
        if publish:
            report["published"] = self.publish_stats(on_request=True)
        return report


class _Monitor:
    """The relay's own session: counts publications on relay topics, publishes stats.

    It subscribes to the prefix of ``relay.wamp_topic`` (``relay.``) when it
    joins (the realm's role rules let it: :class:`_TrustOne`); its
    publications are routed directly, as the router's own."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.session = None

    def join(self) -> None:
        relay = self.relay
        realm = relay.realm
        realm.authorizer = _TrustOne(realm.authorizer, self)
        self.session = relay.router.session(self, TransportInfo(kind="internal", peer="internal"))
        accept = Accept(MONITOR_AUTHID, "relayrouter", "internal", authprovider="relayrouter", realm=realm.name)
        if not self.session.join_authenticated(accept):
            log.error("The relay's monitor session could not join realm {realm}", realm=realm.name)
            return
        prefix = relay.config.wamp_topic.split("{", 1)[0]
        self.session.receive_message(m.Subscribe(1, prefix, match="prefix"))

    def publish(self, topic: str, value) -> None:
        # The router's own publication: routed like a testament, past the realm's
        # role rules (which a configuration reload may replace).
        if self.session is not None and self.session.realm is not None:
            self.session.realm.broker.publish_for(self.session, m.Publish(1, topic, args=[value]))

    # The core's Peer
    def send(self, message) -> None:
        if message.MESSAGE_TYPE == m.Event.MESSAGE_TYPE and message.topic is not None:
            self.relay.count_published(message.topic, frames.payload_size(message))
        elif message.MESSAGE_TYPE == m.Error.MESSAGE_TYPE:
            log.error("The relay's monitor was refused: {args}", args=message.args)

    def close(self) -> None:
        self.session = None


class _TrustOne:
    """The realm's authorizer, except that the relay monitor may do anything."""

    def __init__(self, inner, monitor: _Monitor) -> None:
        self.inner = inner
        self.monitor = monitor

    def authorize(self, session, action: str, uri: str, match: str = "exact") -> str | None:
        if session.peer is self.monitor:
            return None
        return self.inner.authorize(session, action, uri, match)

    def discloses(self, session, kind: str, uri: str):
        return self.inner.discloses(session, kind, uri)

    def forget(self, session) -> None:
        self.inner.forget(session)


STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")


_TYPES = {".html": b"text/html; charset=utf-8", ".js": b"text/javascript; charset=utf-8",
          ".txt": b"text/plain; charset=utf-8"}


def static_pages():
    """``/relay/``: the video page, its script and JSMpeg, read once at start; nothing else."""
    from twisted.web.resource import Resource

    from ..transport.http import JsonNotFound

    class Page(Resource):
        isLeaf = True

        def __init__(self, body: bytes, kind: bytes) -> None:
            super().__init__()
            self.body, self.kind = body, kind

        def render_GET(self, request):  # noqa: N802
            request.setHeader(b"content-type", self.kind)
            request.setHeader(b"x-content-type-options", b"nosniff")
            return self.body

    class Pages(Resource):
        def getChild(self, path: bytes, request):  # noqa: N802 - twisted.web's name
            return self.children.get(path, JsonNotFound("no such page"))

        def render(self, request):
            return JsonNotFound("no such page").render(request)

    pages = Pages()
    pages.openapi = http_doc.RELAY_PAGES
    for name in sorted(os.listdir(STATIC_DIR)):
        kind = _TYPES.get(os.path.splitext(name)[1])
        if kind is not None:
            with open(os.path.join(STATIC_DIR, name), "rb") as f:
                pages.putChild(name.encode(), Page(f.read(), kind))
    return pages


def _template_pattern(template: str):
    pattern = re.escape(template).replace(r"\{prefix\}", r"[^.#\s]+").replace(r"\{topic\}", r"[^.#\s]+")
    return re.compile(f"^{pattern}$")


def _uri_problem(uri: str) -> bool:
    from ..core.uri import uri_problem

    return uri_problem(uri) is not None


def _host(peer: str) -> str:
    """``tcp4:127.0.0.1:5000`` -> ``127.0.0.1``."""
    kind, _, rest = peer.partition(":")
    return rest.rsplit(":", 1)[0] if kind in ("tcp4", "tcp6") else peer


def _address(peer: str) -> str:
    """``tcp4:127.0.0.1:5000`` -> ``127.0.0.1:5000`` (the seed's remote_addr)."""
    kind, _, rest = peer.partition(":")
    return rest if kind in ("tcp4", "tcp6") else peer
