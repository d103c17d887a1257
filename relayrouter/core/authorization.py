"""Role-based authorization with claim-derived permissions, cached per session.

Theory of operation
-------------------
A realm with roles configured denies by default.  A role is a list of rules;
each rule names a URI pattern (``exact``, ``prefix`` or ``wildcard``), the
actions it allows (``call``, ``register``, ``publish``, ``subscribe``), and
whether identity disclosure is granted on it.  A rule may also derive rights
from the session's credential claims (a JWT's):

* ``{claim}`` placeholders in its URI are filled from the claims
  (``relay.session.{topic}`` with ``topic: "lab42"`` is
  ``relay.session.lab42``); a missing claim, or a value that is not a single
  URI component, drops the rule for that session;
* ``scopes`` maps scope names to actions (``read -> subscribe``,
  ``write -> publish``); the session gets the actions of the scopes its
  credential carries (claim ``scopes``: a list, or a space-separated string).

When a session first needs a decision, its role's rules are made concrete
for it and put in a :class:`UriIndex`, the same index the broker and dealer
route with.  The rule that decides is the one a call would go to: exact, else
longest prefix, else the best wildcard; so a more specific rule can take back
what a broader one gave.  A pattern request (a prefix or wildcard SUBSCRIBE
or REGISTER) must be covered by a rule of the same or a broader pattern, so a
prefix subscription cannot reach past an exact grant.  Decisions are cached
per session by ``(action, uri, match)`` in a bounded dict; the hot path is
one dict lookup.
"""

import re
import string
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from .matching import EXACT, PREFIX, UriIndex

ACTIONS = ("call", "register", "publish", "subscribe")
CACHE_LIMIT = 1024
_COMPONENT = re.compile(r"^[^\s.#]+$")


@dataclass(frozen=True, slots=True)
class Rule:
    uri: str  # may hold {claim} placeholders
    match: str = EXACT
    allow: frozenset = frozenset()
    scopes: Mapping[str, frozenset] = field(default_factory=dict)  # scope -> actions
    disclose_caller: bool = False
    disclose_publisher: bool = False
    placeholders: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow", frozenset(self.allow))
        object.__setattr__(self, "scopes", MappingProxyType(
            {k: frozenset(v) for k, v in self.scopes.items()}))
        for actions in (self.allow, *self.scopes.values()):
            wrong = sorted(set(actions) - set(ACTIONS))
            if wrong:
                raise ValueError(f"unknown action '{wrong[0]}' (use {', '.join(ACTIONS)})")
        names = tuple(n for _, n, _, _ in string.Formatter().parse(self.uri) if n is not None)
        if any(not n for n in names):
            raise ValueError(f"rule URI '{self.uri}' has an empty placeholder {{}}")
        object.__setattr__(self, "placeholders", names)

    def grant_for(self, authid: str | None, claims: Mapping | None, scopes: frozenset) -> "Grant | None":
        """This rule made concrete for one session, or None if its claims do not fit."""
        uri = self.uri
        if self.placeholders:
            values = {}
            for name in self.placeholders:
                value = authid if name == "authid" else (claims or {}).get(name)
                if not isinstance(value, str) or not _COMPONENT.match(value):
                    return None
                values[name] = value
            uri = self.uri.format_map(values)
        actions = set(self.allow)
        for scope in scopes:
            actions |= self.scopes.get(scope, frozenset())
        return Grant(uri, self.match, frozenset(actions), self.disclose_caller, self.disclose_publisher)


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    rules: tuple[Rule, ...] = ()
    scopes_claim: str = "scopes"


@dataclass(frozen=True, slots=True)
class Grant:
    """What one session may do on one URI pattern."""

    uri: str
    match: str
    actions: frozenset
    disclose_caller: bool
    disclose_publisher: bool

    def merged(self, other: "Grant") -> "Grant":
        return Grant(self.uri, self.match, self.actions | other.actions,
                     self.disclose_caller or other.disclose_caller,
                     self.disclose_publisher or other.disclose_publisher)


class _SessionGrants:
    __slots__ = ("index", "decisions")

    def __init__(self, index: UriIndex) -> None:
        self.index = index
        self.decisions: dict[tuple[str, str, str], str | None] = {}


class RoleAuthorizer:
    """A realm's authorizer when roles are configured: default deny."""

    def __init__(self, roles: Mapping[str, Role] | list[Role], cache_limit: int = CACHE_LIMIT) -> None:
        if not isinstance(roles, Mapping):
            roles = {role.name: role for role in roles}
        self.roles_by_name = dict(roles)
        self.cache_limit = cache_limit
        # Owned here; entries are dropped by forget() when the session leaves.
        self.grants_by_session: dict[object, _SessionGrants] = {}

    def authorize(self, session, action: str, uri: str, match: str = EXACT) -> str | None:
        grants = self.grants_by_session.get(session)
        if grants is None:
            grants = self.grants_by_session[session] = self._grants(session)
        key = (action, uri, match)
        decisions = grants.decisions
        try:
            return decisions[key]
        except KeyError:
            pass
        if len(decisions) >= self.cache_limit:
            decisions.clear()
        refusal = decisions[key] = self._decide(session, grants.index, action, uri, match)
        return refusal

    def discloses(self, session, kind: str, uri: str) -> bool:
        """Whether the rule deciding ``uri`` grants caller / publisher disclosure."""
        grants = self.grants_by_session.get(session) or self._grants(session)
        grant = grants.index.best(uri)
        if grant is None:
            return False
        return grant.disclose_caller if kind == "caller" else grant.disclose_publisher

    def forget(self, session) -> None:
        self.grants_by_session.pop(session, None)

    # ---------------------------------------------------------------- deciding

    def _grants(self, session) -> _SessionGrants:
        index: UriIndex[Grant] = UriIndex()
        role = self.roles_by_name.get(session.authrole)
        if role is not None:
            scopes = _scopes(session.permissions, role.scopes_claim)
            for rule in role.rules:
                grant = rule.grant_for(session.authid, session.permissions, scopes)
                if grant is None:
                    continue
                existing = index.get(grant.uri, grant.match)
                index.add(grant.uri, grant.match, existing.merged(grant) if existing else grant)
        return _SessionGrants(index)

    def _decide(self, session, index: UriIndex, action: str, uri: str, match: str) -> str | None:
        grant = _covering(index, uri, match)
        if grant is not None and action in grant.actions:
            return None
        what = uri if match == EXACT else f"{uri} ({match} match)"
        return (f"session '{session.authid}' with role '{session.authrole}' is not authorized "
                f"to {action} '{what}'")


def _covering(index: UriIndex, uri: str, match: str) -> Grant | None:
    """The grant deciding a request for ``uri`` under ``match``."""
    if match == EXACT:
        return index.best(uri)
    # A pattern request is covered by the same pattern, or by a prefix rule it lies under.
    same = index.get(uri, match)
    if same is not None:
        return same
    fixed = uri if match == PREFIX else _wildcard_fixed_prefix(uri)
    longest = None
    for candidate, grant in index.prefix.items():
        if fixed.startswith(candidate) and (longest is None or len(candidate) > len(longest.uri)):
            longest = grant
    return longest


def _wildcard_fixed_prefix(pattern: str) -> str:
    """The part of a wildcard pattern before its first wildcard component, with its dot."""
    parts = pattern.split(".")
    fixed = []
    for part in parts:
        if part == "":
            break
        fixed.append(part)
    return ".".join(fixed) + "." if len(fixed) < len(parts) else pattern


def _scopes(claims: Mapping | None, claim: str) -> frozenset:
    value = (claims or {}).get(claim)
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, (list, tuple)):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()
