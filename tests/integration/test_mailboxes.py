"""Mailboxes end to end: a real router (in-process, and as a twistd process
killed with -9), Autobahn-Python senders and owners, HTTP senders by treq."""

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import tempfile
import time
import uuid

import pytest
import pytest_twisted
import treq
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, PublishOptions
from twisted.internet import defer, reactor, threads

from relayrouter import config as cfg

from ..support import Client, connect_ws, eventually, start_router, within
from .test_twistd import read_until, stop, twistd, URL

SECRETS = {"RR_TEST_SENDER": "sender-secret-1", "RR_TEST_AGENTB": "agentb-secret-1",
           "RR_TEST_OPS": "ops-secret-12345", "RR_TEST_MAILBOX_SECRET": "mailbox-token-secret-0123456789"}


def realm_config(**mailbox) -> dict:
    rule = {"uri": "mailbox.{authid}", "token_secret_env": "RR_TEST_MAILBOX_SECRET", **mailbox}
    return {"name": "realm1",
            "auth": {"ticket": {"principals": [
                {"authid": "sender", "role": "user", "secret_env": "RR_TEST_SENDER"},
                {"authid": "agentb", "role": "user", "secret_env": "RR_TEST_AGENTB"},
                {"authid": "ops", "role": "admin", "secret_env": "RR_TEST_OPS"}]}},
            "mailboxes": [rule]}


