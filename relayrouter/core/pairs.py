"""Pairs: a gateway and its manager, one of each, meeting by their identities.

Theory of operation
-------------------
A realm with ``[realms.pairing]`` configured reads every joining session's
authid with one regex (by default ``<class>:<subscriber>:<box>``, the CN a
``relayrouter pki client --pair`` certificate carries).  A session whose authid
matches is a *peer*: it belongs to the pair ``(subscriber, box)`` as its
``gateway`` or its ``manager``.  Its identity comes from the credential the
router verified (a client certificate through the TLS identity rules, or a
JWT), never from anything the peer says: a peer can only ever join its own
pair.  Sessions whose authid does not match (services, admins) are not peers.

A pair holds at most one peer of each class.  A second peer of a class
already present is refused at admission (``on_conflict = "refuse"``) or
replaces the present one (``"replace"``: a peer that reconnects from the same
credential while its old connection has not been noticed dead yet), which is
then closed with ``relayrouter.close.replaced``.

Everything under ``relayrouter.pair.<subscriber>.<box>.`` belongs to the pair:
only its two peers may publish, subscribe, call or register there, whatever
the realm's roles say, and a pattern that could reach into a pair other than
the session's own is refused.  Within its pair a peer registers only its own
class's REST procedure (``….rest.<class>``), and nobody publishes on
``….presence``: the router does, when a peer joins or leaves.

The pair table, ``peers_by_pair[(subscriber, box)][class]``, is the only
state; it changes at ``joined`` and ``left``, which the realm calls.
"""

import re
from dataclasses import dataclass, field

from . import errors
from .procedures import ProcedureError

PREFIX = "relayrouter.pair."
CLASSES = ("gateway", "manager")
OCCUPIED = "relayrouter.error.pair_occupied"
PEER_ABSENT = "relayrouter.error.peer_absent"
CLOSE_REPLACED = "relayrouter.close.replaced"
CLOSE_KICKED = "relayrouter.close.kicked"
DEFAULT_PEER = r"(?P<class>gateway|manager):(?P<subscriber>[^.:#\s]+):(?P<box>[^.:#\s]+)"
ON_CONFLICT = ("refuse", "replace")
PEER = "relayrouter.pairs.peer"
LIST = "relayrouter.pairs.list"
KICK = "relayrouter.pairs.kick"

# Returned by PairTable.authorize when the URI is not a pair's: the realm's own rules decide.
NOT_MINE = object()


@dataclass(frozen=True, slots=True)
class PairPolicy:
    """``[realms.pairing]``: who is a peer, and what a second peer of a class gets."""

    peer: str = DEFAULT_PEER  # regex, full match over the authid, groups class/subscriber/box
    on_conflict: str = "refuse"
    _pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            pattern = re.compile(self.peer)
        except re.error as e:
            raise ValueError(f"peer: '{self.peer}' is not a valid regex: {e}") from None
        missing = {"class", "subscriber", "box"} - set(pattern.groupindex)
        if missing:
            raise ValueError(f"peer: the regex must name the groups class, subscriber and box "
                             f"(missing: {', '.join(sorted(missing))})")
        if self.on_conflict not in ON_CONFLICT:
            raise ValueError(f"on_conflict: '{self.on_conflict}' is not one of {', '.join(ON_CONFLICT)}")
        object.__setattr__(self, "_pattern", pattern)

    def identify(self, authid: str | None) -> "PeerIdentity | None":
        found = self._pattern.fullmatch(authid or "")
        if found is None:
            return None
        return PeerIdentity(found["subscriber"], found["box"], found["class"])


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    subscriber: str
    box: str
    peer_class: str

    @property
    def pair(self) -> tuple[str, str]:
        return (self.subscriber, self.box)

    @property
    def other_class(self) -> str:
        return CLASSES[1 - CLASSES.index(self.peer_class)]

    @property
    def prefix(self) -> str:
        return pair_prefix(self.subscriber, self.box)

    def problem(self) -> str | None:
        """Why this identity cannot be a peer, or None."""
        if self.peer_class not in CLASSES:
            return f"peer class '{self.peer_class}' is neither gateway nor manager"
        for name, value in (("subscriber", self.subscriber), ("box", self.box)):
            if not value or any(c in value for c in ".#") or value != value.strip() or " " in value:
                return f"{name} id '{value}' cannot be part of a URI"
        return None


def pair_prefix(subscriber: str, box: str) -> str:
    return f"{PREFIX}{subscriber}.{box}."


def rest_procedure(subscriber: str, box: str, peer_class: str) -> str:
    """The procedure through which a peer of ``peer_class`` answers REST requests."""
    return f"{pair_prefix(subscriber, box)}rest.{peer_class}"


def event_topic(subscriber: str, box: str, name: str) -> str:
    return f"{pair_prefix(subscriber, box)}event.{name}"


