"""The signed key directory: each organisation's connector publishes its key record on the router, the others
pin and verify it (pinned fingerprints, or trust on first use when asked), follow rotations it announces and
refuse what does not verify; the router sees public keys and signatures only.  The rules in process, then
with the real router and two organisations' connectors."""

import base64
import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import pytest_twisted
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer, reactor, task

from connectors.decrypt_search import config as cfg
from connectors.decrypt_search import ingest, keyring
from relayrouter import e2e
from relayrouter.e2e.keys import FileKeys, fingerprint, write_private
from relayrouter.e2e.wamp import publish_envelope

from ..processes import RouterProcess
from .support import (ROUTER_TOML, TICKETS, Connector, World, config_dict, connect_publisher, connector_toml, get,
                      org_keys, post, until_stored)
from .test_end_to_end import doc

KEYS = org_keys()
FIXTURES = Path(__file__).parent / "fixtures"


def event(org, seq, current, previous=(), retired=(), signers=None, issued=1.0):
    data = keyring.build(org, seq, issued, current.public, [p.public for p in previous], retired)
    return keyring.sign(data, signers if signers is not None else [current, *previous])


def check(ev, org="globex", last=None, pins=frozenset(), trust="pinned"):
    record = keyring.parse_event([ev], org)
    return record, keyring.verify(record, last, pins, trust)


def test_a_pinned_first_record_then_a_rotation_signed_by_the_old_key():
    old, new = KEYS["globex"], FileKeys.generate("globex")
    pins = frozenset({fingerprint(old.public.signing)})
    first, taken = check(event("globex", 1, old), pins=pins)
    assert taken is True
    assert check(event("globex", 1, old), last=first, pins=pins)[1] is False  # the same again: a duplicate
    second, taken = check(event("globex", 2, new, previous=[old]), last=first, pins=pins)
    assert taken is True and second.current.signing_kid == new.public.signing_kid
    # the next one needs only the new key: the accepted record vouches for it
    third, taken = check(event("globex", 3, new, retired=[old.public.signing_kid, old.public.encryption_kid]),
                         last=second)
    assert taken is True and old.public.signing_kid in third.retired


