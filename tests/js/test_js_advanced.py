"""Advanced Profile across client libraries: autobahn-js 22.11.1 under Node
(wamp/advanced.js) and Autobahn-Python (py_adv_peer.py), separate processes,
through the real router.

Covers issue 3 items 1-4 with mixed peers: pattern-based subscriptions and
registrations (and call precedence), subscriber black-/whitelisting with
publisher exclusion and disclosure, a shared registration whose callees are a
JS and a Python client, and progressive results, the three cancel modes and
the call timeout with a JS caller and a Python callee.

Payload passthru (item 5) is not tested here: autobahn-js 22.11.1 neither
announces payload_passthru_mode nor has an API for ppt_* options.
"""

import json
import sys
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parent

SCRIPT = "wamp/advanced.js"
CANCELED = "wamp.error.canceled"
ANON = "anonymous"


@pytest.fixture
def py_adv(spawn):
    """py_adv(config) -> ChildProcess running py_adv_peer.py (stopped at teardown)."""
    def start(config):
        return spawn(f"py_adv_peer {config['mode']}",
                     [sys.executable, JS_DIR / "py_adv_peer.py", json.dumps(config)])
    return start


def cfg(router, mode, base, serializer="json", **extra):
    return {"mode": mode, "url": router.ws_url, "serializer": serializer, "base": base,
            "step_timeout_ms": 5000, "total_timeout_ms": 20000, **extra}


def test_pattern_subscriptions_and_registrations_js_with_python(router, node_script, py_adv):
    base = "com.example.adv.pattern"
    py = py_adv(cfg(router, "pattern", base, "msgpack"))
    py.wait_event("ready")
    js = node_script(SCRIPT, cfg(router, "pattern", base, "cbor"))
    out = js.result()
    t = lambda suffix: base + suffix  # noqa: E731

    # JS pattern subscribers get Python's publications with the concrete topic
    assert out["published"] == 4
    assert out["prefix"] == [{"arg": t(".sensor.humidity"), "topic": t(".sensor.humidity")},
                             {"arg": t(".sensor.temp"), "topic": t(".sensor.temp")}]
    assert out["wildcard"] == [{"arg": t(".other.temp"), "topic": t(".other.temp")},
                               {"arg": t(".sensor.temp"), "topic": t(".sensor.temp")}]
    # a JS caller reaches a Python prefix registration, which sees the concrete URI;
    # exact beats prefix, and prefix beats wildcard, whichever library holds which
    calls = out["calls"]
    assert calls[".proc.a.b"] == {"by": "py", "procedure": t(".proc.a.b")}
    # (for an exact registration Autobahn-Python fills details.procedure in itself)
    assert calls[".rpc.exact"] == {"by": "py", "procedure": t(".rpc.exact")}
    assert calls[".rpc.other"] == {"by": "js", "procedure": t(".rpc.other")}
    assert calls[".rpc.exact.more"] == {"by": "js", "procedure": t(".rpc.exact.more")}
    assert calls[".w.a.z"] == {"by": "js", "procedure": t(".w.a.z")}
    assert calls[".w.b.z"] == {"by": "py", "procedure": t(".w.b.z")}
    assert calls[".nothing.at.all"]["error"] == "wamp.error.no_such_procedure"
    assert out["js_invoked"] == [t(".rpc.other"), t(".rpc.exact.more"), t(".w.a.z")]
    assert py.result()["invoked"] == [t(".proc.a.b"), t(".rpc.exact"), t(".w.b.z")]


def test_black_whitelisting_exclusion_and_disclosure_js_to_python(router, node_script, py_adv):
    base = "com.example.adv.bw"
    a = py_adv(cfg(router, "subscriber", base, "json"))
    b = py_adv(cfg(router, "subscriber", base, "cbor"))
    peers = {}
    for name, child in (("a", a), ("b", b)):
        ready = child.wait_event("ready")
        assert ready["authrole"] == ANON
        peers[name] = {"session": ready["session"], "authid": ready["authid"]}
    assert peers["a"]["authid"] != peers["b"]["authid"]
    js = node_script(SCRIPT, cfg(router, "blackwhite", base, "msgpack", peers=peers))
    out = js.result()
    assert out["acks"] == ["number"] * 10  # every publication acknowledged, none refused

    got = {name: child.result()["events"] for name, child in (("a", a), ("b", b))}
    assert [e["args"][0] for e in got["a"]] == [1, 3, 4, 5, "end"]
    assert [e["args"][0] for e in got["b"]] == [2, 7, 9, "end"]
    assert [e["args"][0] for e in out["events"]] == [4, 5, 7, 9, "end"]

    # disclose_me: true is granted in the development realm; without it nothing is disclosed
    disclosed = {"publisher": out["me"], "publisher_authid": out["authid"], "publisher_authrole": ANON}
    hidden = {"publisher": None, "publisher_authid": None, "publisher_authrole": None}
    for name, events in got.items():
        for e in events:
            expected = disclosed if e["args"][0] in (5, 9) else hidden
            assert {k: e[k] for k in expected} == expected, (name, e)
    for e in out["events"]:
        if e["args"][0] in (5, 9):
            assert e["publisher"] == out["me"] and e["publisher_authrole"] == ANON
        else:
            assert e["publisher"] is None