def presence_topic(subscriber: str, box: str) -> str:
    return f"{pair_prefix(subscriber, box)}presence"


@dataclass(slots=True)
class Presence:
    session: object
    since: float

    def details(self) -> dict:
        session = self.session
        return {"session": session.session_id, "authid": session.authid, "since": self.since}


class PairTable:
    """The pairs of one realm, and the rules that keep them one-to-one and private."""

    def __init__(self, realm, policy: PairPolicy) -> None:
        self.realm = realm
        self.policy = policy
        self.peers_by_pair: dict[tuple[str, str], dict[str, Presence]] = {}
        self.identity_by_session: dict[int, PeerIdentity] = {}

    # ------------------------------------------------------------ admission

    def admission(self, session, accept) -> tuple[str, str] | None:
        identity = self.policy.identify(accept.authid)
        if identity is None:
            return None
        problem = identity.problem()
        if problem is not None:
            return OCCUPIED, f"authid '{accept.authid}' cannot join a pair: {problem}"
        present = self.peers_by_pair.get(identity.pair, {}).get(identity.peer_class)
        if present is not None and self.policy.on_conflict == "refuse":
            self.realm.counters["pair.refused_occupied"] += 1
            return OCCUPIED, (f"pair {identity.subscriber}/{identity.box} already has its "
                              f"{identity.peer_class} (session {present.session.session_id}, "
                              f"connected since {present.since:.0f}); a pair holds one gateway "
                              "and one manager")
        return None

    def joined(self, session) -> None:
        identity = self.policy.identify(session.authid)
        if identity is None:
            return
        peers = self.peers_by_pair.setdefault(identity.pair, {})
        stale = peers.get(identity.peer_class)
        peers[identity.peer_class] = Presence(session, self.realm.now())
        self.identity_by_session[session.session_id] = identity
        if stale is not None:
            self.realm.counters["pair.replaced"] += 1
            self.identity_by_session.pop(stale.session.session_id, None)
            stale.session.goodbye(CLOSE_REPLACED, f"another {identity.peer_class} of pair "
                                  f"{identity.subscriber}/{identity.box} joined with the same identity")
        self._announce(identity, "join", session)

    def left(self, session) -> None:
        identity = self.identity_by_session.pop(session.session_id, None)
        if identity is None:
            return
        peers = self.peers_by_pair.get(identity.pair, {})
        present = peers.get(identity.peer_class)
        if present is not None and present.session is session:
            del peers[identity.peer_class]
            if not peers:
                del self.peers_by_pair[identity.pair]
            self._announce(identity, "leave", session)

    def _announce(self, identity: PeerIdentity, event: str, session) -> None:
        topic = presence_topic(identity.subscriber, identity.box)
        matches = self.realm.broker.subscriptions.match(topic)
        if matches:
            self.realm.broker.publish_meta(matches, topic, [{
                "event": event, "peer_class": identity.peer_class, "peer_id": session.authid,
                "session": session.session_id}])

    # --------------------------------------------------------- what peers see

    def identity_of(self, session) -> PeerIdentity | None:
        return self.identity_by_session.get(session.session_id)

    def peer_of(self, session) -> dict:
        """What ``session`` may know of the other peer of its pair."""
        identity = self.identity_of(session)
        if identity is None:
            raise LookupError("this session is not a peer of any pair")
        other = self.peers_by_pair.get(identity.pair, {}).get(identity.other_class)
        answer = {"subscriber": identity.subscriber, "box": identity.box,
                  "peer_class": identity.other_class, "present": other is not None}
        if other is not None:
            answer.update(other.details())
        return answer

    def absent_callee(self, uri: str) -> tuple[str, str] | None:
        """When a call finds no callee: the pair's clear error if the callee is a peer away."""
        parts = _pair_parts(uri)
        if parts is None or len(parts) != 4 or parts[2] != "rest" or parts[3] not in CLASSES:
            return None
        subscriber, box, _, peer_class = parts
        return PEER_ABSENT, (f"the {peer_class} of pair {subscriber}/{box} is not connected; "
                             "try again when it is (its presence topic says when)")

    def listing(self) -> list[dict]:
        return [{"subscriber": s, "box": b,
                 **{cls: (peers[cls].details() if cls in peers else None) for cls in CLASSES}}
                for (s, b), peers in sorted(self.peers_by_pair.items())]

    def kick(self, subscriber: str, box: str, peer_class: str, reason: str | None) -> bool:
        present = self.peers_by_pair.get((subscriber, box), {}).get(peer_class)
        if present is None:
            return False
        present.session.goodbye(CLOSE_KICKED, reason or f"removed from pair {subscriber}/{box} "
                                "by an administrator")
        return True

    # ------------------------------------------------------ router procedures

    def add_procedures(self, registry, admin, readers=None) -> None:
        """relayrouter.pairs.peer for peers; .list for ``admin`` (an AdminPolicy) and
        ``readers`` (the same interface: the web console's users), .kick for ``admin``."""
        registry.add(PEER, self._peer)
        registry.add(LIST, self._admin_only(_Either(admin, readers), lambda call: self.listing()))
        registry.add(KICK, self._admin_only(admin, self._kick))

    def _peer(self, call) -> dict:
        try:
            return self.peer_of(call.session)
        except LookupError as e:
            raise ProcedureError(errors.NOT_AUTHORIZED, f"{e} (authid '{call.session.authid}')") from None

    def _kick(self, call) -> dict:
        fields = dict(call.kwargs)
        for name, value in zip(("subscriber", "box", "peer_class"), call.args):
            fields.setdefault(name, value)
        subscriber, box, peer_class = (fields.get(k) for k in ("subscriber", "box", "peer_class"))
        if not all(isinstance(v, str) and v for v in (subscriber, box)) or peer_class not in CLASSES:
            raise ProcedureError(errors.INVALID_ARGUMENT, "give subscriber and box as strings and "
                                 "peer_class as 'gateway' or 'manager'")
        reason = fields.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise ProcedureError(errors.INVALID_ARGUMENT, "reason must be a string")
        return {"kicked": self.kick(subscriber, box, peer_class, reason)}

    @staticmethod
    def _admin_only(admin, fn):
        def handle(call):
            session = call.session
            if not admin.admits(session.authrole, session.permissions):
                raise ProcedureError(errors.NOT_AUTHORIZED, f"session '{session.authid}' with role "
                                     f"'{session.authrole}' may not administer pairs")
            return fn(call)
        return handle

    # ---------------------------------------------------------- authorization

    def authorize(self, session, action: str, uri: str, match: str = "exact"):
        """None (allowed), a refusal message, or NOT_MINE when the realm's rules decide."""
        identity = self.identity_of(session)
        if match == "exact":
            if uri == PEER and identity is not None:
                return None  # a peer may always ask after its own pair
            parts = _pair_parts(uri)
            if parts is None:
                return NOT_MINE
            return _exact_rule(identity, action, parts, uri)
        if not _may_reach_pairs(uri, match):
            return NOT_MINE
        if identity is not None and _within(uri, match, identity.prefix):
            return _pattern_rule(action, match)
        return (f"'{uri}' ({match}) could reach pairs under '{PREFIX}': only a pair's own two "
                "peers may use a pair's URIs")


