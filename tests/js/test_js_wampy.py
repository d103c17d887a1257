"""wampy.js (npm `wampy`) and Autobahn-Python talking through the router, both ways.

wampy's MessagePack (msgpackr) and CBOR (cbor-x) codecs write JavaScript
`undefined` for options nobody set: SUBSCRIBE {"match": undefined,
"get_retained": undefined}, and a custom option without a value in HELLO,
REGISTER, CALL, PUBLISH, YIELD and ERROR. The router treats an undefined
option as an absent one; before, it ABORTed the session as a protocol
violation. The wampy script reports which keys it sent as undefined, so each
case proves that the router saw them. Over JSON, JSON.stringify drops such
keys, so JSON is the control.

wampy's JSON serializer does not implement WAMP's binary convention (a NUL
and base64), so binary payloads are exchanged only over MessagePack and CBOR.
"""

import pytest

from test_js_cross import assert_driver, config

# (wampy serializer, python serializer): each wampy codec, crossed with another.
PAIRS = [("json", "msgpack"), ("msgpack", "cbor"), ("cbor", "json"), ("msgpack", "json"), ("cbor", "msgpack")]

SERVE_UNDEFINED = ["ERROR._app_trace", "HELLO._app_trace", "REGISTER._app_trace", "SUBSCRIBE._app_trace",
                   "SUBSCRIBE.get_retained", "SUBSCRIBE.match", "YIELD._app_trace"]
DRIVE_UNDEFINED = ["CALL._app_trace", "HELLO._app_trace", "PUBLISH._app_trace"]
BLOB = {"$bytes": "0001027f80ff"}


def no_protocol_violation(router) -> None:
    refused = [line for line in router.drain_log() if "Protocol violation" in line]
    assert refused == [], "the router refused wampy's messages:\n" + "\n".join(refused)


@pytest.mark.parametrize(("wampy_ser", "py_ser"), PAIRS)
def test_wampy_serves_python(router, node_script, py_peer, wampy_ser, py_ser):
    prefix = f"com.example.wampy.serve.{wampy_ser}.{py_ser}"
    binary = wampy_ser != "json"
    callee = node_script("wamp/wampy_peer.js", config(router, "serve", wampy_ser, prefix, binary))
    callee.wait_event("ready")
    caller = py_peer(config(router, "drive", py_ser, prefix, binary))
    assert_driver(caller.result(), prefix, binary)
    served = callee.result()
    kwargs = {"lang": "py", "list": [1, 2.5, None, True], **({"blob": BLOB} if binary else {})}
    assert served["events"] == [{"args": ["from", "python", 42], "kwargs": kwargs}]
    assert served["sent_undefined"] == SERVE_UNDEFINED
    no_protocol_violation(router)


@pytest.mark.parametrize(("wampy_ser", "py_ser"), PAIRS)
def test_wampy_drives_python(router, node_script, py_peer, wampy_ser, py_ser):
    prefix = f"com.example.wampy.drive.{wampy_ser}.{py_ser}"
    binary = wampy_ser != "json"
    callee = py_peer(config(router, "serve", py_ser, prefix, binary))
    callee.wait_event("ready")
    caller = node_script("wamp/wampy_peer.js", config(router, "drive", wampy_ser, prefix, binary))
    result = caller.result()
    assert result["add2"] == 5
    echo_kwargs = {"nested": {"a": [1, "b"]}, **({"blob": BLOB} if binary else {})}
    assert result["echo"] == {"args": ["x", 1.5, None], "kwargs": echo_kwargs}
    assert result["app_error"] == {"error": "com.example.error", "args": ["it failed", 7],
                                   "kwargs": {"code": 42, "why": "asked to"}}
    assert result["no_such_procedure"]["error"] == "wamp.error.no_such_procedure"
    assert prefix + ".nothing" in result["no_such_procedure"]["args"][0]
    assert result["published"] is True
    assert result["sent_undefined"] == DRIVE_UNDEFINED
    served = callee.result()
    kwargs = {"lang": "wampy", "list": [1, 2.5, None, True], **({"blob": BLOB} if binary else {})}
    assert served["events"] == [{"args": ["from", "wampy", 42], "kwargs": kwargs}]
    no_protocol_violation(router)
