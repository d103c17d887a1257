"""Key rotation: an organisation (or a peer) adds a key pair; new records use it, records sealed for or
signed by the earlier one still open, a retired key takes no new record (``retired_key``) while what is
stored under it stays searchable.  In process, then with the real router and connector processes."""

import json

import pytest
import pytest_twisted
from twisted.internet import defer

from connectors.decrypt_search import config as cfg
from connectors.decrypt_search import ingest
from relayrouter import e2e
from relayrouter.e2e.keys import FileKeys, write_private
from relayrouter.e2e.wamp import enable_payload_passthru, publish_envelope

from .support import (SUPPLIER, Connector, config_dict, connect_publisher, connect_ws_url, connector_toml, get,
                      org_keys, post, until_stored)
from .test_end_to_end import doc, router, world  # noqa: F401 (fixtures)

KEYS = org_keys()
ACME2, GLOBEX2 = FileKeys.generate("acme"), FileKeys.generate("globex")


def peer(keys, **extra) -> dict:
    public = keys.public.as_dict()
    return {"org": keys.public.org, "encryption_key": public["encryption_key"],
            "signing_key": public["signing_key"], **extra}


def rotated(tmp_path, retired=()) -> cfg.Config:
    """acme's configuration after acme and globex rotated: ACME2 current, KEYS["acme"] previous."""
    old = tmp_path / "acme-1.key"
    if not old.exists():
        write_private(old, KEYS["acme"])
    data = config_dict("acme", KEYS, peers=[peer(GLOBEX2), peer(KEYS["globex"], previous=True),
                                            peer(KEYS["initech"])])
    data["organisation"].update(previous_key_files=["acme-1.key"], retired_keys=list(retired))
    return cfg.parse(data, tmp_path)


def outcome(config, sender, recipients, n=1, keys=ACME2):
    envelope = e2e.seal({"order": n, "amount": 1.0, "status": "new"}, "com.orders.eu", sender,
                        [r.public for r in recipients])
    return ingest.Ingestor(config, keys, clock=lambda: 1.0).process(n, "com.orders.eu", [envelope])


def test_after_a_rotation_old_and_new_keys_both_open(tmp_path):
    config = rotated(tmp_path)
    assert isinstance(outcome(config, GLOBEX2, [ACME2]), ingest.Record)  # new to new
    assert isinstance(outcome(config, KEYS["globex"], [KEYS["acme"]]), ingest.Record)  # a straggler: old to old
    assert isinstance(outcome(config, GLOBEX2, [KEYS["acme"]]), ingest.Record)  # a peer not yet told of ours
    mine = outcome(config, KEYS["acme"], [KEYS["acme"]])  # what we signed before, read back from history
    assert isinstance(mine, ingest.Record) and mine.sender == "acme" and mine.sender_kid == KEYS["acme"].public.signing_kid
    stranger = outcome(config, FileKeys.generate("globex"), [ACME2])
    assert stranger.reason == "unknown_sender"


def test_a_retired_key_takes_no_new_record_and_says_which(tmp_path):
    old_globex, old_acme = KEYS["globex"].public, KEYS["acme"].public
    config = rotated(tmp_path, retired=[old_globex.signing_kid, old_acme.encryption_kid])
    signed = outcome(config, KEYS["globex"], [ACME2])
    assert (signed.reason, signed.message) == ("retired_key", f"signed by globex key {old_globex.signing_kid}, "
                                                              "which is retired")
    assert signed.payload and signed.sender_kid == old_globex.signing_kid
    sealed = outcome(config, GLOBEX2, [KEYS["acme"]])
    assert (sealed.reason, sealed.message) == ("retired_key", f"addressed only to our retired key "
                                                              f"{old_acme.encryption_kid}")
    assert isinstance(outcome(config, GLOBEX2, [KEYS["acme"], ACME2]), ingest.Record)  # our new key is there too
    # a forgery under a retired key is still a bad signature first
    forged = bytearray(e2e.seal({"order": 9, "amount": 1.0, "status": "new"}, "com.orders.eu", KEYS["globex"],
                                [ACME2.public]))
    forged[-1] ^= 1
    result = ingest.Ingestor(config, ACME2).process(9, "com.orders.eu", [bytes(forged)])
    assert result.reason == "bad_signature"
    # a retired key we no longer know at all
    gone = FileKeys.generate("initech")
    config = cfg.parse({**config_dict("acme", KEYS), "organisation": {
        "name": "acme", "retired_keys": [gone.public.signing_kid]}}, tmp_path)
    assert outcome(config, gone, [KEYS["acme"]], keys=KEYS["acme"]).message == (
        f"signed by retired key {gone.public.signing_kid}")


