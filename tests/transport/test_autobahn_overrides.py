"""The names we rely on inside Autobahn and Twisted: all there, on the
version setup.cfg allows, and a loud failure when one goes."""

import configparser
from pathlib import Path

import autobahn
import pytest
import pytest_twisted
from autobahn.websocket import protocol as ws_protocol
from autobahn.websocket import xormasker
from autobahn.websocket.protocol import WebSocketProtocol
from packaging.requirements import Requirement
from packaging.version import Version

from relayrouter.transport import autobahn_overrides as overrides
from relayrouter.transport import masking
from tests.support import connect_rawsocket, connect_ws, eventually

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_and_class_name_relied_on_exists():
    assert overrides.missing() == [], (
        f"checked against Autobahn {overrides.CHECKED_AGAINST['autobahn']}, installed {autobahn.__version__}")
    overrides.verify()


def test_a_name_that_goes_is_named_and_stops_the_router(monkeypatch):
    monkeypatch.delattr(WebSocketProtocol, "_dataReceived")
    assert overrides.missing() == ["autobahn.websocket.protocol:WebSocketProtocol._dataReceived"]
    with pytest.raises(RuntimeError, match="WebSocketProtocol._dataReceived.*autobahn_overrides.py"):
        overrides.verify()


def test_a_parameter_that_goes_is_named(monkeypatch):
    factory = ws_protocol.WebSocketServerFactory
    monkeypatch.setattr(factory, "setProtocolOptions", lambda self, **options: None)
    assert overrides.missing() == [
        "autobahn.websocket.protocol:WebSocketServerFactory.setProtocolOptions(allowNullOrigin)"]


def test_setup_cfg_bounds_autobahn_to_the_series_checked():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    [line] = [r for r in parser["options"]["install_requires"].split("\n") if r.strip().startswith("autobahn")]
    specifier = Requirement(line.strip()).specifier
    checked = Version(overrides.CHECKED_AGAINST["autobahn"])
    assert checked in specifier
    assert any(s.operator in ("<", "<=", "~=", "==") for s in specifier), f"no upper bound in {line}"
    assert Version(autobahn.__version__) in specifier


# ---------------------------------------------------------------- the masker


def test_masker_replaces_only_autobahns_own(monkeypatch):
    monkeypatch.setattr(ws_protocol, "create_xor_masker", xormasker.create_xor_masker)
    assert overrides.install_masker() is True
    assert ws_protocol.create_xor_masker is masking.create_xor_masker
    assert overrides.install_masker() is True  # once is enough; twice changes nothing

    def someone_elses(mask, length=None):
        return xormasker.create_xor_masker(mask, length)

    monkeypatch.setattr(ws_protocol, "create_xor_masker", someone_elses)
    assert overrides.install_masker() is False
    assert ws_protocol.create_xor_masker is someone_elses


def test_cached_bytes_are_what_serialize_made_for_that_serializer():
    from autobahn.wamp import message as m
    from autobahn.wamp.serializer import JsonObjectSerializer, MsgPackObjectSerializer

    event, json, msgpack = m.Event(1, 2, args=["x"]), JsonObjectSerializer(), MsgPackObjectSerializer()
    assert overrides.cached_bytes(event, json) is None
    made = event.serialize(json)
    assert overrides.cached_bytes(event, json) is made
    assert overrides.cached_bytes(event, msgpack) is None


# ----------------------------------------------- names on open connections


@pytest_twisted.inlineCallbacks
@pytest.mark.parametrize("kind, connect", [("websocket", connect_ws), ("rawsocket", connect_rawsocket)])
def test_open_connections_carry_every_instance_name_relied_on(running, kind, connect):
    client = yield connect(running, serializer="msgpack")
    try:
        [conn] = running.service.connections()
        assert conn.info.kind == kind
        proto = conn._proto
        assert overrides.missing_on(proto, kind) == []
        assert overrides.wamp_serializer(proto).SERIALIZER_ID == "msgpack"
        assert overrides.object_serializer(overrides.wamp_serializer(proto)) is conn._objser
        assert overrides.peer_of(proto).startswith("tcp4:127.0.0.1:")
        assert proto.isOpen()  # Autobahn's check, through the handler we attach
        assert (yield client.call("wamp.session.count")) == 1
    finally:
        client.leave()
    yield eventually(lambda: not running.service.connections())
    assert not proto.isOpen()
