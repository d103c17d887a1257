"""A relay token's ceiling at its edges: reading its own stream needs 'read'
(write alone publishes only), no wildcard pattern passes, not even one lying
inside the token's own tunnel, and the token's exact topic as a pattern is
not the topic."""

import pytest_twisted
from autobahn.wamp.types import PublishOptions, RegisterOptions

from .support import practable_token
from .test_relay_scope import NOT_AUTHORIZED, _match, joined, refused, router  # noqa: F401 (the fixture)


@pytest_twisted.inlineCallbacks
def test_a_write_only_token_cannot_read_its_own_stream(router):  # noqa: F811
    session = yield joined(router, practable_token(topic="pend00", scopes=("write",), sub="writer"))
    error = yield refused(lambda: session.subscribe(print, "relay.session.pend00"))
    assert error.error == NOT_AUTHORIZED and "subscribe 'relay.session.pend00'" in error.args[0]


@pytest_twisted.inlineCallbacks
def test_no_wildcard_pattern_passes_even_inside_the_tokens_tunnel(router):  # noqa: F811
    host = yield joined(router, practable_token(topic="lab42", prefix="tunnel", scopes=("host",),
                                                booking_id=None, sub=None))
    error = yield refused(lambda: host.register(print, "tunnel.lab42..open",
                                                options=RegisterOptions(match="wildcard")))
    assert error.error == NOT_AUTHORIZED and "(wildcard match)" in error.args[0]
    yield host.register(print, "tunnel.lab42.", options=RegisterOptions(match="prefix"))
    reader = yield joined(router, practable_token(topic="pend00", scopes=("read",), sub="reader"))
    for match in ("wildcard", "prefix"):  # as a prefix it would reach relay.session.pend001 too
        error = yield refused(lambda: reader.subscribe(print, "relay.session.pend00", options=_match(match)))
        assert error.error == NOT_AUTHORIZED and f"({match} match)" in error.args[0]


@pytest_twisted.inlineCallbacks
def test_a_scope_list_entry_that_is_not_a_string_is_ignored(router):  # noqa: F811
    session = yield joined(router, practable_token(topic="pend00", scopes=("read", ["write"], {"write": True}),
                                                   sub="odd-scopes"))
    yield session.subscribe(print, "relay.session.pend00")
    error = yield refused(lambda: session.publish("relay.session.pend00", 1, options=PublishOptions(acknowledge=True)))
    assert error.error == NOT_AUTHORIZED and "publish 'relay.session.pend00'" in error.args[0]
