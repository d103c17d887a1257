"""A relay token's ceiling, decided in memory (relay/scope.py): what each claim
and scope lets a session do, exactly and nothing more, and which sessions the
ceiling applies to at all."""

import pytest

from relayrouter.core.procedures import AdminPolicy
from relayrouter.relay.config import RelayConfig
from relayrouter.relay.scope import RelayScope

CONFIG = RelayConfig("lab", prefixes=("session", "camera"))
ADMIN = AdminPolicy(scope="relay:admin")


class Session:
    def __init__(self, authprovider="jwt", authid="bk-1", **claims) -> None:
        self.authprovider, self.authid, self.permissions = authprovider, authid, claims


def allowed(claims_or_session, action, uri, match="exact") -> bool:
    session = claims_or_session if isinstance(claims_or_session, Session) else Session(**claims_or_session)
    return RelayScope(CONFIG, ADMIN).authorize(session, action, uri, match) is None


def stream(topic="pend00", prefix="session", scopes=("read", "write")) -> dict:
    return {"prefix": prefix, "topic": topic, "scopes": list(scopes)}


def tunnel(topic="lab42", scopes=("host",)) -> dict:
    return {"prefix": "tunnel", "topic": topic, "scopes": list(scopes)}


def test_a_stream_token_reaches_its_own_stream_exactly():
    claims = stream()
    assert allowed(claims, "subscribe", "relay.session.pend00")
    assert allowed(claims, "publish", "relay.session.pend00")
    for match in ("prefix", "wildcard"):  # a pattern reaches beyond the one stream
        assert not allowed(claims, "subscribe", "relay.session.pend00", match)
    for uri in ("relay.session.pend01", "relay.camera.pend00", "relay.session.pend00.x"):
        assert not allowed(claims, "subscribe", uri)
    for action in ("call", "register"):
        assert not allowed(claims, action, "relay.session.pend00")


def test_read_is_subscribing_and_write_is_publishing():
    assert allowed(stream(scopes=("read",)), "subscribe", "relay.session.pend00")
    assert not allowed(stream(scopes=("read",)), "publish", "relay.session.pend00")
    assert allowed(stream(scopes=("write",)), "publish", "relay.session.pend00")
    assert not allowed(stream(scopes=("write",)), "subscribe", "relay.session.pend00")
    assert not allowed(stream(scopes=()), "subscribe", "relay.session.pend00")
    assert not allowed(stream(scopes=()), "publish", "relay.session.pend00")


def test_every_served_prefix_has_streams_and_no_other_prefix_does():
    assert allowed(stream(prefix="camera"), "subscribe", "relay.camera.pend00")
    assert not allowed(stream(prefix="shell"), "subscribe", "relay.shell.pend00")
    assert not allowed(stream(prefix="shell"), "publish", "relay.shell.pend00")


@pytest.mark.parametrize("topic", ["", "a.b", "a b", "a#b", None, 42])
def test_a_topic_that_is_not_one_uri_component_holds_neither_a_stream_nor_a_tunnel(topic):
    wamp_topic = f"relay.session.{topic}"
    assert not allowed(stream(topic=topic), "subscribe", wamp_topic)
    assert not allowed(stream(topic=topic), "publish", wamp_topic)
    for action, scope in (("register", "host"), ("call", "client")):
        assert not allowed(tunnel(topic=topic, scopes=(scope,)), action, f"tunnel.{topic}.open")
        assert not allowed(tunnel(topic=topic, scopes=(scope,)), action, f"tunnel.{topic}.", "prefix")


def test_a_tunnel_host_registers_and_a_tunnel_client_calls_its_own_tunnels_procedures_only():
    host, client = tunnel(scopes=("host",)), tunnel(scopes=("client",))
    assert allowed(host, "register", "tunnel.lab42.open")
    assert allowed(host, "register", "tunnel.lab42.", "prefix")
    assert not allowed(host, "call", "tunnel.lab42.open")
    assert allowed(client, "call", "tunnel.lab42.open")
    assert not allowed(client, "register", "tunnel.lab42.open")
    for claims, action in ((host, "register"), (client, "call")):
        for uri in ("tunnel.lab420.open", "tunnel.lab4.open", "x.tunnel.lab42.open", "tunnel.lab43.open"):
            assert not allowed(claims, action, uri), (action, uri)
        assert not allowed(claims, action, "tunnel.lab42..open", "wildcard")
    assert not allowed(tunnel(scopes=("read", "write")), "register", "tunnel.lab42.open")
    assert not allowed(tunnel(scopes=("read", "write")), "call", "tunnel.lab42.open")


