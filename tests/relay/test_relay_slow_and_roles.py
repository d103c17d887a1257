"""Slow raw readers lose whole frames (counted) and stall nobody; role rules
apply to raw sessions; relay configuration errors name the key."""

import pytest
import pytest_twisted

from relayrouter import config as cfg

from ..support import eventually
from .support import connect_topic, open_raw, post_access, practable_token, relay_config, start, stop


@pytest_twisted.inlineCallbacks
def test_slow_reader_drops_oldest_frames_and_others_get_everything(monkeypatch, tmp_path):
    router = yield start(relay_config(monkeypatch, stats_interval=0, buffer_messages=8,
                                      buffer_bytes=1024 * 1024), tmp_path / "s")
    try:
        writer = yield connect_topic(router, scopes=("write",))
        slow = yield connect_topic(router, scopes=("read",))
        fast = yield connect_topic(router, scopes=("read",))
        slow.proto.transport.pauseProducing()  # stops reading from its socket
        chunk = bytes(range(256)) * 256  # 64 KiB
        count = 200
        got = []
        for i in range(count):  # paced by the fast reader, which keeps up
            writer.send_binary(i.to_bytes(4, "big") + chunk)
            got.append((yield fast.next()))
        assert [int.from_bytes(g[:4], "big") for g in got] == list(range(count))
        relay = router.service.relay
        slow_peer = next(p for p in relay.peers if p.grant.can_read and p.dropped)
        assert slow_peer.queued[0] <= 8 and slow_peer.queued[1] <= 1024 * 1024 + 70000
        slow.proto.transport.resumeProducing()
        received = []
        while True:
            frame = yield slow.next()
            received.append(int.from_bytes(frame[:4], "big"))
            if received[-1] == count - 1:
                break
        # Whole frames, oldest dropped: what arrives is in order and ends with the newest.
        assert received == sorted(received) and len(received) < count
        assert slow_peer.dropped == count - len(received)
        assert slow_peer.tx.messages == len(received)
    finally:
        yield stop(router)


ROLES = [{"name": "relay", "rules": [
    {"uri": "relay.session.", "match": "prefix", "allow": ["subscribe"]},
    {"uri": "relay.session.pend00", "allow": ["subscribe", "publish"]},
]}]


@pytest_twisted.inlineCallbacks
def test_role_rules_apply_to_raw_sessions(monkeypatch, tmp_path):
    router = yield start(relay_config(monkeypatch, roles=ROLES, stats_interval=0), tmp_path / "s")
    try:
        a = yield connect_topic(router)
        b = yield connect_topic(router)
        a.send_text("allowed")
        assert (yield b.next()) == "allowed"
        # The realm's rules grant no publish on this topic: a writer is turned away at once.
        code, body = yield post_access(router, "locked", practable_token(topic="locked"))
        assert code == 200
        locked = yield open_raw(router, body["uri"])
        code, reason = yield locked.closed()
        assert code == 1008 and "not authorized to publish 'relay.session.locked'" in reason
        reader = yield connect_topic(router, topic="locked", scopes=("read",))
        reader.send_text("ignored")  # no write scope
        yield eventually(lambda: any(p.refused for p in router.service.relay.peers))
    finally:
        yield stop(router)


@pytest.mark.parametrize("relay, message", [
    ({"realm": "nope"}, "relay.realm: no realm named 'nope'"),
    ({"realm": "lab", "prefixes": ["ws"]}, "relay.prefixes[0]: 'ws' is a path the router uses already"),
    ({"realm": "lab", "prefixes": ["a/b"]}, "relay.prefixes[0]"),
    ({"realm": "lab", "wamp_topic": "relay.x"}, "relay.wamp_topic: must contain {topic}"),
    ({"realm": "lab", "wamp_topic": "relay..{topic}"},
     "relay.wamp_topic: 'relay..{topic}' makes no WAMP topic for the prefix 'session'"),
    ({"realm": "lab", "prefixes": ["session", "lab"], "wamp_topic": "relay {prefix}.{topic}"},
     "relay.wamp_topic: 'relay {prefix}.{topic}' makes no WAMP topic for the prefix 'session'"),
    ({"realm": "lab", "buffer_messages": 0}, "relay.buffer_messages: must be positive"),
    ({"realm": "lab", "public_url": "http://x"}, "relay.public_url"),
    ({"realm": "lab", "stats_intervall": 3}, "relay.stats_intervall: unknown key"),
])
def test_relay_config_errors_name_the_key(monkeypatch, relay, message):
    data = relay_config(monkeypatch)
    data["relay"] = relay
    with pytest.raises(cfg.ConfigError) as e:
        cfg.parse(data)
    assert message in str(e.value)


