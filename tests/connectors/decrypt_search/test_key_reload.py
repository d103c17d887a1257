"""SIGHUP reloads the keys: a running connector rotates to a new key pair without a restart (its key record
announced in the directory), and a file it cannot use leaves the keys in use as they were."""

import signal
import time

import pytest_twisted
from autobahn.wamp.types import SubscribeOptions
from twisted.internet import defer, reactor, task

from connectors.decrypt_search import keyring
from relayrouter import e2e
from relayrouter.e2e.keys import fingerprint
from relayrouter.e2e.wamp import enable_payload_passthru

from ..processes import RouterProcess
from .support import (ROUTER_TOML, SUPPLIER, TICKETS, Connector, World, connect_publisher, connect_ws_url, get, post,
                      until_stored)
from .test_end_to_end import doc
from .test_key_directory import DIRECTORY_HISTORY, directory_toml, logged
from .test_key_rotation import new_pair, publish


@pytest_twisted.inlineCallbacks
def test_sighup_rotates_our_keys_live_and_announces_them(tmp_path):
    world = World(tmp_path)
    router = RouterProcess(tmp_path, ROUTER_TOML + DIRECTORY_HISTORY,
                           env={"ACME_TICKET": TICKETS["acme"], "GLOBEX_TICKET": TICKETS["globex"]})
    router.start()
    acme1, supplier = world.keys["acme"], world.keys[SUPPLIER]
    acme = Connector(tmp_path, world, "acme", router)
    config = acme.dir / "decrypt-search.toml"
    config.write_text(directory_toml(world, "acme", {}))
    envelopes, records = [], []
    watcher = publisher = None
    try:
        watcher = yield connect_ws_url(router)
        enable_payload_passthru(watcher)
        yield watcher.subscribe(lambda envelope, **_: envelopes.append(e2e.parse(envelope)), "com.orders.",
                                options=SubscribeOptions(match="prefix"))
        yield watcher.subscribe(lambda event, **_: records.append(event), "com.keys.acme")
        publisher = yield connect_publisher(router)
        acme.start()
        yield logged(acme, "key directory: published our key record seq 1")
        yield until(lambda: records)
        first = keyring.parse_event([records[0]], "acme")

        # a file that retires the key it makes current is refused: the keys in use stay, the process goes on
        acme2 = new_pair(world, "acme", "acme-2")
        config.write_text(directory_toml(world, "acme", {}, key="acme-2.key", previous=["acme.key"],
                                         retired=[acme2.public.signing_kid]))
        acme.proc.send_signal(signal.SIGHUP)
        yield logged(acme, "SIGHUP: keys not reloaded, those in use stay: organisation.retired_keys: "
                           f"{acme2.public.signing_kid} is our current key")
        status = yield get(acme, "/status")
        assert status["keys"]["current"]["signing_kid"] == acme1.public.signing_kid

        # the rotation, live: new records are signed with the new pair, what was sealed for the old one opens
        config.write_text(directory_toml(world, "acme", {}, key="acme-2.key", previous=["acme.key"]) +
                          '\n[catchup]\npage = 250\n')
        acme.proc.send_signal(signal.SIGHUP)
        yield logged(acme, f"SIGHUP: keys reloaded: signing key {acme2.public.signing_kid}")
        yield logged(acme, "SIGHUP: catchup_page changed as well; they take effect at the next restart")
        yield logged(acme, "key directory: published our key record seq 2")
        status = yield get(acme, "/status")
        assert status["keys"]["current"] == {"encryption_kid": acme2.public.encryption_kid,
                                             "signing_kid": acme2.public.signing_kid}
        assert status["keys"]["previous"] == [{"encryption_kid": acme1.public.encryption_kid,
                                               "signing_kid": acme1.public.signing_kid}]
        yield publish(publisher, supplier, [acme1], doc(1, 10.0, "new", "Lyon", "for the old key spruce"))
        yield publish(publisher, supplier, [acme2], doc(2, 20.0, "new", "Lyon", "for the new key spruce"))
        sent = yield post(acme, "/publish", {"topic": "com.orders.own",
                                             "document": doc(3, 30.0, "paid", "Nice", "ours spruce")})
        yield until_stored(acme, 3)
        ours = [p for p in envelopes if p.message_id.hex() == sent["message_id"]]
        assert len(ours) == 1 and ours[0].sender_kid == acme2.public.signing_kid

        # the announcement: seq 2, current the new pair, signed by the old key too, so a pin of it follows
        yield until(lambda: len(records) >= 2)
        second = keyring.parse_event([records[-1]], "acme")
        assert (second.seq, second.current.signing_kid) == (2, acme2.public.signing_kid)
        pins = frozenset({fingerprint(acme1.public.signing)})
        assert keyring.verify(first, None, pins, "pinned") is True
        assert keyring.verify(second, first, frozenset(), "pinned") is True
        assert acme.output().count("starting up") == 1  # the same process throughout
    finally:
        for session in (publisher, watcher):
            if session is not None:
                session.leave()
        acme.stop()
        router.stop()


@defer.inlineCallbacks
def until(condition, seconds: float = 15.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        yield task.deferLater(reactor, 0.05, lambda: None)