@pytest.mark.parametrize("change, message", [
    (lambda d: d["organisation"].update(retired_keys=["ABC"]),
     "organisation.retired_keys: 'ABC' is not a key id (16 lower-case hex digits"),
    (lambda d: d["organisation"].update(previous_key_files=["missing.key"]),
     "organisation.previous_key_files[0]: cannot read key file"),
    (lambda d: d["peers"].append(peer(GLOBEX2)),
     "peers[2].org: 'globex' is listed twice (mark its earlier keys previous = true)"),
    (lambda d: d["peers"].append(peer(FileKeys.generate("umbrella"), previous=True)),
     "peers: 'umbrella' has previous keys but no current ones"),
    (lambda d: d["peers"].append(peer(GLOBEX2, previous="yes")), "peers[2].previous: must be true or false"),
])
def test_rotation_settings_are_checked_at_start_naming_the_key(change, message):
    data = config_dict("acme", KEYS)
    change(data)
    with pytest.raises(cfg.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        cfg.parse(data, cfg.Path("."))


def test_the_current_key_cannot_be_retired(tmp_path):
    config = rotated(tmp_path, retired=[ACME2.public.signing_kid])
    with pytest.raises(cfg.ConfigError, match="organisation.retired_keys: .* is our current key"):
        cfg.check_rotation(config, ACME2)
    other = tmp_path / "other.key"
    write_private(other, FileKeys.generate("globex"))
    data = config_dict("acme", KEYS)
    data["organisation"]["previous_key_files"] = ["other.key"]
    with pytest.raises(cfg.ConfigError, match=r"previous_key_files\[0\]: the key file is for organisation .globex., not .acme."):
        cfg.parse(data, tmp_path)


# ------------------------------------------------------------ real processes

def rotate_config(connector: Connector, world, key: str, previous=(), retired=(), peers_previous=(),
                  peers_extra=()) -> None:
    """Rewrite the connector's file: ``key`` the current key file, and the rotation settings."""
    path = connector.dir / "decrypt-search.toml"
    me = connector.me
    text = connector_toml(world, me)
    text = text.replace(f'key_file = "{world.dir / (me + ".key")}"', f'key_file = "{world.dir / key}"\n'
                        f'previous_key_files = {json.dumps([str(world.dir / p) for p in previous])}\n'
                        f'retired_keys = {json.dumps(list(retired))}')
    for name in peers_previous:  # the peer's first key file is now its previous one
        text = text.replace(f'public_file = "{world.dir / (name + ".pub")}"\n',
                            f'public_file = "{world.dir / (name + ".pub")}"\nprevious = true\n')
    text += "".join(f'\n[[peers]]\npublic_file = "{world.dir / pub}"\n' for pub in peers_extra)
    path.write_text(text)


def new_pair(world, name: str, file: str) -> FileKeys:
    keys = FileKeys.generate(name)
    write_private(world.dir / f"{file}.key", keys)
    (world.dir / f"{file}.pub").write_text(json.dumps(keys.public.as_dict()))
    return keys


@defer.inlineCallbacks
def publish(publisher, sender, recipients, document, topic="com.orders.eu"):
    envelope = e2e.seal(document, topic, sender, [r.public for r in recipients])
    yield publish_envelope(publisher, topic, envelope, acknowledge=True)


@pytest_twisted.inlineCallbacks
def test_rotating_our_keys_and_a_peers_at_restart_then_retiring_the_old_ones(tmp_path, world,  # noqa: F811
                                                                             router):  # noqa: F811
    acme1, supplier1 = world.keys["acme"], world.keys[SUPPLIER]
    seen = []  # every envelope on com.orders. as the router forwards it: who signed, for whom
    watcher = yield connect_ws_url(router)
    enable_payload_passthru(watcher)
    yield watcher.subscribe(lambda envelope, **_: seen.append(e2e.parse(envelope)), "com.orders.",
                            options=_prefix())
    publisher = yield connect_publisher(router)
    acme = Connector(tmp_path, world, "acme", router)
    try:
        acme.start()
        yield publish(publisher, supplier1, [acme1], doc(1, 10.0, "new", "Lyon", "before rotation cedar"))
        yield post(acme, "/publish", {"topic": "com.orders.own", "document": doc(2, 20.0, "paid", "Nice",
                                                                                  "our own cedar, first key")})
        yield until_stored(acme, 2)
        acme.stop()

        # both rotate: acme's new pair is current, its first one previous; the supplier's likewise
        acme2, supplier2 = new_pair(world, "acme", "acme-2"), new_pair(world, SUPPLIER, "supplier-2")
        rotate_config(acme, world, "acme-2.key", previous=["acme.key"], peers_previous=[SUPPLIER],
                      peers_extra=["supplier-2.pub"])
        acme.start()
        status = yield get(acme, "/status")
        assert status["keys"]["current"] == {"encryption_kid": acme2.public.encryption_kid,
                                             "signing_kid": acme2.public.signing_kid}
        assert status["keys"]["previous"] == [{"encryption_kid": acme1.public.encryption_kid,
                                               "signing_kid": acme1.public.signing_kid}]
        yield publish(publisher, supplier1, [acme1], doc(3, 30.0, "new", "Lyon", "straggler cedar"))
        yield publish(publisher, supplier2, [acme2], doc(4, 40.0, "new", "Lyon", "new keys cedar"))
        mine = yield post(acme, "/publish", {"topic": "com.orders.own",
                                             "document": doc(5, 50.0, "paid", "Nice", "our own cedar, new key")})
        yield until_stored(acme, 5)
        ours = [p for p in seen if p.message_id.hex() == mine["message_id"]]
        assert len(ours) == 1 and ours[0].sender_kid == acme2.public.signing_kid
        assert acme2.public.encryption_kid in [kid for kid, _ in ours[0].recipients]
        assert acme1.public.encryption_kid not in [kid for kid, _ in ours[0].recipients]
        acme.stop()

        # the old keys are retired: nothing new under them, everything stored stays searchable
        rotate_config(acme, world, "acme-2.key", previous=["acme.key"], peers_previous=[SUPPLIER],
                      peers_extra=["supplier-2.pub"],
                      retired=[supplier1.public.signing_kid, acme1.public.encryption_kid])
        acme.start()
        yield publish(publisher, supplier1, [acme2], doc(6, 60.0, "new", "Lyon", "old signature cedar"))
        yield publish(publisher, supplier2, [acme1], doc(7, 70.0, "new", "Lyon", "old recipient cedar"))
        yield publish(publisher, supplier2, [acme2], doc(8, 80.0, "new", "Lyon", "still fine cedar"))
        status = yield until_stored(acme, 6, quarantined=2)
        assert status["store"]["quarantine"] == {"retired_key": 2}
        assert sorted(status["keys"]["retired"]) == sorted([supplier1.public.signing_kid,
                                                            acme1.public.encryption_kid])
        entries = (yield get(acme, "/quarantine", {"reason": "retired_key"}))["entries"]
        assert sorted(e["message"] for e in entries) == sorted([
            f"signed by {SUPPLIER} key {supplier1.public.signing_kid}, which is retired",
            f"addressed only to our retired key {acme1.public.encryption_kid}"])
        assert all(e["size"] > 0 for e in entries)
        found = yield get(acme, "/search", {"q": "cedar", "order": "amount"})
        assert [r["document"]["order"] for r in found["records"]] == [1, 2, 3, 4, 5, 8]
        assert [r["sender"] for r in found["records"]] == [SUPPLIER, "acme", SUPPLIER, SUPPLIER, "acme", SUPPLIER]
        assert "Traceback" not in acme.output()
    finally:
        acme.stop()
        publisher.leave()
        watcher.leave()


def _prefix():
    from autobahn.wamp.types import SubscribeOptions

    return SubscribeOptions(match="prefix")
