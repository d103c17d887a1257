"""One frozen record of listener settings, from [limits] to every connection."""

import dataclasses

import pytest
import pytest_twisted

from relayrouter import config as cfg
from relayrouter.config.limits import ListenerSettings
from tests.support import connect_rawsocket, connect_ws


def test_limits_are_the_listener_settings_and_frozen():
    limits = cfg.parse({"limits": {"hello_timeout": 3, "heartbeat_interval": 5, "heartbeat_timeout": 7,
                                   "max_depth": 50, "rawsocket_ping": True}}).limits
    assert isinstance(limits, ListenerSettings)
    assert (limits.hello_timeout, limits.max_depth, limits.rawsocket_ping) == (3.0, 50, True)
    assert limits.stall_timeout == 12.0
    assert ListenerSettings(heartbeat_interval=0).stall_timeout is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.hello_timeout = 1


@pytest_twisted.inlineCallbacks
def test_every_listener_and_connection_reads_the_one_record(running):
    limits = running.service.config.limits
    assert [f.settings for f in running.service.wamp_factories] == [limits, limits]
    assert all(f.settings is limits for f in running.service.wamp_factories)
    sessions = [(yield connect_ws(running)), (yield connect_rawsocket(running))]
    try:
        assert [c._settings is limits for c in running.service.connections()] == [True, True]
    finally:
        for session in sessions:
            session.leave()
