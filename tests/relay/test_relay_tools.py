"""relayrouter host (a command, a TCP port) and relayrouter file (log, SIGHUP, play)."""

import os
import re
import signal
import sys

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor

from ..ports import free_port
from ..support import eventually
from .support import Tool, connect_topic, practable_token, relay_config, start, stop

TIMEOUT = 30


@pytest.fixture
def router(monkeypatch, tmp_path):
    running = pytest_twisted.blockon(start(relay_config(monkeypatch, stats_interval=0), tmp_path / "state"))
    yield running
    pytest_twisted.blockon(stop(running))


def session_url(router, topic="pend00"):
    return f"{router.http_url}/session/{topic}"


def tool_env(topic="pend00", booking_id="host-1", **kw):
    return {"RELAYROUTER_TOKEN": practable_token(topic=topic, booking_id=booking_id, **kw)}


def running_tools(router, count):
    return eventually(lambda: len(router.service.relay.peers) >= count, seconds=TIMEOUT)


@pytest_twisted.inlineCallbacks
def test_host_streams_a_command_and_takes_commands_back(router, tmp_path):
    script = tmp_path / "expt.py"
    script.write_text(
        "import sys\n"
        "print('ready', flush=True)\n"
        "for line in sys.stdin:\n"
        "    print('got: ' + line.strip(), flush=True)\n")
    page = yield connect_topic(router, booking_id="page")
    host = Tool(["host", "--session", session_url(router), "--command", f"{sys.executable} -u {script}"],
                tool_env())
    try:
        yield running_tools(router, 2)
        # "ready" may have been printed before the relay side was up (then it was
        # dropped): ask until the command answers.
        frame = None
        while frame != "got: set 1":
            page.send_text("set 1")
            try:
                frame = yield page.next(timeout=2)
            except defer.TimeoutError:
                continue
            assert frame in ("ready", "got: set 1"), frame
        page.send_text("set 2")
        frame = yield page.next(timeout=TIMEOUT)
        while frame != "got: set 2":  # answers to the repeated asks may still come first
            assert frame in ("ready", "got: set 1"), frame
            frame = yield page.next(timeout=TIMEOUT)
    finally:
        host.stop()


class _Device(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"\x00hello\xff")

    def dataReceived(self, data):
        self.transport.write(data.upper())


@pytest_twisted.inlineCallbacks
def test_host_streams_a_tcp_port_both_ways_binary(router):
    port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(_Device))
    page = yield connect_topic(router, booking_id="page")
    host = Tool(["host", "--session", session_url(router), "--tcp", f"127.0.0.1:{port.getHost().port}"],
                tool_env())
    try:
        yield running_tools(router, 2)
        # The device spoke when the host connected to it; that may have been before the
        # relay side was up (dropped), so ask it again.
        page.send_binary(b"abc")
        frame = yield page.next(timeout=TIMEOUT)
        while frame != b"ABC":
            assert frame == b"\x00hello\xff"
            frame = yield page.next(timeout=TIMEOUT)
    finally:
        host.stop()
        yield port.stopListening()


STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"


@pytest_twisted.inlineCallbacks
def test_file_logs_with_timestamps_and_reopens_on_sighup(router, tmp_path):
    log = tmp_path / "stream.log"
    tool = Tool(["file", "--session", session_url(router), "--log", str(log)], tool_env(scopes=("read",)))
    try:
        yield running_tools(router, 1)
        expt = yield connect_topic(router, booking_id="expt")
        expt.send_text('{"v":1}')
        expt.send_binary(b"\x01\x02")
        yield eventually(lambda: log.exists() and log.read_text().count("\n") == 2, seconds=TIMEOUT)
        lines = log.read_text().splitlines()
        assert re.fullmatch(STAMP + r' \{"v":1\}', lines[0]), lines
        assert re.fullmatch(STAMP + r" \[binary 2 bytes\] AQI=", lines[1]), lines
        os.rename(log, tmp_path / "stream.log.1")
        tool.signal(signal.SIGHUP)
        yield eventually(lambda: log.exists(), seconds=TIMEOUT)
        expt.send_text("after rotation")
        yield eventually(lambda: "after rotation" in log.read_text(), seconds=TIMEOUT)
        assert "after rotation" not in (tmp_path / "stream.log.1").read_text()
    finally:
        tool.stop()


PLAY = """\
# a comment that is not echoed
#+ starting
go
<'^foo',2,20s> after-foos
[50ms] delayed
|deny> secret
<'^end',1,20s>
#+ done
"""


