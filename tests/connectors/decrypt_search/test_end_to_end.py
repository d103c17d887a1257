"""decrypt-search end to end: the real router and two organisations' connectors
as processes, an Autobahn-Python publisher, HTTP with real bearer tokens."""

import base64
import time
import uuid

import pytest
import pytest_twisted
import treq
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from twisted.internet import defer

from relayrouter import e2e
from relayrouter.e2e.wamp import publish_envelope

from ..iot_agent.pg import own_database
from .support import (SUPPLIER, TICKETS, Connector, connect_ws_url, World, connect_publisher, files_containing, get, post, router_process,
                      scan_memory, token, until_stored)


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


@pytest.fixture
def router(tmp_path):
    proc = router_process(tmp_path)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def connectors(tmp_path, world, router):
    started = {}

    def start(me, **kw):
        connector = Connector(tmp_path, world, me, router, **kw)
        connector.start()
        started[me] = connector
        return connector

    yield start
    for connector in started.values():
        connector.stop()


def doc(n, amount, status, city, note, placed=None):
    d = {"order": n, "amount": amount, "status": status, "ship": {"city": city}, "note": note}
    if placed:
        d["placed"] = placed
    return d


@defer.inlineCallbacks
def publish_all(publisher, world, items, topic="com.orders.eu"):
    for document, to in items:
        envelope = e2e.seal(document, topic, world.keys[SUPPLIER], [world.public(o) for o in to])
        yield publish_envelope(publisher, topic, envelope, acknowledge=True)


def numbers(page):
    return [r["document"]["order"] for r in page["records"]]


@pytest_twisted.inlineCallbacks
def test_two_organisations_each_index_only_their_own_and_the_router_never_sees_plaintext(world, router,
                                                                                         connectors):
    acme, globex = connectors("acme"), connectors("globex")
    marker = f"zq{uuid.uuid4().hex}"  # in every plaintext, never on the wire in the clear
    items = [
        (doc(1, 5.0, "new", "Lyon", f"blue vase {marker}", "2026-11-01T08:00:00Z"), ["acme"]),
        (doc(2, 12.5, "paid", "Paris", f"red chair {marker}", "2026-11-02T08:00:00Z"), ["acme", "globex"]),
        (doc(3, 30.0, "paid", "Lyon", f"blue chair and vase {marker}", "2026-11-03T08:00:00Z"), ["acme"]),
        (doc(4, 7.5, "shipped", "Nice", f"vasectomy kit {marker}", "2026-11-04T08:00:00Z"), ["globex"]),
        (doc(5, 99.0, "new", "Lyon", f"fragile blue vase set {marker}"), ["acme", "globex"]),
        (doc(6, 45.0, "paid", "Lyon", f"blue vase pair {marker}", "2026-11-06T08:00:00Z"), ["acme"]),
    ]
    publisher = yield connect_publisher(router)
    yield publish_all(publisher, world, items)
    status = yield until_stored(acme, 5, quarantined=1)
    yield until_stored(globex, 3, quarantined=3)
    assert status["store"]["quarantine"] == {"not_addressed": 1}

    # text + filter + order + paging: exactly the expected records, in order, page by page
    params = {"q": "blue vas*", "amount.gte": "5", "status.in": "new,paid", "order": "-amount", "limit": "2"}
    first = yield get(acme, "/search", params)
    assert numbers(first) == [5, 6] and first["next_cursor"]
    second = yield get(acme, "/search", {**params, "cursor": first["next_cursor"]})
    assert numbers(second) == [3, 1] and second["next_cursor"] is None
    phrase = yield get(acme, "/search", {"q": '"blue vase"', "city": "Lyon", "order": "placed"})
    assert numbers(phrase) == [1, 6, 5]  # 5 has no date: last
    dated = yield get(acme, "/search", {"placed.lt": "2026-11-03T00:00:00Z", "order": "n"})
    assert numbers(dated) == [1, 2]
    theirs = yield get(globex, "/search", {"q": marker, "order": "n"})
    assert numbers(theirs) == [2, 4, 5]
    record = yield get(acme, f"/records/{first['records'][0]['id']}")
    assert record["document"] == items[4][0] and record["sender"] == SUPPLIER
    yield get(acme, "/records/999999", expect=404)
    now = time.time()
    counts = yield get(acme, "/analytics", {"by": "status", "bucket": "minute", "from": str(now - 600),
                                            "to": str(now + 60)})
    by_status = {}
    for bucket in counts["buckets"]:  # the six may straddle a minute
        by_status[bucket["value"]] = by_status.get(bucket["value"], 0) + bucket["count"]
    assert by_status == {"new": 2, "paid": 3} and counts["total"] == 5

    # the organisation publishes on its own behalf; the other one verifies it came from acme
    signed = yield post(acme, "/publish", {"topic": "com.notes", "document": {"text": f"ship today {marker}"},
                                           "recipients": ["globex"]})
    assert signed["recipients"] == ["acme", "globex"] and signed["publication"]
    yield until_stored(globex, 4)
    note = yield get(globex, "/search", {"q": "ship today", "topic": "com.notes"})
    assert [r["sender"] for r in note["records"]] == ["acme"]

    # the router: never the marker, not in its log, not in its memory, not in its store
    needles = [marker.encode(), marker.encode("utf-16-le")]
    assert marker not in router.output()
    assert scan_memory(router.proc.pid, needles) == []
    assert files_containing(router.dir, needles) == []
    # the check itself works: the connectors' memory does hold it
    assert scan_memory(acme.proc.pid, [marker.encode()]) == [marker.encode()]


