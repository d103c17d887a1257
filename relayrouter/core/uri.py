"""URI rules for subscriptions and registrations, by match policy.

The spec's loose URI form: components of any characters but white space, '.'
and '#', separated by '.'.  An exact URI has no empty component; a prefix may
end in an empty one ("com.myapp." is allowed); a wildcard pattern marks each
wildcard position with an empty component ("com..event").
"""

import re

from .matching import EXACT, PREFIX, WILDCARD

_EXACT = re.compile(r"^([^\s.#]+\.)*([^\s.#]+)$")
_PREFIX = re.compile(r"^([^\s.#]+\.)*([^\s.#]*)$")
_WILDCARD = re.compile(r"^(([^\s.#]+\.)|\.)*([^\s.#]+)?$")

_BY_MATCH = {EXACT: _EXACT, PREFIX: _PREFIX, WILDCARD: _WILDCARD}


def pattern_problem(uri: str, match: str) -> str | None:
    """Why ``uri`` is not a valid ``match`` pattern, or None if it is."""
    rule = _BY_MATCH.get(match)
    if rule is None:
        return f"unknown match policy '{match}' (use exact, prefix or wildcard)"
    if not uri and match != PREFIX:
        return "the URI is empty"
    if not rule.match(uri):
        return f"'{uri}' is not a valid URI for {match} matching"
    return None


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` is not a valid concrete URI, or None if it is."""
    if not _EXACT.match(uri):
        return f"'{uri}' is not a valid URI"
    return None