def _pair_parts(uri: str) -> list[str] | None:
    """``[subscriber, box, rest...]`` for a URI under the pair prefix, else None."""
    if not uri.startswith(PREFIX):
        return None
    parts = uri[len(PREFIX):].split(".")
    return parts if len(parts) >= 3 else []


def _exact_rule(identity: PeerIdentity | None, action: str, parts: list[str], uri: str) -> str | None:
    if not parts or identity is None or (parts[0], parts[1]) != identity.pair:
        return f"'{uri}' belongs to a pair this session is not a peer of"
    kind = parts[2]
    if kind == "presence" and action == "publish":
        return f"'{uri}' is published by the router when a peer joins or leaves"
    if kind == "rest" and action == "register" and parts[3:] != [identity.peer_class]:
        return (f"'{uri}' is not this peer's REST procedure: a {identity.peer_class} registers "
                f"'{rest_procedure(identity.subscriber, identity.box, identity.peer_class)}'")
    return None


def _pattern_rule(action: str, match: str) -> str | None:
    if action == "subscribe":
        return None
    return f"pattern-based {action} is not allowed on a pair's URIs: use the exact URI"


def _may_reach_pairs(pattern: str, match: str) -> bool:
    """Whether a prefix or wildcard pattern can match any URI under PREFIX."""
    if match == "prefix":
        return pattern.startswith(PREFIX) or PREFIX.startswith(pattern)
    parts = pattern.split(".")
    # Pair URIs have at least five components: relayrouter.pair.<s>.<b>.<kind>
    return len(parts) >= 5 and parts[0] in ("", "relayrouter") and parts[1] in ("", "pair")


def _within(pattern: str, match: str, prefix: str) -> bool:
    """Whether every URI the pattern matches lies under ``prefix`` (a pair's own)."""
    if match == "prefix":
        return pattern.startswith(prefix)
    wanted = prefix.rstrip(".").split(".")
    return pattern.split(".")[:len(wanted)] == wanted


class _Either:
    """Admits whom either policy admits (the second may be None)."""

    def __init__(self, first, second) -> None:
        self.first = first
        self.second = second

    def admits(self, authrole, claims) -> bool:
        return self.first.admits(authrole, claims) or (
            self.second is not None and self.second.admits(authrole, claims))