@pytest_twisted.inlineCallbacks
def test_unusable_input_is_quarantined_with_its_reason_and_the_stream_goes_on(world, router, connectors):
    acme = connectors("acme")
    publisher = yield connect_publisher(router)
    supplier, me = world.keys[SUPPLIER], world.public("acme")
    good = doc(1, 10.0, "new", "Lyon", "first good one")
    wrong_key = e2e.seal(doc(2, 1.0, "new", "Lyon", "x"), "com.orders.eu", supplier, [world.public("globex")])
    forged = bytearray(e2e.seal(doc(3, 1.0, "new", "Lyon", "x"), "com.orders.eu", supplier, [me]))
    forged[-10] ^= 0xFF
    stranger = e2e.FileKeys.generate("mallory")
    unknown = e2e.seal(doc(4, 1.0, "new", "Lyon", "x"), "com.orders.eu", stranger, [me])
    invalid = e2e.seal({"order": 5, "amount": -3, "status": "lost"}, "com.orders.eu", supplier, [me])
    elsewhere = e2e.seal(doc(6, 1.0, "new", "Lyon", "x"), "com.orders.us", supplier, [me])
    for envelope in (e2e.seal(good, "com.orders.eu", supplier, [me]), wrong_key, bytes(forged), unknown, invalid):
        yield publish_envelope(publisher, "com.orders.eu", envelope, acknowledge=True)
    yield publish_envelope(publisher, "com.orders.eu", elsewhere, acknowledge=True)  # replayed onto another topic
    yield publisher.publish("com.orders.eu", "not an envelope", options=PublishOptions(acknowledge=True))
    last = doc(7, 20.0, "paid", "Nice", "last good one")
    yield publish_envelope(publisher, "com.orders.eu", e2e.seal(last, "com.orders.eu", supplier, [me]),
                           acknowledge=True)
    status = yield until_stored(acme, 2, quarantined=6)
    assert status["store"]["quarantine"] == {"bad_signature": 1, "malformed": 1, "not_addressed": 1,
                                             "schema_invalid": 1, "unknown_sender": 1, "wrong_topic": 1}
    # the counters follow the commit on the reactor thread, a moment after the store shows it
    deadline = time.monotonic() + 10
    while status["replication"]["quarantined_by_reason"] != status["store"]["quarantine"]:
        assert time.monotonic() < deadline, status
        status = yield get(acme, "/status")
    listed = yield get(acme, "/quarantine", {"limit": "10"})
    reasons = [e["reason"] for e in reversed(listed["entries"])]
    assert reasons == ["not_addressed", "bad_signature", "unknown_sender", "schema_invalid", "wrong_topic",
                       "malformed"]
    schema = yield get(acme, "/quarantine", {"reason": "schema_invalid"})
    assert "amount" in schema["entries"][0]["message"] or "status" in schema["entries"][0]["message"]
    records = yield get(acme, "/search", {"order": "n"})
    assert numbers(records) == [1, 7]