def test_tunnel_scopes_under_another_prefix_hold_no_tunnel():
    claims = {"prefix": "session", "topic": "lab42", "scopes": ["host", "client"]}
    assert not allowed(claims, "register", "tunnel.lab42.open")
    assert not allowed(claims, "call", "tunnel.lab42.open")


def test_the_stats_scope_reads_the_stats_and_nothing_else():
    claims = stream(topic="dash", scopes=("relay:stats",))
    assert allowed(claims, "call", "relayrouter.stats.get")
    assert allowed(claims, "subscribe", "relayrouter.stats")
    assert not allowed(claims, "publish", "relayrouter.stats")
    assert not allowed(claims, "subscribe", "relayrouter.stats", "prefix")
    assert not allowed(stream(topic="dash"), "call", "relayrouter.stats.get")
    assert not allowed(stream(topic="dash"), "subscribe", "relayrouter.stats")


def test_the_deny_list_procedures_for_an_admin_token_only():
    admin = stream(topic="admin", scopes=("relay:admin",))
    assert allowed(admin, "call", "relayrouter.denylist.add")
    assert allowed(admin, "call", "relayrouter.denylist.list")
    assert not allowed(admin, "register", "relayrouter.denylist.add")
    assert not allowed(stream(), "call", "relayrouter.denylist.add")
    assert not allowed(stream(scopes=("relay:stats",)), "call", "relayrouter.denylist.list")


def test_scopes_as_one_string_are_split_and_entries_that_are_not_strings_ignored():
    assert allowed(stream(scopes=()) | {"scopes": "read write"}, "publish", "relay.session.pend00")
    odd = stream(scopes=("read", ["write"], {"write": True}))
    assert allowed(odd, "subscribe", "relay.session.pend00")
    assert not allowed(odd, "publish", "relay.session.pend00")


@pytest.mark.parametrize("provider", ["jwt", "relay", "one-time-ticket"])
def test_every_session_holding_a_relay_token_is_confined_and_the_refusal_says_why(provider):
    session = Session(provider, "viewer", **stream(scopes=("read",)))
    scope = RelayScope(CONFIG, ADMIN)
    assert scope.authorize(session, "subscribe", "relay.session.pend00") is None
    assert scope.authorize(session, "publish", "relay.session.pend00") == (
        "session 'viewer' holds a relay token that does not allow it to publish 'relay.session.pend00'")
    assert scope.authorize(session, "subscribe", "relay.session.", "prefix") == (
        "session 'viewer' holds a relay token that does not allow it to subscribe "
        "'relay.session. (prefix match)'")


@pytest.mark.parametrize("provider", ["ticket", "wampcra", "cryptosign", "tls", "anonymous"])
def test_sessions_authenticated_otherwise_are_left_to_the_roles(provider):
    session = Session(provider, "svc", **stream(scopes=()))
    assert RelayScope(CONFIG, ADMIN).authorize(session, "register", "com.example.anything") is None


def test_a_sessions_ceiling_is_dropped_when_it_leaves():
    scope, session = RelayScope(CONFIG, ADMIN), Session(**stream())
    scope.authorize(session, "subscribe", "relay.session.pend00")
    assert list(scope.ceilings_by_session) == [session]
    scope.forget(session)
    scope.forget(session)  # a second time, or for a session never seen: nothing to drop
    assert scope.ceilings_by_session == {}


def test_a_stream_whose_wamp_topic_is_no_valid_uri_is_not_granted():
    config = RelayConfig("lab", wamp_topic="relay..{topic}")  # an empty component: a pattern, not a URI
    session = Session(**stream())
    assert RelayScope(config, ADMIN).authorize(session, "subscribe", "relay..pend00") is not None
    assert RelayScope(config, ADMIN).authorize(session, "publish", "relay..pend00") is not None
