"""Python validators named in [[topics]] run before indexing and may refuse a record
(quarantined ``rejected`` with their message); in process, then with real processes."""

import uuid

import pytest
import pytest_twisted

from connectors.decrypt_search import config as cfg
from connectors.decrypt_search import ingest
from relayrouter import e2e

from .support import ORDER_SCHEMA, config_dict, connect_publisher, get, make_config, org_keys, until_stored
from .test_end_to_end import connectors, doc, publish_all, router, world  # noqa: F401 (fixtures)

KEYS = org_keys()
VALIDATORS = '''
from connectors.decrypt_search.ingest import Rejected


def credit_limit(record):
    if record["document"]["amount"] > 1000:
        raise Rejected("amount %s is over the credit limit of 1000" % record["document"]["amount"])


def known_city(record):
    city = record["document"].get("ship", {}).get("city")
    if city == "Atlantis":
        return "no deliveries to Atlantis"
    return None


def broken(record):
    if record["document"]["order"] == 13:
        raise KeyError("unlucky")
'''


@pytest.fixture
def module(tmp_path, monkeypatch):
    name = f"validators_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(VALIDATORS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def rules(module: str) -> list:
    return [{"uri": "com.orders.", "match": "prefix", "schema": ORDER_SCHEMA,
             "validators": [f"{module}:credit_limit", f"{module}:known_city", f"{module}:broken"]}]


def test_validators_accept_refuse_or_fail_before_indexing(module):
    acme = ingest.Ingestor(make_config("acme", KEYS, topics=rules(module)), KEYS["acme"], clock=lambda: 1.0)

    def outcome(n, amount, city):
        envelope = e2e.seal({"order": n, "amount": amount, "status": "new", "ship": {"city": city}},
                            "com.orders.eu", KEYS["globex"], [KEYS["acme"].public])
        return acme.process(n, "com.orders.eu", [envelope])

    assert isinstance(outcome(1, 10.0, "Lyon"), ingest.Record)
    refused = outcome(2, 5000.0, "Lyon")
    assert (refused.reason, refused.message) == (
        "rejected", f"{module}:credit_limit: amount 5000.0 is over the credit limit of 1000")
    assert refused.message_id and refused.payload  # the envelope kept as received
    assert outcome(3, 10.0, "Atlantis").message == f"{module}:known_city: no deliveries to Atlantis"
    failed = outcome(13, 10.0, "Lyon")
    assert (failed.reason, failed.message) == ("internal_error",
                                               f"validator {module}:broken failed: KeyError: 'unlucky'")


@pytest.mark.parametrize("target, message", [
    ("nocolon", "topics[0].validators[0]: 'nocolon' must be 'package.module:function'"),
    ("no_such_module_x:f", "topics[0].validators[0]: cannot import no_such_module_x: ModuleNotFoundError"),
    ("json:no_such_function", "topics[0].validators[0]: json has no function 'no_such_function'"),
])
def test_a_validator_that_cannot_be_loaded_is_refused_at_start(target, message):
    with pytest.raises(cfg.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cfg.parse(config_dict("acme", KEYS, topics=[{"uri": "com.orders.", "validators": [target]}]), cfg.Path("."))


@pytest_twisted.inlineCallbacks
def test_refused_records_are_quarantined_with_the_validators_message(tmp_path, world, router,  # noqa: F811
                                                                      connectors, module):  # noqa: F811
    acme = connectors("acme", pythonpath=tmp_path, topic_options=f'validators = ["{module}:credit_limit", '
                                                                  f'"{module}:known_city"]')
    publisher = yield connect_publisher(router)
    items = [(doc(1, 10.0, "new", "Lyon", "fine"), ["acme"]),
             (doc(2, 5000.0, "new", "Lyon", "too much"), ["acme"]),
             (doc(3, 10.0, "new", "Atlantis", "too far"), ["acme"]),
             (doc(4, 20.0, "paid", "Nice", "fine too"), ["acme"])]
    yield publish_all(publisher, world, items)
    status = yield until_stored(acme, 2, quarantined=2)
    assert (status["store"]["records"], status["store"]["quarantine"]) == (2, {"rejected": 2})
    page = yield get(acme, "/search", {"order": "created"})
    assert [r["document"]["order"] for r in page["records"]] == [1, 4]
    refused = yield get(acme, "/quarantine", {"reason": "rejected"})
    assert sorted(e["message"] for e in refused["entries"]) == [
        f"{module}:credit_limit: amount 5000.0 is over the credit limit of 1000",
        f"{module}:known_city: no deliveries to Atlantis"]
    assert all(e["size"] > 0 and e["message_id"] for e in refused["entries"])
    publisher.leave()