@pytest_twisted.inlineCallbacks
def test_stopped_connector_catches_up_from_history_without_gap_or_duplicate(world, router, connectors):
    acme = connectors("acme")
    publisher = yield connect_publisher(router)
    supplier, me = world.keys[SUPPLIER], world.public("acme")

    @defer.inlineCallbacks
    def publish(numbers_):
        pending = []
        for n in numbers_:
            envelope = e2e.seal(doc(n, float(n), "new", "Lyon", f"order {n}"), "com.orders.eu", supplier, [me])
            pending.append(publish_envelope(publisher, "com.orders.eu", envelope, acknowledge=True))
            if len(pending) == 100:
                yield defer.gatherResults(pending)
                pending = []
        yield defer.gatherResults(pending)

    yield publish(range(1, 51))
    yield until_stored(acme, 50)
    acme.kill9()  # not even a clean stop
    yield publish(range(51, 1051))
    acme.start()
    yield publish(range(1051, 1101))  # live again while it catches up
    status = yield until_stored(acme, 1100, seconds=120)
    assert status["store"]["records"] == 1100
    seen, cursor = [], None
    while True:
        params = {"order": "n", "limit": "100", **({"cursor": cursor} if cursor else {})}
        page = yield get(acme, "/search", params)
        seen += numbers(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(range(1, 1101))  # every one, once, nothing else
    assert status["store"]["quarantine"] == {}
    assert status["replication"]["catchup"]["prefix:com.orders."]["events"] >= 1000


@pytest_twisted.inlineCallbacks
def test_http_api_refuses_missing_expired_and_wrongly_signed_tokens(world, router, connectors):
    acme = connectors("acme")
    paths = ["/search", "/records/1", "/analytics", "/quarantine", "/status"]
    for path in paths:
        missing = yield get(acme, path, bearer=False, expect=401)
        assert missing["error"] == "unauthorized" and "Bearer" in missing["message"]
        expired = yield get(acme, path, bearer=token(lifetime=-120), expect=401)
        assert "expired" in expired["message"]
        forged = yield get(acme, path, bearer=token(secret="another-secret-of-enough-length-0123456789"),
                           expect=401)
        assert "signature" in forged["message"]
        audience = yield get(acme, path, bearer=token(aud="someone-else"), expect=401)
        assert "audience" in audience["message"]
    scoped = yield get(acme, "/quarantine", bearer=token(scopes=["search"]), expect=403)
    assert "quarantine" in scoped["message"]
    yield post(acme, "/publish", {"topic": "com.notes", "document": {}}, bearer=token(scopes=["search"]),
               expect=403)
    yield post(acme, "/publish", {"topic": "com.notes", "document": {}}, bearer=token(lifetime=-120), expect=401)
    bad = yield get(acme, "/search", {"amount.near": "3"}, expect=400)
    assert bad["message"].startswith("amount.near")
    yield get(acme, "/search", {"limit": "5"})
    assert token() not in acme.output()  # tokens are never logged


@pytest_twisted.inlineCallbacks
def test_hostile_input_is_a_400_naming_what_never_a_500(world, router, connectors):
    acme = connectors("acme")
    bad = {b"Authorization": [b"Bearer \xff\xfe" + token().encode()]}
    for method, path in [("GET", "/search"), ("GET", "/records/1"), ("GET", "/analytics"),
                         ("GET", "/quarantine"), ("POST", "/publish"), ("GET", "/status")]:
        response = yield treq.request(method, acme.url + path, headers=bad, data=b"{}" if method == "POST" else None)
        answer = yield response.json()
        assert (response.code, answer["message"]) == (400, "the Authorization header is not valid UTF-8"), path
    huge = "9" * 400  # no SQLite integer holds it
    for before in (huge, "-" + huge, "-1", "1e5"):
        answer = yield get(acme, "/quarantine", {"before": before}, expect=400)
        assert answer["message"].startswith("before"), answer
    yield get(acme, "/quarantine", {"before": str(2 ** 63 - 1)})
    deep_cursor = base64.urlsafe_b64encode(b"[" * 5000).decode()
    answer = yield get(acme, "/search", {"cursor": deep_cursor}, expect=400)
    assert answer["message"].startswith("cursor"), answer
    headers = {"Authorization": f"Bearer {token()}", "Content-Type": "application/json"}
    response = yield treq.post(acme.url + "/publish", b"[" * 5000, headers=headers)
    answer = yield response.json()
    assert (response.code, answer["message"]) == (400, "the body is nested more than 100 levels deep (the limit)")


def test_loose_key_permissions_are_refused_at_start(tmp_path, world, router):
    (world.dir / "acme.key").chmod(0o644)
    connector = Connector(tmp_path, world, "acme", router)
    connector.start(ready=False)
    connector.wait_for(r"configuration error: key file .*acme\.key' has loose permissions 0644")
    assert connector.proc.wait(30) != 0
    secret = (world.dir / "acme.key").read_text()
    assert all(line.strip() not in connector.output() for line in secret.splitlines() if "private" in line
               or "seed" in line)


HOOKS = '''
def follow_up(record, context):
    if record["topic"] == "com.orders.eu" and record["document"]["status"] == "new":
        return context.publish("com.notes", {"text": "order %d seen" % record["document"]["order"]}, ["globex"])


def explode(record, context):
    if record["document"].get("order", 0) % 2:
        raise RuntimeError("the business rule failed")


async def later(record, context):
    if record["document"].get("order") == 4:
        raise ValueError("failed after a while")
'''


@pytest_twisted.inlineCallbacks
def test_business_hooks_run_per_record_and_their_failures_are_counted(tmp_path, world, router, connectors):
    module = f"hooks_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(HOOKS)
    extra = "".join(f'\n[[hooks]]\nfunction = "{module}:{name}"\n' for name in ("follow_up", "explode", "later"))
    acme = connectors("acme", extra=extra, pythonpath=tmp_path)
    globex = connectors("globex")
    publisher = yield connect_publisher(router)
    items = [(doc(n, 1.0, "new" if n < 3 else "paid", "Lyon", f"order {n}"), ["acme"]) for n in range(1, 5)]
    yield publish_all(publisher, world, items)
    status = yield until_stored(acme, 6)  # four orders and the two follow-up notes it sent itself
    notes = yield until_stored(globex, 2)
    theirs = yield get(globex, "/search", {"topic": "com.notes", "order": "created"})
    assert sorted(r["document"]["text"] for r in theirs["records"]) == ["order 1 seen", "order 2 seen"]
    assert {r["sender"] for r in theirs["records"]} == {"acme"}
    hooks = status["hooks"]
    while hooks["calls"] < 18:  # three hooks, six records; the async one may finish a little later
        hooks = (yield get(acme, "/status"))["hooks"]
    assert hooks["errors_by_hook"] == {f"{module}:explode": 2, f"{module}:later": 1}
    assert notes["store"]["records"] >= 2
    assert acme.running  # replication went on
    yield publish_all(publisher, world, [(doc(9, 1.0, "paid", "Lyon", "after the failures"), ["acme"])])
    yield until_stored(acme, 7)


@pytest_twisted.inlineCallbacks
def test_the_same_functions_as_wamp_procedures_authorized_by_the_routers_roles(world, router, connectors):
    acme = connectors("acme")
    publisher = yield connect_publisher(router)
    yield publish_all(publisher, world, [(doc(n, float(n), "new", "Lyon", f"crate {n}"), ["acme"])
                                         for n in range(1, 4)])
    yield until_stored(acme, 3)
    caller = yield connect_ws_url(router, authmethods=["ticket"], authid="globex-connector",
                                  ticket=TICKETS["globex"])
    page = yield caller.call("com.acme.records.search", q="crate", order="-n", limit=2)
    assert numbers(page) == [3, 2] and page["next_cursor"]
    more = yield caller.call("com.acme.records.search", q="crate", order="-n", limit=2, cursor=page["next_cursor"])
    assert numbers(more) == [1]
    one = yield caller.call("com.acme.records.get", page["records"][0]["id"])
    assert one["document"]["note"] == "crate 3"
    counts = yield caller.call("com.acme.records.analytics", by="city", bucket="hour")
    assert [(b["value"], b["count"]) for b in counts["buckets"]] == [("Lyon", 3)]
    with pytest.raises(ApplicationError) as caught:
        yield caller.call("com.acme.records.search", **{"amount.near": 1})
    assert caught.value.error == "wamp.error.invalid_argument"
    status = yield caller.call("com.acme.records.status")
    assert status["store"]["records"] == 3
    # the anonymous publisher role has no call rule: the router refuses
    with pytest.raises(ApplicationError) as caught:
        yield publisher.call("com.acme.records.search", q="crate")
    assert caught.value.error == "wamp.error.not_authorized"


@pytest.fixture
def pg_dsn():
    with own_database("ds_e2e") as dsn:
        yield dsn


@pytest_twisted.inlineCallbacks
def test_postgresql_store_replicates_searches_and_resumes(world, router, connectors, pg_dsn):
    acme = connectors("acme", extra=f'\n[store]\nbackend = "postgresql"\ndsn = "{pg_dsn}"\n')
    publisher = yield connect_publisher(router)
    first = [(doc(n, float(n), "paid" if n % 2 else "new", "Lyon", f"pallet {n} of tiles"), ["acme"])
             for n in range(1, 21)]
    yield publish_all(publisher, world, first)
    yield until_stored(acme, 20)
    acme.kill9()
    yield publish_all(publisher, world, [(doc(n, float(n), "new", "Nice", f"crate {n} of tiles"), ["acme"])
                                         for n in range(21, 51)])
    acme.start()
    status = yield until_stored(acme, 50)
    assert status["store"] == {"backend": "postgresql", "records": 50, "quarantine": {}}
    page = yield get(acme, "/search", {"q": '"of tiles" pal*', "status": "paid", "amount.gt": "10",
                                       "order": "-amount"})
    assert numbers(page) == [19, 17, 15, 13, 11]
    every = yield get(acme, "/search", {"q": "tiles", "order": "n", "limit": "100"})
    assert numbers(every) == list(range(1, 51))
