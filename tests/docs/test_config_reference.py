"""The configuration reference (docs/_ext/config_keys.py) is made from the checkers and holds the pages to them:
every key the checker accepts is described on a reference page, and every key a page describes is accepted."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import config_keys  # noqa: E402

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("component", sorted(config_keys.COMPONENTS))
def test_every_key_is_described_and_every_description_is_a_key(component):
    assert config_keys.problems(component) == []


def test_the_keys_come_from_the_checks():
    keys = {k.path: k for k in config_keys.keys_of("router")}
    assert keys["limits.max_message_size"].kind == "integer"
    assert keys["limits.max_message_size"].default == "`16777216`"
    assert keys["realms[].name"].default == "required"
    assert keys["realms[].auth.wampcra.principals[].salt"].default == "none"  # read only when given
    assert keys["storage.dsn_env"].environment
    search = {k.path: k for k in config_keys.keys_of("decrypt-search")}
    assert search["store.backend"].default == '`"sqlite"`'
    assert search["topics[].uri"].default == "required"


def test_a_key_no_page_describes_fails(monkeypatch):
    described = config_keys.described("router")
    del described["limits.max_depth"]
    monkeypatch.setattr(config_keys, "described", lambda component: described)
    assert any("limits.max_depth is accepted by the code but described in no key table" in p
               for p in config_keys.problems("router"))


def test_a_described_key_the_checker_refuses_fails(monkeypatch):
    described = dict(config_keys.described("router"), **{"limits.max_depths": ("router", 1, "a typo")})
    monkeypatch.setattr(config_keys, "described", lambda component: described)
    assert "reference/router.md:1: key limits.max_depths is not accepted by the code" in \
        config_keys.problems("router")


def test_a_table_no_example_reaches_fails(monkeypatch):
    recorder = config_keys.recorded("decrypt-search")
    monkeypatch.setattr(recorder, "sites", set())
    assert any("checked for no example" in p for p in config_keys.problems("decrypt-search"))


def test_a_page_default_that_is_not_the_checkers_fails(monkeypatch):
    rows = config_keys.described_rows("router")
    page, line, meaning, _ = rows["realms.outbound.policy"]
    rows["realms.outbound.policy"] = (page, line, meaning, "`drop-newest`")
    monkeypatch.setattr(config_keys, "described_rows", lambda component: rows)
    assert config_keys.wrong_defaults("router") == [
        f"reference/router.md:{line}: realms.outbound.policy: the page's default `drop-newest` is not the checker's "
        "('drop-oldest')"]