@pytest_twisted.inlineCallbacks
def test_file_plays_a_script_waits_for_a_regex_and_filters(router, tmp_path):
    script = tmp_path / "test.play"
    script.write_text(PLAY)
    log = tmp_path / "play.log"
    expt = yield connect_topic(router, booking_id="expt")
    tool = Tool(["file", "--session", session_url(router), "--log", str(log), "--play", str(script)],
                tool_env())
    try:
        assert (yield expt.next(timeout=TIMEOUT)) == "go"
        expt.send_text("foo 1")
        expt.send_text("bar")
        assert not expt.factory.inbox  # still waiting: one foo so far
        expt.send_text("foo 2")
        assert (yield expt.next(timeout=TIMEOUT)) == "after-foos"
        assert (yield expt.next(timeout=TIMEOUT)) == "delayed"
        expt.send_text("a secret line")
        expt.send_text("end")
        yield eventually(lambda: tool.proc.poll() is not None, seconds=TIMEOUT)
        assert tool.proc.returncode == 0, tool.stderr()
        text = log.read_text()
        assert [line.split(" ", 1)[1] for line in text.splitlines()] == [
            "starting", "foo 1", "bar", "foo 2", "end", "done"]
    finally:
        tool.stop()


def test_file_check_reports_bad_lines(tmp_path):
    bad = tmp_path / "bad.play"
    bad.write_text("ok\n[10 parsecs] x\n")
    tool = Tool(["file", "--play", str(bad), "--check"])
    assert tool.proc.wait(30) == 2
    assert "line 2: '10 parsecs' is not a duration" in tool.stderr()
    good = tmp_path / "good.play"
    good.write_text(PLAY)
    tool = Tool(["file", "--play", str(good), "--check"])
    assert tool.proc.wait(30) == 0 and "7 steps" in tool.stdout()


def test_token_file_with_loose_permissions_is_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text(practable_token())
    os.chmod(path, 0o644)
    tool = Tool(["file", "--session", "http://127.0.0.1:9/session/x", "--token-file", str(path)])
    assert tool.proc.wait(30) == 2
    assert "accessible by group or others" in tool.stderr() and "chmod 600" in tool.stderr()
    tool = Tool(["file", "--session", "http://127.0.0.1:9/session/x"], {"RELAYROUTER_TOKEN": ""})
    assert tool.proc.wait(30) == 2 and "no token" in tool.stderr()


@pytest_twisted.inlineCallbacks
def test_host_streams_a_device_file_both_ways(router):
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)  # a serial line: no echo, no line editing
    path = os.ttyname(slave)
    page = yield connect_topic(router, booking_id="page")
    host = Tool(["host", "--session", session_url(router), "--device", path, "--mode", "text"], tool_env())
    try:
        yield running_tools(router, 2)
        page.send_text("M114")
        got = b""
        while b"M114\n" not in got:
            yield eventually(lambda: _readable(master), seconds=TIMEOUT)
            got += os.read(master, 1024)
        os.write(master, b"ok T:21.5\n")
        assert (yield page.next(timeout=TIMEOUT)) == "ok T:21.5"
    finally:
        host.stop()
        os.close(master)
        os.close(slave)


def _readable(fd) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


@pytest_twisted.inlineCallbacks
def test_host_streams_a_local_websocket_both_ways(router):
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    class Local(WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload.upper(), isBinary)

    factory = WebSocketServerFactory()
    factory.protocol = Local
    port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    page = yield connect_topic(router, booking_id="page")
    host = Tool(["host", "--session", session_url(router), "--websocket",
                 f"ws://127.0.0.1:{port.getHost().port}/"], tool_env())
    try:
        yield running_tools(router, 2)
        frame = None
        while frame != "PING":  # until the host's local WebSocket is up too
            page.send_text("ping")
            try:
                frame = yield page.next(timeout=1)
            except defer.TimeoutError:
                continue
    finally:
        host.stop()
        yield port.stopListening()


@pytest_twisted.inlineCallbacks
def test_file_binary_mode_writes_frames_as_they_came(router, tmp_path):
    log = tmp_path / "video.ts"
    tool = Tool(["file", "--session", session_url(router), "--log", str(log), "--mode", "binary"],
                tool_env(scopes=("read",)))
    try:
        yield running_tools(router, 1)
        expt = yield connect_topic(router, booking_id="expt")
        expt.send_binary(b"\x47\x00\x01")
        expt.send_text("ab")
        yield eventually(lambda: log.exists() and log.read_bytes() == b"\x47\x00\x01ab", seconds=TIMEOUT)
    finally:
        tool.stop()


@pytest_twisted.inlineCallbacks
def test_host_reconnects_after_the_router_restarts(monkeypatch, tmp_path):
    port = free_port()
    config = relay_config(monkeypatch, stats_interval=0)
    config["listeners"] = [{"type": "websocket", "endpoint": f"tcp:{port}:interface=127.0.0.1"}]
    first = yield start(config, tmp_path / "state")
    host = Tool(["host", "--session", f"http://127.0.0.1:{port}/session/pend00", "--command",
                 f"{sys.executable} -u -c \"import sys\nfor l in sys.stdin: print('got ' + l.strip(), flush=True)\""],
                tool_env())
    try:
        yield running_tools(first, 1)
        yield stop(first)
        second = yield start(config, tmp_path / "state")
        try:
            yield running_tools(second, 1)  # the host came back by itself
            page = yield connect_topic(second, booking_id="page")
            page.send_text("after restart")
            assert (yield page.next(timeout=TIMEOUT)) == "got after restart"
        finally:
            yield stop(second)
    finally:
        host.stop()
