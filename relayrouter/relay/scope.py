"""What a relay token lets its session do, whatever the realm's roles say.

Theory of operation
-------------------
The relay realm's JWT key is the booking system's: every token it signs is a
relay token, and a session authenticated by one (over the raw WebSocket, or
over WAMP with the token as a ticket, as ``jwt``, or through a one-time
ticket it bought) may do what its claims say and nothing else:

* ``prefix`` one of ``relay.prefixes`` and ``topic``: with ``read``,
  SUBSCRIBE (exact) to that stream's WAMP topic; with ``write``, PUBLISH to it;
* ``prefix = "tunnel"`` and ``topic = NAME``: with ``host``, REGISTER the
  procedures under ``tunnel.NAME.``; with ``client``, CALL them;
* the relay's ``stats_scope``: CALL ``relayrouter.stats.get``, SUBSCRIBE
  (exact) to ``relayrouter.stats``;
* a token the deny list's admin policy admits: CALL ``relayrouter.denylist.*``.

This is a ceiling, not a grant: a realm with roles still decides within it
(a rule may take away what a token allows, never add to it).  Sessions
authenticated otherwise (static tickets, WAMP-CRA, cryptosign, TLS) are left
to the roles.  The decision is made once per session, from its claims, and
kept until the session leaves.
"""

from dataclasses import dataclass
from typing import Mapping

from ..core.matching import EXACT, PREFIX
from ..core.uri import uri_problem
from .access import _scopes
from .config import RelayConfig

# Authentication providers whose sessions hold a relay-realm JWT's claims.
TOKEN_PROVIDERS = frozenset({"jwt", "relay", "one-time-ticket"})
TUNNEL_PREFIX = "tunnel"
TUNNEL_HOST_SCOPE = "host"
TUNNEL_CLIENT_SCOPE = "client"
STATS_TOPIC = "relayrouter.stats"
STATS_GET = "relayrouter.stats.get"
DENYLIST_PREFIX = "relayrouter.denylist."


@dataclass(frozen=True, slots=True)
class Ceiling:
    """What one relay token allows: exact URIs and URI prefixes, per action."""

    exact: frozenset  # (action, uri)
    prefixes: tuple  # (action, prefix)

    def allows(self, action: str, uri: str, match: str) -> bool:
        if match == EXACT and (action, uri) in self.exact:
            return True
        if match not in (EXACT, PREFIX):
            return False  # a wildcard pattern reaches beyond any one stream or tunnel
        return any(a == action and uri.startswith(p) for a, p in self.prefixes)


def ceiling(claims: Mapping | None, config: RelayConfig, admin) -> Ceiling:
    """The ceiling of a session whose token carries ``claims``."""
    claims = claims or {}
    scopes = set(_scopes(claims))
    exact: set = set()
    prefixes: list = []
    prefix, topic = claims.get("prefix"), claims.get("topic")
    if _component(topic) and prefix in config.prefixes:
        stream = config.wamp_topic_for(prefix, topic)
        if uri_problem(stream) is None:
            exact.update({("subscribe", stream)} if "read" in scopes else set())
            exact.update({("publish", stream)} if "write" in scopes else set())
    if _component(topic) and prefix == TUNNEL_PREFIX:
        procedures = f"tunnel.{topic}."
        prefixes += [("register", procedures)] if TUNNEL_HOST_SCOPE in scopes else []
        prefixes += [("call", procedures)] if TUNNEL_CLIENT_SCOPE in scopes else []
    if config.stats_scope in scopes:
        exact.update({("call", STATS_GET), ("subscribe", STATS_TOPIC)})
    if admin.admits(None, claims):
        prefixes.append(("call", DENYLIST_PREFIX))
    return Ceiling(frozenset(exact), tuple(prefixes))


def _component(value) -> bool:
    return isinstance(value, str) and bool(value) and uri_problem(value) is None and "." not in value


class RelayScope:
    """The relay realm's confinement of relay-token sessions (core ``Realm.confinement``)."""

    def __init__(self, config: RelayConfig, admin) -> None:
        self.config = config
        self.admin = admin
        self.ceilings_by_session: dict[object, Ceiling] = {}  # owned here; dropped by forget()

    def authorize(self, session, action: str, uri: str, match: str = EXACT) -> str | None:
        if session.authprovider not in TOKEN_PROVIDERS:
            return None  # not a relay token: the roles decide
        found = self.ceilings_by_session.get(session)
        if found is None:
            found = self.ceilings_by_session[session] = ceiling(session.permissions, self.config, self.admin)
        if found.allows(action, uri, match):
            return None
        what = uri if match == EXACT else f"{uri} ({match} match)"
        return (f"session '{session.authid}' holds a relay token that does not allow it "
                f"to {action} '{what}'")

    def forget(self, session) -> None:
        self.ceilings_by_session.pop(session, None)
