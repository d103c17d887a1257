"""autobahn-js (Node) and Autobahn-Python talking through the router, both ways.

Each case crosses serializers too, so the router re-encodes every message,
binary payloads included (Python's JSON carries bytes as "\\0"+base64).
"""

import pytest

# (node serializer, python serializer)
PAIRS = [("json", "msgpack"), ("msgpack", "cbor"), ("cbor", "json")]

EXPECTED_ERROR = {"error": "com.example.error", "args": ["it failed", 7], "kwargs": {"code": 42, "why": "asked to"}}
BLOB = {"$bytes": "0001027f80ff"}


def assert_driver(result: dict, prefix: str, binary: bool) -> None:
    assert result["add2"] == 5
    echo_kwargs = {"nested": {"a": [1, "b"]}, **({"blob": BLOB} if binary else {})}
    assert result["echo"] == {"args": ["x", 1.5, None], "kwargs": echo_kwargs}
    assert result["app_error"] == EXPECTED_ERROR
    assert result["no_such_procedure"]["error"] == "wamp.error.no_such_procedure"
    assert prefix + ".nothing" in result["no_such_procedure"]["args"][0]
    assert result["published"] is True
    assert result["leave"]["details"]["reason"] == "wamp.close.goodbye_and_out"


def config(router, mode, serializer, prefix, binary):
    return {"mode": mode, "url": router.ws_url, "serializer": serializer,
            "prefix": prefix, "binary": binary, "expect_events": 1}


@pytest.mark.parametrize(("node_ser", "py_ser"), PAIRS)
def test_node_calls_and_publishes_to_python(router, node_script, py_peer, node_ser, py_ser):
    prefix = f"com.example.py.{node_ser}.{py_ser}"
    binary = node_ser != "json"
    callee = py_peer(config(router, "serve", py_ser, prefix, binary))
    callee.wait_event("ready")
    caller = node_script("wamp/peer.js", config(router, "drive", node_ser, prefix, binary))
    assert_driver(caller.result(), prefix, binary)
    served = callee.result()
    kwargs = {"lang": "js", "list": [1, 2.5, None, True], **({"blob": BLOB} if binary else {})}
    assert served["events"] == [{"args": ["from", "node", 42], "kwargs": kwargs}]


@pytest.mark.parametrize(("node_ser", "py_ser"), PAIRS)
def test_python_calls_and_publishes_to_node(router, node_script, py_peer, node_ser, py_ser):
    prefix = f"com.example.node.{node_ser}.{py_ser}"
    binary = node_ser != "json"
    callee = node_script("wamp/peer.js", config(router, "serve", node_ser, prefix, binary))
    callee.wait_event("ready")
    caller = py_peer(config(router, "drive", py_ser, prefix, binary))
    assert_driver(caller.result(), prefix, binary)
    served = callee.result()
    kwargs = {"lang": "py", "list": [1, 2.5, None, True], **({"blob": BLOB} if binary else {})}
    assert served["events"] == [{"args": ["from", "python", 42], "kwargs": kwargs}]
    assert served["leave"]["details"]["reason"] == "wamp.close.goodbye_and_out"