@pytest.mark.parametrize("case, message", [
    ("unpinned", "globex's record seq 1 is signed by no pinned key of globex"),
    ("self-unsigned", "globex's record seq 1 is not signed by its own current key"),
    ("older", "globex's record seq 1 is older than the accepted seq 2"),  # StaleRecord: ignored, counted
    ("equivocation", "globex's record seq 2 is the same seq as the accepted seq 2"),
    ("unvouched", "globex's record seq 3 is signed by no key its accepted seq 2 or a pin vouches for"),
    ("unretire", "uses key"),
    ("other org", "the record is 'initech''s, published on 'globex''s topic"),
    ("tampered", "is not signed by its own current key"),
    ("not canonical", "not in canonical form"),
    ("shape", "a key record event has exactly the keys record and signatures"),
    ("nested deep", "the record is not JSON"),  # anyone who may publish on the topic: was a RecursionError
])
def test_refused_records_say_why(case, message):
    old, new, mallory = KEYS["globex"], FileKeys.generate("globex"), FileKeys.generate("globex")
    pins = frozenset({fingerprint(old.public.signing)})
    accepted = keyring.parse_event([event("globex", 2, old)], "globex")
    retiring = keyring.parse_event([event("globex", 2, old, retired=[new.public.signing_kid])], "globex")
    cases = {
        "unpinned": lambda: check(event("globex", 1, mallory)),
        "self-unsigned": lambda: check(event("globex", 1, new, signers=[old]), pins=pins),
        "older": lambda: check(event("globex", 1, old), last=accepted, pins=pins),
        "equivocation": lambda: check(event("globex", 2, old, issued=5.0), last=accepted, pins=pins),
        "unvouched": lambda: check(event("globex", 3, mallory), last=accepted),
        "unretire": lambda: check(event("globex", 3, new, signers=[new, old]), last=retiring),
        "other org": lambda: check(event("initech", 1, KEYS["initech"])),
        "tampered": lambda: check(_tampered(event("globex", 1, old)), pins=pins),
        "not canonical": lambda: check(_spaced(event("globex", 1, old)), pins=pins),
        "shape": lambda: check({"record": "", "signatures": [], "extra": 1}),
        "nested deep": lambda: check(_signed(b"[" * keyring.MAX_EVENT, old)),
    }
    with pytest.raises(keyring.KeyRecordError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cases[case]()


def _tampered(ev):
    data = base64.b64decode(ev["record"]).replace(b'"issued":1.0', b'"issued":2.0')
    return {**ev, "record": base64.b64encode(data).decode()}


def _signed(data: bytes, keys) -> dict:
    return {"record": base64.b64encode(data).decode(),
            "signatures": [{"kid": keys.public.signing_kid, "signature": base64.b64encode(keys.sign(data)).decode()}]}


def _spaced(ev):
    body = json.loads(base64.b64decode(ev["record"]))
    data = json.dumps(body, sort_keys=True).encode()
    return {"record": base64.b64encode(data).decode(),
            "signatures": [{"kid": KEYS["globex"].public.signing_kid,
                            "signature": base64.b64encode(KEYS["globex"].sign(data)).decode()}]}


def test_trust_on_first_use_takes_an_unpinned_first_record_only():
    mallory = FileKeys.generate("globex")
    first, taken = check(event("globex", 1, KEYS["globex"]), trust="first-use")
    assert taken is True
    with pytest.raises(keyring.KeyRecordError, match="signed by no key its accepted seq 1"):
        check(event("globex", 2, mallory), last=first, trust="first-use")


def test_the_book_follows_the_directory_for_senders_recipients_and_retired_keys():
    new = FileKeys.generate("globex")
    config = cfg.parse(config_dict("acme", KEYS, directory={"topic": "com.keys"}), cfg.Path("."))
    book = keyring.KeyBook(config, KEYS["acme"])
    old = KEYS["globex"].public
    assert book.view.recipients["globex"] == config.peers["globex"] and old.signing_kid in book.view.senders
    book.accept(keyring.parse_event([event("globex", 2, new, retired=[old.signing_kid])], "globex"))
    assert book.view.recipients["globex"].encryption_kid == new.public.encryption_kid
    assert new.public.signing_kid in book.view.senders and old.signing_kid in book.view.retired
    acme = ingest.Ingestor(config, KEYS["acme"], book=book)
    retired = e2e.seal({"order": 1, "amount": 1.0, "status": "new"}, "com.orders.eu", KEYS["globex"],
                       [KEYS["acme"].public])
    assert acme.process(1, "com.orders.eu", [retired]).reason == "retired_key"
    fresh = e2e.seal({"order": 2, "amount": 1.0, "status": "new"}, "com.orders.eu", new, [KEYS["acme"].public])
    assert isinstance(acme.process(2, "com.orders.eu", [fresh]), ingest.Record)


@pytest.mark.parametrize("directory, message", [
    ({"topic": "com.orders.keys"}, "directory.topic: 'com.orders.keys' is also matched by topics[0]"),
    ({"topic": "Com Keys"}, "directory.topic: 'Com Keys' must be a URI prefix"),
    ({"topic": "com.keys", "trust": "always"}, "directory.trust: must be pinned or first-use, not 'always'"),
    ({"topic": "com.keys", "pins": [{"org": "x", "fingerprints": ["abc"]}]},
     "directory.pins[0].fingerprints: SHA-256 fingerprints"),
    ({"topic": "com.keys", "publish": "yes"}, "directory.publish: must be true or false"),
    ({"publish": True}, "directory.topic: required"),
])
def test_directory_settings_are_checked_naming_the_key(directory, message):
    with pytest.raises(cfg.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cfg.parse(config_dict("acme", KEYS, directory=directory), cfg.Path("."))


# ------------------------------------------------------------ real processes

@defer.inlineCallbacks
def logged(child, text: str, seconds: float = 30.0, times: int = 1):
    """Wait until ``child`` has logged ``text`` (``times`` times), whenever it did."""
    deadline = time.monotonic() + seconds
    while child.output().count(text) < times:
        if time.monotonic() > deadline:
            raise AssertionError(f"{child.name}: {text!r} not logged within {seconds:.0f} s\n{child.describe()}")
        yield task.deferLater(reactor, 0.05, lambda: None)

DIRECTORY_HISTORY = """
[[realms.history]]
uri = "com.keys."
match = "prefix"
limit = 1000
"""


def directory_toml(world: World, me: str, pinned: dict, drop_peers=(), key="", previous=(), retired=()) -> str:
    """``me``'s file: the key directory on, ``pinned`` org -> signing keys, the ``drop_peers``' [[peers]] gone."""
    text = connector_toml(world, me)
    for name in drop_peers:
        text = text.replace(f'\n[[peers]]\npublic_file = "{world.dir / (name + ".pub")}"\n', "\n")
    if key:
        text = text.replace(f'key_file = "{world.dir / (me + ".key")}"',
                            f'key_file = "{world.dir / key}"\nprevious_key_files = '
                            f'{json.dumps([str(world.dir / p) for p in previous])}\n'
                            f'retired_keys = {json.dumps(list(retired))}')
    pins = "".join(f'\n[[directory.pins]]\norg = "{org}"\nfingerprints = ["{fingerprint(k.signing)}"]\n'
                   for org, k in pinned.items())
    return text + f'\n[directory]\ntopic = "com.keys"\n{pins}'


@pytest_twisted.inlineCallbacks
def test_two_organisations_exchange_keys_through_the_router_and_follow_a_rotation(tmp_path):
    world = World(tmp_path)
    router = RouterProcess(tmp_path, ROUTER_TOML + DIRECTORY_HISTORY,
                           env={"ACME_TICKET": TICKETS["acme"], "GLOBEX_TICKET": TICKETS["globex"]})
    acme1, globex1 = world.keys["acme"], world.keys["globex"]
    globex_pins = {"acme": acme1.public}
    router.start()
    acme = Connector(tmp_path, world, "acme", router)
    globex = Connector(tmp_path, world, "globex", router)
    publisher = None
    try:
        # acme knows globex only by its pinned fingerprint; its store was made by the connector before this one
        (acme.dir / "decrypt-search.toml").write_text(directory_toml(world, "acme", {"globex": globex1.public},
                                                                     drop_peers=["globex"]))
        (globex.dir / "decrypt-search.toml").write_text(directory_toml(world, "globex", globex_pins,
                                                                       drop_peers=["acme"]))
        (acme.dir / "state").mkdir(mode=0o700)
        shutil.copy(FIXTURES / "store-v3.sqlite3", acme.dir / "state" / "records.sqlite3")
        with sqlite3.connect(acme.dir / "state" / "records.sqlite3") as conn:  # a new router: no publication 107
            conn.execute("DELETE FROM cursors")
        globex.start()
        yield logged(globex, "key directory: published our key record seq 1")
        acme.start()  # later: it finds globex's record in the router's history
        assert "store migrated in place: schema 3 -> 4" in acme.output()
        yield logged(acme, "key directory: globex's key record seq 1 accepted")
        status = yield get(acme, "/status")
        assert status["directory"]["organisations"]["globex"]["signing_kid"] == globex1.public.signing_kid
        assert status["store"]["records"] == 6  # the fixture's, still there

        # acme seals for globex with the keys the directory gave it, and the other way round
        sent = yield post(acme, "/publish", {"topic": "com.orders.eu", "document": doc(1, 10.0, "new", "Lyon",
                                                                                        "via directory larch")})
        assert sent["recipients"] == ["acme", "globex", "supplier"]  # globex from the directory
        yield logged(globex, "key directory: acme's key record seq 1 accepted")
        yield post(globex, "/publish", {"topic": "com.orders.eu", "document": doc(2, 20.0, "paid", "Nice",
                                                                                   "back larch")})
        yield until_stored(globex, 2)
        yield until_stored(acme, 8)

        # globex rotates: the new record, signed by the old key and the new, reaches acme live
        globex.stop()
        globex2 = FileKeys.generate("globex")
        write_private(world.dir / "globex-2.key", globex2)
        (globex.dir / "decrypt-search.toml").write_text(directory_toml(
            world, "globex", globex_pins, drop_peers=["acme"], key="globex-2.key", previous=["globex.key"]))
        globex.start()
        yield logged(acme, "key directory: globex's key record seq 2 accepted")
        yield post(acme, "/publish", {"topic": "com.orders.eu", "document": doc(3, 30.0, "new", "Lyon",
                                                                                 "after rotation larch")})
        yield post(globex, "/publish", {"topic": "com.orders.eu", "document": doc(4, 40.0, "new", "Lyon",
                                                                                   "new signature larch")})
        yield until_stored(globex, 4)
        yield until_stored(acme, 10)
        status = yield get(acme, "/status")
        assert status["directory"]["organisations"]["globex"]["signing_kid"] == globex2.public.signing_kid
        assert status["keys"]["peers"]["globex"][0]["encryption_kid"] == globex2.public.encryption_kid

        # then retires the old key: acme quarantines what is still signed with it
        globex.stop()
        (globex.dir / "decrypt-search.toml").write_text(directory_toml(
            world, "globex", globex_pins, drop_peers=["acme"], key="globex-2.key", previous=["globex.key"],
            retired=[globex1.public.signing_kid, globex1.public.encryption_kid]))
        globex.start()
        yield logged(acme, "key directory: globex's key record seq 3 accepted")
        assert (yield get(globex, "/status"))["directory"]["published_seq"] == 3
        publisher = yield connect_publisher(router)
        mallory = FileKeys.generate("globex")
        for n, signer in ((5, globex1), (6, mallory), (7, globex2)):
            envelope = e2e.seal(doc(n, 50.0 + n, "new", "Lyon", f"signed larch {n}"), "com.orders.eu", signer,
                                [acme1.public])
            yield publish_envelope(publisher, "com.orders.eu", envelope, acknowledge=True)

        # forged key records on globex's topic are refused, reported and quarantined; an older one is ignored
        ack = PublishOptions(acknowledge=True)
        yield publisher.publish("com.keys.globex", event("globex", 9, mallory), options=ack)  # not vouched for
        yield publisher.publish("com.keys.globex", event("initech", 1, KEYS["initech"]), options=ack)
        yield publisher.publish("com.keys.globex", {"record": "bm90IGpzb24=", "signatures": []}, options=ack)
        yield publisher.publish("com.keys.globex", event("globex", 1, globex1), options=ack)  # a rollback
        impostor = FileKeys.generate("acme")  # in acme's own name, with a seq that would exhaust its own
        yield publisher.publish("com.keys.acme", event("acme", 2 ** 53 - 1, impostor), options=ack)
        # the fixture's bad_signature, envelopes 5 and 6, the four forgeries
        status = yield until_stored(acme, 11, quarantined=1 + 2 + 4)
        assert status["store"]["quarantine"] == {"bad_signature": 1, "retired_key": 1, "unknown_sender": 1,
                                                 "key_record_refused": 4}
        yield logged(acme, "key directory: ignored globex's record seq 1: older than the accepted seq 3")
        status = yield get(acme, "/status")
        assert (status["directory"]["refused"], status["directory"]["stale"]) == (4, 1)
        assert status["directory"]["organisations"]["globex"]["seq"] == 3
        refused = (yield get(acme, "/quarantine", {"reason": "key_record_refused"}))["entries"]
        messages = sorted(e["message"] for e in refused)
        assert any("signed by no key its accepted seq 3" in m for m in messages), messages
        assert any("the record is 'initech''s, published on 'globex''s topic" in m for m in messages), messages
        assert any("signatures: a list of 1 to 16" in m for m in messages), messages
        assert any("a record for acme (ourselves) signed by none of our keys" in m for m in messages), messages
        assert "refused the record of publication" in acme.output()
        found = yield get(acme, "/search", {"q": "larch", "order": "n"})
        assert [r["document"]["order"] for r in found["records"]] == [1, 2, 3, 4, 7]

        # a restart keeps the pins: the history's records are duplicates or stale, globex's seq 3 still in force
        acme.stop()
        acme.start()
        yield logged(acme, "key directory: refused the record of publication", times=8)  # 4 more, from history
        status = yield get(acme, "/status")
        assert status["directory"]["organisations"]["globex"]["seq"] == 3
        assert status["directory"]["accepted"] == 0 and status["store"]["quarantine"]["key_record_refused"] == 4
        assert (status["directory"]["published"], status["directory"]["published_seq"]) == (0, 1)  # unchanged
        assert status["directory"]["stale"] == 3  # seq 1 and 2 from the history, and the rollback

        # the router only ever saw public keys and signatures
        secrets = []
        for name in ("acme.key", "globex.key", "globex-2.key"):
            private = json.loads((world.dir / name).read_text())
            for field in ("x25519_private", "ed25519_seed"):
                secrets += [private[field].encode(), base64.b64decode(private[field])]
        from .support import files_containing, scan_memory

        assert scan_memory(router.proc.pid, secrets) == []
        assert files_containing(router.dir, secrets) == []
        assert scan_memory(globex.proc.pid, secrets)  # the scan finds them where they are
        assert "Traceback" not in acme.output() + globex.output()
    finally:
        if publisher is not None:
            publisher.leave()
        acme.stop()
        globex.stop()
        router.stop()