def test_relay_needs_a_jwt_realm():
    with pytest.raises(cfg.ConfigError) as e:
        cfg.parse({"realms": [{"name": "open"}], "relay": {"realm": "open"}})
    assert "relay.realm: realm 'open' has no [realms.auth.jwt]" in str(e.value)


@pytest_twisted.inlineCallbacks
def test_relay_keeps_working_across_a_roles_reload(monkeypatch, tmp_path):
    from twisted.internet import defer, reactor

    from relayrouter.service import RouterService

    from ..support import RunningRouter, connect_ws

    data = relay_config(monkeypatch, roles=ROLES, stats_interval=0)
    data["state_dir"] = str(tmp_path / "state")
    data["listeners"] = [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1"}]
    current = {"data": data}
    service = RouterService(cfg.parse(data).with_defaults(), reactor,
                            reload_config=lambda: cfg.parse(current["data"]).with_defaults())
    service.startService()
    router = RunningRouter(service, (yield service.when_listening()))
    try:
        # The new rules let raw sessions publish on "locked" too, and WAMP clients read stats.
        widened = [{"name": "relay", "rules": [
            {"uri": "relay.session.", "match": "prefix", "allow": ["subscribe", "publish"]},
            {"uri": "relayrouter.stats", "allow": ["subscribe"]}]}]
        current["data"] = dict(data, realms=[dict(data["realms"][0], roles=widened)])
        report = service.reload("test")
        assert "realm lab: roles applied" in " ".join(report["changed"]), report
        # The monitor is still trusted past the new rules (it subscribes again
        # after a restart of its session), and everyone else meets them.
        realm = service.relay.realm
        monitor = service.relay.monitor.session
        assert realm.authorize(monitor, "subscribe", "relay.", "prefix") is None
        assert realm.authorizer.inner.authorize(monitor, "subscribe", "relay.", "prefix") is not None
        watcher = yield connect_ws(router, realm="lab", authmethods=["ticket"],
                                   ticket=practable_token(sub="dash", scopes=("relay:stats",)))
        got = defer.Deferred()
        yield watcher.subscribe(lambda report: got.called or got.callback(report), "relayrouter.stats")
        writer = yield connect_topic(router, topic="locked")
        reader = yield connect_topic(router, topic="locked", scopes=("read",))
        writer.send_text("now allowed")
        assert (yield reader.next()) == "now allowed"
        assert service.relay.publish_stats(on_request=False)  # the router's own publication, past the rules
        report = yield got.addTimeout(10, reactor)
        assert {c["topic"] for c in report["connections"]} == {"locked"}
        topics = {t["topic"]: t for t in report["topics"]}
        assert topics["relay.session.locked"]["published"]["messages"] == 1
    finally:
        for session in list(service.router.sessions()):
            session.peer.close()
        yield service.stopService()


def test_a_relay_realm_open_to_anonymous_sessions_needs_roles(monkeypatch):
    """Relay tokens are confined whatever the roles say; anonymous sessions are not: in the
    relay's realm without roles they could write into every stream and take every tunnel."""
    data = relay_config(monkeypatch)
    data["realms"].insert(0, {"name": "other"})
    data["realms"][1]["auth"]["anonymous"] = {"role": "viewer"}
    with pytest.raises(cfg.ConfigError) as e:
        cfg.parse(data)
    assert str(e.value).startswith("realms[1].auth.anonymous: realm 'lab' is the relay's and has no "
                                   "[[realms.roles]]")
    data["realms"][1]["roles"] = [{"name": "viewer", "rules": [{"uri": "relay.", "match": "prefix",
                                                                 "allow": ["subscribe"]}]}]
    assert cfg.parse(data).relay.realm == "lab"
