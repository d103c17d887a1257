"""The in-memory peer delivers only what a real peer could receive."""

import pytest
from autobahn.wamp import message as m

from relayrouter.testing import MemoryPeer, join, make_router


def test_a_message_that_cannot_cross_the_wire_is_kept_apart(wire_serializer, monkeypatch):
    monkeypatch.setattr(MemoryPeer, "created", None)  # this test looks at the peer itself
    payload = object()
    peer = MemoryPeer(wire_serializer)
    peer.send(m.Event(1, 2, args=[payload]))
    assert peer.sent == []
    [(message, problem)] = peer.unserializable
    assert message.args == [payload] and problem


@pytest.mark.parametrize("value", [{1: "JSON makes the key a string"}, float("nan")])
def test_a_message_that_comes_back_different_over_json_is_kept_apart(monkeypatch, value):
    monkeypatch.setattr(MemoryPeer, "created", None)
    peer = MemoryPeer("json")
    peer.send(m.Event(1, 2, kwargs={"k": value}))
    [(_, problem)] = peer.unserializable
    assert "decodes as" in problem


@pytest.mark.parametrize("value", [(1, 2), b"\x00\xff", {"nested": [None, True, 1.5]}])
def test_values_that_cross_the_wire_intact_are_delivered(wire_serializer, value):
    peer = MemoryPeer(wire_serializer)
    peer.send(m.Event(1, 2, args=[value]))
    assert len(peer.sent) == 1 and peer.unserializable == []


def test_what_the_router_sends_is_serialized_with_the_wire_serializer(wire_serializer):
    router = make_router()
    a, b = join(router), join(router)
    a.receive([32, 1, {}, "com.t"])
    a.take()
    b.receive([16, 1, {}, "com.t", [b"\x00\x01", {"n": 1}]])
    [event] = a.take()
    assert [type(s).__name__.lower() for s in event._serialized] == [f"{wire_serializer}objectserializer"
                                                                     .replace("json", "fastjson")]
