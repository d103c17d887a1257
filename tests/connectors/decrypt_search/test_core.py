"""The I/O-free core: configuration checks, ingest decisions, query parsing."""

from pathlib import Path

import pytest

from connectors.decrypt_search import config as cfg
from connectors.decrypt_search import ingest, query
from relayrouter import e2e

from .support import config_dict, make_config, org_keys

KEYS = org_keys()


def order(n, amount=10.0, status="new", **extra):
    return {"order": n, "amount": amount, "status": status, **extra}


@pytest.fixture
def acme():
    return ingest.Ingestor(make_config("acme", KEYS), KEYS["acme"], clock=lambda: 1000.0)


def flip_last(envelope: bytes) -> bytes:
    return envelope[:-1] + bytes([envelope[-1] ^ 0x01])


def sealed(document, topic="com.orders.eu", sender="globex", to=("acme",)):
    return e2e.seal(document, topic, KEYS[sender], [KEYS[o].public for o in to])


def test_a_good_envelope_becomes_a_record_with_its_fields(acme):
    doc = order(1, 12.5, "paid", placed="2026-12-01T10:00:00Z", ship={"city": "Lyon"}, note="fragile vase")
    record = acme.process(77, "com.orders.eu", [sealed(doc)])
    assert isinstance(record, ingest.Record)
    assert record.publication == 77 and record.sender == "globex" and record.document == doc
    assert record.fields == {"amount": 12.5, "status": "paid", "placed": 1796119200.0, "city": "Lyon"}
    assert set(record.text.split("\n")) == {"paid", "2026-12-01T10:00:00Z", "Lyon", "fragile vase"}


@pytest.mark.parametrize("make, reason", [
    (lambda: [sealed(order(1), to=("globex",))], "not_addressed"),
    (lambda: [e2e.seal(order(1), "com.orders.eu", e2e.FileKeys.generate("x"), [KEYS["acme"].public])],
     "unknown_sender"),
    (lambda: [flip_last(sealed(order(1)))], "bad_signature"),
    (lambda: [sealed(order(1, amount=-1))], "schema_invalid"),
    (lambda: [sealed({"order": "one", "amount": 1, "status": "new"})], "schema_invalid"),
    (lambda: [sealed(order(1), topic="com.orders.us")], "wrong_topic"),
    (lambda: ["plain text"], "malformed"),
    (lambda: [b"bytes", b"more"], "malformed"),
    (lambda: [], "malformed"),
    (lambda: [sealed([1, 2], topic="com.notes")], "schema_invalid"),
])
def test_unusable_input_is_quarantined_with_its_reason(acme, make, reason):
    args = make()
    topic = "com.notes" if args and isinstance(args[0], bytes) and b"com.notes" in args[0] else "com.orders.eu"
    result = acme.process(5, topic, args)
    assert isinstance(result, ingest.Quarantined), result
    assert result.reason == reason and result.message and result.publication == 5


def test_a_field_of_the_wrong_type_is_schema_invalid(acme):
    result = acme.process(6, "com.notes", [sealed({"amount": "lots"}, topic="com.notes")])
    assert result.reason == "schema_invalid" and "amount" in result.message


def test_topic_without_a_rule_is_quarantined(acme):
    result = acme.process(7, "com.other", [sealed(order(1), topic="com.other")])
    assert result.reason == "no_topic_rule"


def test_own_signature_is_trusted_and_senders_can_be_limited():
    config = make_config("acme", KEYS, organisation={"name": "acme", "trusted_senders": ["initech"]})
    ingestor = ingest.Ingestor(config, KEYS["acme"])
    assert ingestor.process(1, "com.notes", [sealed({"a": "b"}, "com.notes", "acme")]).sender == "acme"
    assert ingestor.process(2, "com.notes", [sealed({"a": "b"}, "com.notes", "globex")]).reason == "unknown_sender"


