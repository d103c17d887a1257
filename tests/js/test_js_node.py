"""autobahn-js under Node against the real router: the Basic Profile per serializer.

wamp/basic.js runs two autobahn-js sessions (A publishes and calls, B
subscribes and serves) and prints what it saw; the assertions are here.
"""

import pytest

SERIALIZERS = ["json", "msgpack", "cbor"]  # all three ship in autobahn-js 22.11


def test_python_client_joins_over_websocket(router, py_peer):
    """Precondition for everything below: an Autobahn-Python session joins over WebSocket.

    If this fails, the JS tests fail for the same reason and the bug is not
    JS-specific.
    """
    result = py_peer({"mode": "join", "url": router.ws_url, "serializer": "json"}).result()
    assert result["realm"] == "realm1"
    assert isinstance(result["session"], int)
    assert result["leave"]["details"]["reason"] == "wamp.close.goodbye_and_out"


def assert_basic_profile(result: dict) -> None:
    a_id, b_id = result["session_ids"]
    assert a_id != b_id
    for sid in (a_id, b_id):  # WAMP global-scope IDs: 1 .. 2**53
        assert 1 <= sid <= 2**53

    pubsub = result["pubsub"]
    assert pubsub["ack_publication"] == "number"  # PUBLISHED answered acknowledge
    assert pubsub["to_b"] == {"args": [1, "two", {"three": 3}], "kwargs": {"k": "v", "n": [1, 2.5, None]}}
    # The publisher is excluded by default: A saw only its exclude_me: false event.
    assert pubsub["seen_by_a"] == [{"args": ["again"], "kwargs": {"self": True}}]

    rpc = result["rpc"]
    assert rpc["add2"] == 5
    assert rpc["echo"] == {"args": [1, "x", [True, None]], "kwargs": {"y": {"z": 1.5}}}
    assert rpc["app_error"] == {"error": "com.example.error", "args": ["it failed", 7],
                                "kwargs": {"code": 42, "why": "asked to"}}
    assert rpc["no_such_procedure"]["error"] == "wamp.error.no_such_procedure"
    assert rpc["before_unregister"] == "here"
    assert rpc["after_unregister"]["error"] == "wamp.error.no_such_procedure"

    for side in ("leave_a", "leave_b"):  # GOODBYE answered with goodbye_and_out
        assert result[side]["reason"] == "closed"
        assert result[side]["details"]["reason"] == "wamp.close.goodbye_and_out"


@pytest.mark.parametrize("serializer", SERIALIZERS)
def test_node_websocket_basic_profile(router, node_script, serializer):
    binary = serializer != "json"  # autobahn-js's JSON serializer has no binary convention
    result = node_script("wamp/basic.js", {
        "url": router.ws_url, "serializer": serializer, "binary": binary,
    }).result()
    assert result["protocol"] == f"wamp.2.{serializer}"
    assert_basic_profile(result)
    if binary:
        assert result["binary"]["received"] == result["binary"]["sent"] == {"$bytes": "000102fdfeff"}


def test_node_rawsocket_basic_profile(router, node_script):
    """autobahn-js speaks RawSocket from Node, with JSON only."""
    result = node_script("wamp/basic.js", {
        "transport": "rawsocket", "host": "127.0.0.1", "port": router.rawsocket_port,
    }).result()
    assert result["protocol"] == "wamp.2.json"
    assert_basic_profile(result)