@pytest.mark.parametrize("leaver", ["js", "py"])
def test_shared_roundrobin_registration_js_and_python_callees(router, node_script, py_adv, leaver):
    base = f"com.example.adv.shared.{leaver}"
    py = py_adv(cfg(router, "shared", base, "cbor"))
    ready = py.wait_event("ready")
    js = node_script(SCRIPT, cfg(router, "shared", base, "json", leaver=leaver,
                                 py={"session": ready["session"]}))
    out = js.result()
    # Python registered first: calls alternate between the two libraries
    assert out["before"] == ["py", "js"] * 3
    for invoke in ("random", "single"):
        assert out["refused"][invoke]["error"] == "wamp.error.procedure_already_exists", invoke
    # after one callee leaves, the other takes every call
    stayer = "py" if leaver == "js" else "js"
    assert out["after"] == [stayer] * 4
    assert out["js_calls"] == (3 if leaver == "js" else 7)
    assert py.result()["calls"] == (7 if leaver == "js" else 3)
    assert out["callee_leave"]["details"]["reason"] == "wamp.close.goodbye_and_out"


def test_progress_cancel_and_timeout_js_caller_python_callee(router, node_script, py_adv):
    base = "com.example.adv.rpc"
    py = py_adv(cfg(router, "rpc", base, "msgpack"))
    py.wait_event("ready")
    js = node_script(SCRIPT, cfg(router, "rpc", base, "json", when_promises=True, call_timeout_ms=300))
    out = js.result()

    # progressive results from Python reach the JS progress handler, then the final result
    assert out["progress"] == {"final": "done", "progress": [
        {"args": [i], "kwargs": {"step": i}} for i in range(3)]}

    # kill: the Python callee is interrupted and the JS caller gets the callee's own error
    assert out["kill"]["error"] == "com.example.stopped_by_interrupt"
    assert out["kill"]["args"] == ["interrupted", "kill"]

    wire = out["wire"]
    def received(request):  # noqa: E306
        return [(d, m[4]) for d, m in wire if m[0] == 8 and m[1] == 48 and m[2] == request]

    sent_cancels = {m[1]: m[2] for d, m in wire if d == "out" and m[0] == 49}
    assert sent_cancels[out["kill"]["request"]] == {"mode": "kill"}
    assert received(out["kill"]["request"]) == [("in", "com.example.stopped_by_interrupt")]
    # skip / killnowait: the router answers wamp.error.canceled at once (autobahn-js
    # rejects locally before it arrives; see tapWire in advanced.js)
    for mode in ("skip", "killnowait"):
        request = out[mode]["request"]
        assert sent_cancels[request] == {"mode": mode}
        assert out[mode]["local"]["error"] == "Cancelled"
        assert received(request) == [("in-after-local-cancel", CANCELED)], mode

    # timeout (ms, from CALL.Options): the router cancels the call in time
    assert out["timeout"]["error"] == CANCELED
    assert 250 <= out["timeout"]["elapsed_ms"] < 3000

    # The callee's log, in order: the ping after each cancel shows whether an
    # INTERRUPT came before it (the router sends in order on one connection).
    assert py.result()["log"] == [
        ["invoked", "kill"], ["interrupted", "kill"], ["ping", "after kill"],
        ["invoked", "skip"], ["ping", "after skip"],  # skip: no INTERRUPT
        ["invoked", "killnowait"], ["interrupted", "killnowait"], ["ping", "after killnowait"],
        ["invoked", "timeout"], ["interrupted", "timeout"], ["ping", "after timeout"],
    ]