@pytest.mark.parametrize("change, message", [
    ({"colour": 1}, "colour: unknown key"),
    ({"topics": [{"uri": "a", "match": "fuzzy"}]}, "topics[0].match: must be exact, prefix or wildcard"),
    ({"topics": []}, "topics: at least one"),
    ({"index": [{"name": "Bad-Name"}]}, "index[0].name"),
    ({"index": [{"name": "topic"}]}, "index[0].name: 'topic' is taken"),
    ({"index": [{"name": "x", "type": "float"}]}, "index[0].type"),
    ({"topics": [{"uri": "a", "schema": {"type": "nonsense"}}]}, "topics[0].schema: not a valid JSON Schema"),
    ({"store": {"backend": "postgresql"}}, "store.dsn: required"),
    ({"organisation": {"name": "acme", "publish_for": ["nobody"]}}, "organisation.publish_for: 'nobody'"),
    ({"peers": [{"org": "p", "signing_key": "!!"}]}, "peers[0]"),
    ({"http": {"auth": {"keys": []}}}, "http.auth.keys: at least one key"),
    ({"http": {"auth": {"keys": [{"secret_env": "NO_SUCH_VARIABLE_X"}]}}}, "NO_SUCH_VARIABLE_X is not set"),
    ({"hooks": [{"function": "nocolon"}]}, "hooks[0].function"),
])
def test_configuration_errors_name_the_key(change, message):
    with pytest.raises(cfg.ConfigError) as caught:
        make_config("acme", KEYS, **change)
    assert message in str(caught.value)


def test_wildcard_topic_rule():
    rule = cfg.TopicRule("com..temp", "wildcard", None)
    assert rule.matches("com.a.temp") and not rule.matches("com.a.b.temp") and not rule.matches("com.a.hum")


def test_q_words_prefixes_and_phrases():
    terms = query.parse_q('Fragile "blue vase" lyo* x-ray "unclosed')
    assert terms == (query.Term(("blue", "vase")), query.Term(("fragile",)), query.Term(("lyo",), prefix=True),
                     query.Term(("x", "ray")), query.Term(("unclosed",)))
    assert query.fts5_match(terms) == '"blue vase" AND "fragile" AND "lyo"* AND "x ray" AND "unclosed"'
    assert query.pg_tsquery(terms) == "('blue' <-> 'vase') & 'fragile' & 'lyo':* & ('x' <-> 'ray') & 'unclosed'"
    # nothing in q is an operator to FTS5 or tsquery
    assert query.fts5_match(query.parse_q('NEAR( a OR b ) "c" ^d')) == '"c" AND "near" AND "a" AND "or" AND "b" AND "d"'


def test_search_parameters_and_refusals():
    config = make_config("acme", KEYS)
    s = query.parse_search({"q": "vase", "amount.gte": "10", "status.in": "new,paid", "placed.lt": "2026-12-02",
                            "order": "-amount", "limit": "5"}, config)
    assert s.order == "amount" and s.descending and s.limit == 5
    assert query.Condition("amount", "gte", 10.0) in s.conditions
    assert query.Condition("status", "in", ("new", "paid")) in s.conditions
    assert query.Condition("placed", "lt", 1796169600.0) in s.conditions
    for params, parameter in [({"nope": "1"}, "nope"), ({"amount.near": "1"}, "amount.near"),
                              ({"status.gt": "a"}, "status.gt"), ({"amount": "ten"}, "amount"),
                              ({"order": "document"}, "order"), ({"limit": "1000"}, "limit"),
                              ({"cursor": "garbage"}, "cursor")]:
        with pytest.raises(query.QueryError) as caught:
            query.parse_search(params, config)
        assert caught.value.parameter == parameter


def test_cursor_belongs_to_its_order():
    cursor = query.encode_cursor("-amount", (0, 5.0, 17))
    assert query.decode_cursor(cursor, "-amount") == (0, 5.0, 17)
    with pytest.raises(query.QueryError):
        query.decode_cursor(cursor, "amount")


def test_analytics_parameters():
    config = make_config("acme", KEYS)
    a = query.parse_analytics({"by": "status", "bucket": "minute", "from": "0", "to": "600", "amount.gt": "1"},
                              config)
    assert (a.by, a.bucket, a.start, a.end) == ("status", 60, 0.0, 600.0) and len(a.conditions) == 1
    with pytest.raises(query.QueryError, match="more than"):
        query.parse_analytics({"bucket": "minute", "from": "0", "to": str(86400 * 30)}, config)
    with pytest.raises(query.QueryError, match="by"):
        query.parse_analytics({"by": "document"}, config)


def test_config_dict_builds():
    assert cfg.parse(config_dict("globex", KEYS), Path(".")).org == "globex"