@pytest.fixture(autouse=True)
def secrets(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def as_user(running, authid, serializer="json"):
    secret = SECRETS[f"RR_TEST_{authid.upper()}"]
    return connect_ws(running, serializer, authmethods=["ticket"], authid=authid, ticket=secret)


class Taker:
    """Runs relayrouter.mailbox.take and collects what arrives."""

    def __init__(self, session, mailbox="mailbox.agentb", max_inflight=32, ack=False):
        self.session = session
        self.mailbox = mailbox
        self.received = []
        self.acked_ids = []  # acknowledged, RESULT received
        self.ack_sent = []  # ack CALL sent (its RESULT may never arrive: kill -9)
        self.ack = ack
        self.waiters = []
        self.call = session.call("relayrouter.mailbox.take", mailbox, max_inflight=max_inflight,
                                 options=CallOptions(on_progress=self._on_message))
        self.call.addErrback(lambda f: None)  # ends with CANCEL, a takeover or a lost connection

    def _on_message(self, message):
        self.received.append(message)
        if self.ack:
            try:
                d = self.session.call("relayrouter.mailbox.ack", self.mailbox, message["id"])
            except Exception:  # noqa: BLE001 - the router is gone (kill -9): not sent
                d = defer.succeed(0)
            else:
                self.ack_sent.append(message["id"])
            d.addCallback(lambda count, i=message["id"]: self.acked_ids.append(i) if count else None)
            d.addErrback(lambda f: None)  # the router may be gone (kill -9)
        for count, d in list(self.waiters):
            if len(self.received) >= count:
                self.waiters.remove((count, d))
                d.callback(None)

    def until(self, count, seconds=20):
        if len(self.received) >= count:
            return defer.succeed(None)
        d = defer.Deferred()
        self.waiters.append((count, d))
        return within(d, seconds)


@defer.inlineCallbacks
def started(realm: dict, state_dir=None):
    data = {"listeners": [{"type": "websocket", "endpoint": "tcp:0:interface=127.0.0.1"}],
            "realms": [realm], "revocation": {"admin_roles": ["admin"]}}
    config = cfg.replace(cfg.parse(data), state_dir=state_dir or tempfile.mkdtemp(prefix="relayrouter-mb-"))
    running = yield start_router(config)
    return running


@pytest_twisted.inlineCallbacks
def test_acknowledged_publish_take_ack_and_stats_with_autobahn():
    running = yield started(realm_config(max_messages=50))
    try:
        sender = yield as_user(running, "sender", "msgpack")
        owner = yield as_user(running, "agentb", "cbor")
        ids = []
        for i in range(5):
            published = yield sender.publish("mailbox.agentb", i, payload=b"\x00\xff" * i,
                                             options=PublishOptions(acknowledge=True))
            ids.append(published.id)
        assert ids == sorted(ids)
        taker = Taker(owner, max_inflight=3)
        yield taker.until(3)
        assert [m["id"] for m in taker.received] == ids[:3]
        assert taker.received[1]["args"] == [1] and taker.received[1]["kwargs"] == {"payload": b"\x00\xff"}
        assert all(m["attempt"] == 1 for m in taker.received)
        count = yield owner.call("relayrouter.mailbox.ack", "mailbox.agentb", upto=ids[1])
        assert count == 2
        yield taker.until(5)
        stats = yield owner.call("relayrouter.mailbox.stats", "mailbox.agentb")
        assert stats["depth"] == 3 and stats["inflight"] == 3 and stats["taking"] is True
        # Nobody else takes or inspects it.
        with pytest.raises(ApplicationError) as refused:
            yield sender.call("relayrouter.mailbox.stats", "mailbox.agentb")
        assert refused.value.error == "wamp.error.not_authorized"
        # Cancelling the take gives back the unacked, attempt + 1, in order.
        taker.call.cancel()
        again = Taker(owner)
        yield again.until(3)
        assert [(m["id"], m["attempt"]) for m in again.received] == [(i, 2) for i in ids[2:]]
        ops = yield as_user(running, "ops")
        everything = yield ops.call("relayrouter.mailbox.stats")
        assert [(s["mailbox"], s["redeliveries"]) for s in everything["mailboxes"]] == [("mailbox.agentb", 3)]
        for session in (sender, owner, ops):
            session.leave()
    finally:
        yield running.service.stopService()


@pytest_twisted.inlineCallbacks
def test_post_to_a_mailbox_over_http():
    running = yield started(realm_config(max_messages=2, max_message_bytes=1000))
    try:
        owner = yield as_user(running, "agentb")
        endpoint = yield owner.call("relayrouter.mailbox.endpoint", "mailbox.agentb")
        url = running.http_url + endpoint["path"]
        # the token rides as the last path segment: no '?' in a URL an agent advertises
        assert endpoint["path"] == f"/mailbox/mailbox.agentb/{endpoint['token']}"
        body = b'{"protected": "...", "ciphertext": "\x00\x01"}'
        response = yield treq.post(url, data=body, headers={"Content-Type": "application/didcomm-envelope-enc"})
        assert response.code == 202
        answer = json.loads((yield response.content()))
        bare = f"{running.http_url}/mailbox/mailbox.agentb"
        by_header = yield treq.post(bare, data=b"second", headers={"Authorization": f"Bearer {endpoint['token']}"})
        assert by_header.code == 202
        refusals = {
            "no credential": (yield treq.post(bare, data=b"x")),
            "wrong token": (yield treq.post(bare + "?token=" + "0" * 64, data=b"x")),
            "wrong token in the path": (yield treq.post(bare + "/" + "0" * 64, data=b"x")),
            "token of another mailbox": (yield treq.post(f"{running.http_url}/mailbox/mailbox.agentc/"
                                                         + endpoint["token"], data=b"x")),
            "not a mailbox": (yield treq.post(f"{running.http_url}/mailbox/other.agentb", data=b"x")),
            "too large": (yield treq.post(url, data=b"x" * 1001)),
            "full": (yield treq.post(url, data=b"x")),
        }
        codes = {why: r.code for why, r in refusals.items()}
        assert codes == {"no credential": 401, "wrong token": 403, "wrong token in the path": 403,
                         "token of another mailbox": 403, "not a mailbox": 404, "too large": 413, "full": 507}
        full = json.loads((yield refusals["full"].content()))
        assert full["error"] == "relayrouter.error.mailbox_full" and "max_messages 2" in full["message"]
        taker = Taker(owner)
        yield taker.until(2)
        first = taker.received[0]
        assert first["id"] == answer["id"]
        assert first["args"] == [body] and first["kwargs"] == {"content_type": "application/didcomm-envelope-enc"}
        assert taker.received[1]["kwargs"] == {"content_type": "application/octet-stream"}
        owner.leave()
    finally:
        yield running.service.stopService()


@pytest_twisted.inlineCallbacks
def test_one_sender_over_http_or_wamp_cannot_fill_another_agents_mailbox():
    """An agent-role credential that may publish on the mailbox prefix, or an
    HTTP client with the (public) endpoint URL, gets its share of the mailbox
    and no more: 429 / relayrouter.error.mailbox_sender_quota, while the
    owner's other senders still get in."""
    running = yield started(realm_config(max_messages=20, max_messages_per_sender=3))
    try:
        owner = yield as_user(running, "agentb")
        sender = yield as_user(running, "sender")
        endpoint = yield owner.call("relayrouter.mailbox.endpoint", "mailbox.agentb")
        url = running.http_url + endpoint["path"]
        for i in range(3):
            yield sender.publish("mailbox.agentb", i, options=PublishOptions(acknowledge=True))
        with pytest.raises(ApplicationError) as refused:
            yield sender.publish("mailbox.agentb", 3, options=PublishOptions(acknowledge=True))
        assert refused.value.error == "relayrouter.error.mailbox_sender_quota"
        codes = []
        for i in range(4):
            response = yield treq.post(url, data=b"from http %d" % i)
            codes.append(response.code)
            answer = json.loads((yield response.content()))
        assert codes == [202, 202, 202, 429]
        assert answer["error"] == "relayrouter.error.mailbox_sender_quota"
        assert "HTTP sender 127.0.0.1 holds 3 messages" in answer["message"]
        taker = Taker(owner, ack=True)
        yield taker.until(6)
        yield eventually(lambda: len(taker.acked_ids) == 6)
        again = yield treq.post(url, data=b"after the owner took them")
        assert again.code == 202
        published = yield sender.publish("mailbox.agentb", 4, options=PublishOptions(acknowledge=True))
        assert published.id
        for session in (owner, sender):
            session.leave()
    finally:
        yield running.service.stopService()


def readme_agent_role() -> dict:
    """The role rule the documentation shows for the mediator proxy's agents."""
    import tomllib

    from ..documentation import page

    section = page("reference/mediator-proxy.md")
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    return tomllib.loads(block)["realms"]["roles"][0]


@pytest_twisted.inlineCallbacks
def test_the_readme_role_lets_an_agent_publish_to_its_own_mailbox_and_named_ones_only(monkeypatch):
    secrets = {"agent-a": "agent-a-secret-1", "agent-b": "agent-b-secret-1", "agent-c": "agent-c-secret-1"}
    for authid, secret in secrets.items():
        monkeypatch.setenv("RR_" + authid.upper().replace("-", "_"), secret)
    realm = {"name": "realm1", "roles": [readme_agent_role()],
             "auth": {"ticket": {"principals": [
                 {"authid": a, "role": "agent", "secret_env": "RR_" + a.upper().replace("-", "_")}
                 for a in secrets]}},
             "mailboxes": [{"uri": "mailbox.{authid}", "token_secret_env": "RR_TEST_MAILBOX_SECRET"}]}
    running = yield started(realm)
    try:
        sessions = {}
        for authid, secret in secrets.items():
            sessions[authid] = yield connect_ws(running, "json", authmethods=["ticket"], authid=authid,
                                                ticket=secret)
        outcomes = {}
        for sender, mailbox in (("agent-b", "mailbox.agent-b"), ("agent-b", "mailbox.agent-a"),
                                ("agent-b", "mailbox.agent-c"), ("agent-c", "mailbox.agent-c"),
                                ("agent-c", "mailbox.agent-b")):
            try:
                yield sessions[sender].publish(mailbox, "hi", options=PublishOptions(acknowledge=True))
                outcomes[(sender, mailbox)] = "put"
            except ApplicationError as e:
                outcomes[(sender, mailbox)] = e.error
        assert outcomes == {("agent-b", "mailbox.agent-b"): "put", ("agent-b", "mailbox.agent-a"): "put",
                            ("agent-b", "mailbox.agent-c"): "wamp.error.not_authorized",
                            ("agent-c", "mailbox.agent-c"): "put",
                            ("agent-c", "mailbox.agent-b"): "wamp.error.not_authorized"}
        endpoint = yield sessions["agent-c"].call("relayrouter.mailbox.endpoint", "mailbox.agent-c")
        assert endpoint["mailbox"] == "mailbox.agent-c"
        for session in sessions.values():
            session.leave()
    finally:
        yield running.service.stopService()


@pytest_twisted.inlineCallbacks
def test_token_as_query_or_path_and_neither_in_the_access_log():
    from relayrouter.transport.http import _access_line

    running = yield started(realm_config())
    try:
        owner = yield as_user(running, "agentb")
        token = (yield owner.call("relayrouter.mailbox.endpoint", "mailbox.agentb"))["token"]
        bare = f"{running.http_url}/mailbox/mailbox.agentb"
        by_query = yield treq.post(f"{bare}?realm=realm1&token={token}", data=b"q")
        by_path = yield treq.post(f"{bare}/{token}?realm=realm1", data=b"p")
        assert (by_query.code, by_path.code) == (202, 202)
        stats = yield owner.call("relayrouter.mailbox.stats", "mailbox.agentb")
        assert stats["depth"] == 2
        owner.leave()
    finally:
        yield running.service.stopService()

    class Request:
        uri = f"/mailbox/mailbox.agentb/{token}?realm=realm1".encode()
        method = b"POST"
        code = 202

        def getClientAddress(self):
            return None

    line = _access_line("now", Request())
    assert token not in line and '"POST /mailbox/mailbox.agentb/-" 202' in line


@pytest_twisted.inlineCallbacks
def test_stats_counters_survive_a_restart():
    state_dir = tempfile.mkdtemp(prefix="relayrouter-mb-")
    realm = realm_config(max_messages=2, overflow="drop-oldest")
    running = yield started(realm, state_dir)
    try:
        sender = yield as_user(running, "sender")
        owner = yield as_user(running, "agentb")
        for seq in range(3):  # the third drops the first
            yield sender.publish("mailbox.agentb", seq, options=PublishOptions(acknowledge=True))
        taker = Taker(owner)
        yield taker.until(2)
        taker.call.cancel()
        again = Taker(owner)
        yield again.until(2)  # both delivered again
        before = yield owner.call("relayrouter.mailbox.stats", "mailbox.agentb")
        assert (before["redeliveries"], before["drops"]) == (2, 1)
        for session in (sender, owner):
            session.leave()
    finally:
        yield running.service.stopService()
    running = yield started(realm, state_dir)
    try:
        owner = yield as_user(running, "agentb")
        after = yield owner.call("relayrouter.mailbox.stats", "mailbox.agentb")
        assert {k: after[k] for k in ("redeliveries", "drops", "expired", "depth")} == {
            "redeliveries": 2, "drops": 1, "expired": 0, "depth": 2}
        owner.leave()
    finally:
        yield running.service.stopService()


def raw_http(port, head: bytes, body: bytes = b"", seconds=20) -> bytes:
    """Sends a request head and (part of) a body on a plain socket, then reads
    the answer without sending more. Runs in a thread (blocking socket)."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        sock.sendall(head + body)
        answer = b""
        while True:
            header, _, rest = answer.partition(b"\r\n\r\n")
            length = re.search(rb"content-length: *(\d+)", header, re.I)
            if length and len(rest) >= int(length.group(1)):
                return answer
            chunk = sock.recv(65536)
            if not chunk:
                return answer
            answer += chunk


def refused_413(answer: bytes) -> dict:
    header, _, body = answer.partition(b"\r\n\r\n")
    assert header.startswith(b"HTTP/1.1 413 "), header
    assert b"100 Continue" not in header
    return json.loads(body)


@pytest_twisted.inlineCallbacks
def test_an_oversized_post_is_refused_before_its_body_is_read():
    running = yield started(realm_config(max_message_bytes=1000))
    try:
        owner = yield as_user(running, "agentb")
        endpoint = yield owner.call("relayrouter.mailbox.endpoint", "mailbox.agentb")
        target = endpoint["path"].encode()
        port = running.ws_port
        # A gigabyte announced: 413 at once, with not one body byte sent.
        for expect in (b"", b"Expect: 100-continue\r\n"):
            head = (b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n" + expect
                    + b"Content-Length: 1073741824\r\n\r\n")
            answer = yield threads.deferToThread(raw_http, port, head)
            refusal = refused_413(answer)
            assert refusal["error"] == "relayrouter.error.mailbox_message_too_large"
            assert refusal["message"] == ("the body is 1073741824 bytes; max_message_bytes of mailbox "
                                          "'mailbox.agentb' is 1000 bytes")
        # Chunked, no length: refused once past the bound, the body never finished.
        head = b"POST " + target + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunk = b"%x\r\n%s\r\n" % (600, b"c" * 600)
        answer = yield threads.deferToThread(raw_http, port, head, chunk * 2)
        refusal = refused_413(answer)
        assert refusal["message"] == ("the chunked body went past 1000 bytes; max_message_bytes of mailbox "
                                      "'mailbox.agentb' is 1000 bytes")
        # An HTTP client sending 64 MiB gets the answer too.
        response = yield treq.post(running.http_url + endpoint["path"], data=b"x" * (64 * 1024 * 1024))
        assert response.code == 413
        assert (yield response.json())["error"] == "relayrouter.error.mailbox_message_too_large"
        # Not a mailbox: still bounded (by the largest max_message_bytes), then 404 if within it.
        answer = yield threads.deferToThread(
            raw_http, port, b"POST /mailbox/other.x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        refused_413(answer)
        small = yield treq.post(f"{running.http_url}/mailbox/other.x", data=b"x" * 10)
        assert small.code == 404
        # Within the bound: stored as before; nothing of the refused ones was.
        fits = yield treq.post(running.http_url + endpoint["path"], data=b"y" * 1000)
        assert fits.code == 202
        stats = yield owner.call("relayrouter.mailbox.stats", "mailbox.agentb")
        assert stats["depth"] == 1
        owner.leave()
    finally:
        yield running.service.stopService()


# ------------------------------------------------------------ kill -9


def write_config(tmp_path, dsn=None, history=False) -> str:
    realm = realm_config(max_messages=100000, max_bytes=500_000_000)
    lines = ["[storage]", f'dsn = "{dsn}"', ""] if dsn else []
    lines += ['[[listeners]]', 'type = "websocket"', 'endpoint = "tcp:0:interface=127.0.0.1"', "",
              "[[realms]]", f'name = "{realm["name"]}"', "[realms.auth.ticket]"]
    for p in realm["auth"]["ticket"]["principals"]:
        lines += ["[[realms.auth.ticket.principals]]", f'authid = "{p["authid"]}"', f'role = "{p["role"]}"',
                  f'secret_env = "{p["secret_env"]}"']
    lines += ["[[realms.mailboxes]]", 'uri = "mailbox.{authid}"', "max_messages = 100000",
              "max_bytes = 500000000", 'token_secret_env = "RR_TEST_MAILBOX_SECRET"']
    if history:
        lines += ["[[realms.history]]", 'uri = "news."', 'match = "prefix"', "limit = 1000"]
    path = tmp_path / "router.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


PG_SERVER = os.environ.get("RELAYROUTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture
def pg_dsn():
    """A PostgreSQL database of this test's own, dropped at the end."""
    import psycopg

    name = f"relayrouter_it_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_SERVER}/{name}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_count(dsn, table) -> int:
    import psycopg

    with psycopg.connect(dsn) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


@defer.inlineCallbacks
def start_process(config_path, state_dir):
    proc = twistd("--config", config_path, "--state-dir", state_dir)  # secrets: the env (fixture)
    match, _ = yield threads.deferToThread(read_until, proc, URL)
    return proc, int(match.group(2))


class Address:
    def __init__(self, port):
        self.ws_port = port
        self.ws_url = f"ws://127.0.0.1:{port}/ws"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest_twisted.inlineCallbacks
def test_kill_minus_9_loses_nothing_acknowledged_and_brings_back_nothing_acked(tmp_path, request, backend):
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgresql" else None
    config_path = write_config(tmp_path, dsn)
    state_dir = str(tmp_path / "state")
    proc, port = yield start_process(config_path, state_dir)
    try:
        sender = yield as_user(Address(port), "sender")
        owner = yield as_user(Address(port), "agentb")
        taker = Taker(owner, max_inflight=16, ack=True)
        published = {}  # seq -> message id, PUBLISHED received
        killed = defer.Deferred()

        def publish(seq):
            d = defer.maybeDeferred(sender.publish, "mailbox.agentb", seq,
                                    options=PublishOptions(acknowledge=True))
            d.addCallback(lambda p: published.__setitem__(seq, p.id))
            d.addErrback(lambda f: None)  # in flight when the router died
            return d

        @defer.inlineCallbacks
        def flood():
            seq = 0
            while not killed.called:
                yield defer.DeferredList([publish(seq + i) for i in range(32)])
                seq += 32
                if len(published) >= 400 and len(taker.acked_ids) >= 100 and not killed.called:
                    # Mid-stream: publishes and acks are in flight right now.
                    for i in range(32):
                        publish(seq + i)
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.callback(None)

        flood().addErrback(lambda f: killed.called or killed.errback(f))
        yield within(killed, 60)
        yield threads.deferToThread(proc.wait, 20)
        acked = set(taker.acked_ids)
        # Acks the owner sent whose RESULT did not arrive before the kill: the
        # router may have committed them (the RESULT was on the wire, or the
        # kernel dropped it with the connection) or not. Either outcome is
        # right, so these messages may or may not come back.
        in_doubt = set(taker.ack_sent) - acked
    finally:
        stop(proc)
    proc, port = yield start_process(config_path, state_dir)
    try:
        owner = yield as_user(Address(port), "agentb")
        stats = yield owner.call("relayrouter.mailbox.stats", "mailbox.agentb")
        after = Taker(owner, max_inflight=1000)
        yield after.until(stats["depth"], 60)
        came_back = {m["id"]: m["args"][0] for m in after.received}
        assert not acked & set(came_back), "an acknowledged message came back"
        still_expected = {seq: message_id for seq, message_id in published.items()
                          if message_id not in acked and message_id not in in_doubt}
        lost = sorted(message_id for seq, message_id in still_expected.items()
                      if came_back.get(message_id) != seq)
        assert not lost, (f"a message acknowledged to its sender was lost: ids {lost} "
                          f"({len(published)} published, {len(acked)} acked, in doubt {sorted(in_doubt)})")
        # Whatever came back is what was stored under its ID (in-flight puts may be there too).
        by_id = {message_id: seq for seq, message_id in published.items()}
        assert all(by_id.get(i, seq) == seq for i, seq in came_back.items())
        ids = [m["id"] for m in after.received]
        assert ids == sorted(ids)  # in order
        owner.leave()
    finally:
        stop(proc)


def wait_until_deleted(database, message_id, seconds=30):
    """Polls the router's SQLite file (another connection: committed state
    only) until the message's row is gone."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            row = connection.execute("SELECT count(*) FROM mailbox_messages WHERE id = ?",
                                     (message_id,)).fetchone()
        finally:
            connection.close()
        if row[0] == 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"message {message_id} still stored {seconds} s after its ack")


def stored_ids_without_the_wal(database, tmp_path) -> list:
    """Message IDs in the main database file alone (a copy, without its -wal)."""
    alone = tmp_path / "main-file-only.sqlite3"
    shutil.copyfile(database, alone)
    connection = sqlite3.connect(alone)
    try:
        return [row[0] for row in connection.execute("SELECT id FROM mailbox_messages")]
    except sqlite3.OperationalError:  # not even the table: everything is in the WAL
        return []
    finally:
        connection.close()


@pytest_twisted.inlineCallbacks
def test_an_ack_committed_but_never_answered_stays_acked_after_kill_minus_9(tmp_path):
    """The window the kill -9 test must allow for: the router committed an
    owner's ack, then died before the ack's RESULT reached the owner. That
    message is acknowledged (it never comes back); the one whose ack was never
    sent comes back. So an ack without its RESULT is in doubt, not "not acked"."""
    config_path = write_config(tmp_path)
    state_dir = tmp_path / "state"
    proc, port = yield start_process(config_path, str(state_dir))
    try:
        sender = yield as_user(Address(port), "sender")
        owner = yield as_user(Address(port), "agentb")
        ids = []
        for seq in range(2):
            published = yield sender.publish("mailbox.agentb", seq, options=PublishOptions(acknowledge=True))
            ids.append(published.id)
        taker = Taker(owner)
        yield taker.until(2)
        # The owner stops reading: the ack goes out, its RESULT is never read.
        owner._transport.transport.pauseProducing()
        answers = []
        owner.call("relayrouter.mailbox.ack", "mailbox.agentb", ids[0]).addBoth(answers.append)
        yield threads.deferToThread(wait_until_deleted, state_dir / "relayrouter.sqlite3", ids[0])
        os.kill(proc.pid, signal.SIGKILL)
        yield threads.deferToThread(proc.wait, 20)
        owner._transport.transport.abortConnection()
        yield within(owner.disconnected)
        # (Autobahn leaves a call pending when its connection goes: no answer at all.)
        assert not [a for a in answers if isinstance(a, int)], "the ack's RESULT was read"
        # The killed router never checkpointed: the main file alone does not
        # have the kept message, only its write-ahead log does -- which the
        # restart must (and does, below) read.
        assert stored_ids_without_the_wal(state_dir / "relayrouter.sqlite3", tmp_path) == []
    finally:
        stop(proc)
    proc, port = yield start_process(config_path, str(state_dir))
    try:
        owner = yield as_user(Address(port), "agentb")
        after = Taker(owner)
        yield after.until(1)
        stats = yield owner.call("relayrouter.mailbox.stats", "mailbox.agentb")
        assert stats["depth"] == 1
        assert [(m["id"], m["args"], m["attempt"]) for m in after.received] == [(ids[1], [1], 2)]
        owner.leave()
    finally:
        stop(proc)


@defer.inlineCallbacks
def read_history(session, after=None):
    events = []
    while True:
        page = yield session.call("relayrouter.history.read", "news.", match="prefix", after=after, limit=7)
        events += page["events"]
        if not page["more"]:
            return events
        after = page["events"][-1]["publication"]


@pytest_twisted.inlineCallbacks
def test_postgresql_backend_through_the_router_process(tmp_path, pg_dsn):
    """[storage] dsn: mailbox put (WAMP and HTTP), take, ack and history reads
    through a real router process on PostgreSQL, across kill -9 and a restart."""
    config_path = write_config(tmp_path, pg_dsn, history=True)
    state_dir = str(tmp_path / "state")
    proc, port = yield start_process(config_path, state_dir)
    try:
        sender = yield as_user(Address(port), "sender", "msgpack")
        owner = yield as_user(Address(port), "agentb", "cbor")
        ids = []
        for seq in range(5):
            published = yield sender.publish("mailbox.agentb", seq, blob=b"\x00\xff",
                                             options=PublishOptions(acknowledge=True))
            ids.append(published.id)
        endpoint = yield owner.call("relayrouter.mailbox.endpoint", "mailbox.agentb")
        posted = yield treq.post(f"http://127.0.0.1:{port}{endpoint['path']}", data=b"\x01 over http",
                                 headers={"Content-Type": "application/didcomm-envelope-enc"})
        assert posted.code == 202
        ids.append((yield posted.json())["id"])
        assert ids == sorted(ids)
        news = []
        for i in range(20):
            published = yield sender.publish("news.a" if i % 3 else "news.b", i, options=PublishOptions(acknowledge=True))
            news.append(published.id)
        taker = Taker(owner)
        yield taker.until(6)
        assert [m["id"] for m in taker.received] == ids
        assert (yield owner.call("relayrouter.mailbox.ack", "mailbox.agentb", upto=ids[1])) == 2
        # Read back (the read queues behind the appends): what a reader saw is committed.
        kept = yield read_history(owner)
        assert [e["publication"] for e in kept] == news and kept[4]["args"] == [4]
        assert (yield threads.deferToThread(pg_count, pg_dsn, "mailbox_messages")) == 4
        assert (yield threads.deferToThread(pg_count, pg_dsn, "history")) == 20
        os.kill(proc.pid, signal.SIGKILL)
        yield threads.deferToThread(proc.wait, 20)
    finally:
        stop(proc)
    proc, port = yield start_process(config_path, state_dir)
    try:
        sender = yield as_user(Address(port), "sender")
        owner = yield as_user(Address(port), "agentb")
        after = Taker(owner)
        yield after.until(4)
        assert [(m["id"], m["attempt"]) for m in after.received] == [(i, 2) for i in ids[2:]]
        assert after.received[0]["args"] == [2] and after.received[0]["kwargs"] == {"blob": b"\x00\xff"}
        assert after.received[-1]["args"] == [b"\x01 over http"]
        assert after.received[-1]["kwargs"] == {"content_type": "application/didcomm-envelope-enc"}
        again = yield read_history(owner)
        assert again == kept
        assert (yield read_history(owner, after=news[15])) == kept[16:]
        # IDs go on from the store's reservation: none handed out twice.
        published = yield sender.publish("mailbox.agentb", "new", options=PublishOptions(acknowledge=True))
        assert published.id > max(ids)
        yield after.until(5)
        assert (yield owner.call("relayrouter.mailbox.ack", "mailbox.agentb", upto=published.id)) == 5
        assert (yield threads.deferToThread(pg_count, pg_dsn, "mailbox_messages")) == 0
        owner.leave()
        sender.leave()
    finally:
        stop(proc)
