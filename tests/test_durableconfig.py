"""[storage], [[realms.history]] and [[realms.mailboxes]]: defaults, and bad values named."""

import re
import subprocess
import sys

import pytest

from relayrouter import config as cfg
from relayrouter.config.durable import StorageConfig


def test_storage_defaults_to_sqlite_with_full_sync():
    assert cfg.parse({}).storage == StorageConfig()
    assert cfg.parse({}).storage.dsn is None


def test_storage_dsn_from_the_file_the_environment_or_a_file(tmp_path, monkeypatch):
    assert cfg.parse({"storage": {"dsn": "postgresql://relay@db/relay"}}).storage.dsn == "postgresql://relay@db/relay"
    monkeypatch.setenv("RR_DSN", "postgresql://relay:pw@db/relay")
    config = cfg.parse({"storage": {"dsn_env": "RR_DSN"}})
    assert config.storage.dsn == "postgresql://relay:pw@db/relay" and "pw" not in repr(config.storage)
    path = tmp_path / "dsn"
    path.write_text("postgresql://relay:pw@db/other\n")
    assert cfg.parse({"storage": {"dsn_file": str(path)}}).storage.dsn.endswith("/other")


@pytest.mark.parametrize("data, message", [
    ({"storage": {"dsn": "postgresql://u:secret@h/d"}}, "storage.dsn: has a password in it"),
    ({"storage": {"dsn": "mysql://h/d"}}, "storage.dsn: must be a postgresql:// URL"),
    ({"storage": {"dsn_env": "RR_SURELY_UNSET"}}, "storage.dsn_env: environment variable RR_SURELY_UNSET"),
    ({"storage": {"dsn_file": "/nonexistent/dsn"}}, "storage.dsn_file: cannot read"),
    ({"storage": {"dsn": "postgresql://h/d", "dsn_env": "X"}}, "storage: give one of dsn, dsn_env, dsn_file"),
    ({"storage": {"synchronous": "off"}}, "storage.synchronous: must be 'full' or 'normal'"),
    ({"storage": {"max_batch": 0}}, "storage.max_batch: must be positive"),
    ({"storage": {"dns": "x"}}, "storage.dns: unknown key"),
])
def test_bad_storage_values_name_the_key(data, message):
    with pytest.raises(cfg.ConfigError, match=re.escape(message)):
        cfg.parse(data)


def test_a_store_that_cannot_be_opened_stops_twistd_with_one_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[storage]\ndsn = "postgresql://nobody@127.0.0.1:1/none"\n'
                      '[[listeners]]\ntype = "websocket"\nendpoint = "tcp:0:interface=127.0.0.1"\n')
    run = subprocess.run([sys.executable, "-m", "twisted", "relayrouter", "--config", str(config),
                          "--state-dir", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "relayrouter: storage: cannot open PostgreSQL at postgresql://nobody@127.0.0.1:1/none" in output
    assert "Traceback" not in output


def test_history_rules_parse_with_defaults():
    from relayrouter.core.history import HistoryRule

    config = cfg.parse({"realms": [{"name": "r", "history": [
        {"uri": "sensor.", "match": "prefix", "limit": 50, "max_age": 3600},
        {"uri": "chat.room1"}]}, {"name": "plain"}]})
    assert config.realms[0].history == (HistoryRule("sensor.", "prefix", 50, 3600.0), HistoryRule("chat.room1"))
    assert config.realms[1].history is None


@pytest.mark.parametrize("rules, message", [
    ([{"match": "exact"}], "realms[0].history[0].uri: required"),
    ([{"uri": "a", "match": "fuzzy"}], "realms[0].history[0].match: must be exact, prefix or wildcard"),
    ([{"uri": "a..b"}], "realms[0].history[0].uri:"),
    ([{"uri": "a", "limit": 0}], "realms[0].history[0].limit: must be positive"),
    ([{"uri": "a", "max_age": -1}], "realms[0].history[0].max_age: must be a number of seconds"),
    ([{"uri": "a", "keep": 1}], "realms[0].history[0].keep: unknown key"),
    ([{"uri": "a"}, {"uri": "a"}], "realms[0].history[1].uri: 'a' (exact) has a rule already"),
    ({"uri": "a"}, "realms[0].history: must be an array of tables"),
])
def test_bad_history_rules_name_the_key(rules, message):
    with pytest.raises(cfg.ConfigError, match=re.escape(message)):
        cfg.parse({"realms": [{"name": "r", "history": rules}]})


def test_mailbox_rules_parse_with_defaults(monkeypatch):
    from relayrouter.core.mailbox import MailboxRule

    monkeypatch.setenv("RR_MB_SECRET", "a-long-enough-secret")
    config = cfg.parse({"realms": [{"name": "r", "mailboxes": [
        {"uri": "mailbox.{authid}", "token_secret_env": "RR_MB_SECRET"},
        {"uri": "team.{team}.inbox", "http": "open", "overflow": "drop-oldest", "max_age": 0}]}]})
    first, second = config.realms[0].mailboxes
    assert first == MailboxRule("mailbox.{authid}", token_secret=b"a-long-enough-secret")
    assert "a-long-enough-secret" not in repr(first)
    assert (second.owner_field, second.http, second.overflow, second.max_age) == ("team", "open", "drop-oldest", 0.0)
    assert (first.max_messages_per_sender, first.max_bytes_per_sender) == (1000, 8 * 1024 * 1024)


def test_a_senders_share_defaults_within_the_mailboxs_bounds():
    config = cfg.parse({"realms": [{"name": "r", "mailboxes": [
        {"uri": "small.{authid}", "http": "open", "max_messages": 5, "max_bytes": 4096},
        {"uri": "big.{authid}", "http": "open", "max_message_bytes": 16 * 1024 * 1024}]}]})
    small, big = config.realms[0].mailboxes
    assert (small.max_messages_per_sender, small.max_bytes_per_sender) == (5, 4096)
    assert big.max_bytes_per_sender == 16 * 1024 * 1024  # one message of the largest size always fits


@pytest.mark.parametrize("rule, message", [
    ({"uri": "mailbox.agent", "http": "open"}, "realms[0].mailboxes[0].uri: must hold exactly one placeholder"),
    ({"uri": "a.{x}.{y}", "http": "open"}, "must hold exactly one placeholder"),
    ({"uri": "mailbox..{authid}", "http": "open"}, "realms[0].mailboxes[0].uri:"),
    ({"uri": "m.{authid}"}, "realms[0].mailboxes[0]: http = \"token\" (the default) needs token_secret_env"),
    ({"uri": "m.{authid}", "http": "open", "token_secret_env": "X"}, "token_secret_* is only for"),
    ({"uri": "m.{authid}", "http": "maybe"}, "realms[0].mailboxes[0].http: must be token, open or off"),
    ({"uri": "m.{authid}", "http": "open", "overflow": "drop"}, "realms[0].mailboxes[0].overflow"),
    ({"uri": "m.{authid}", "http": "open", "max_bytes": 10, "max_message_bytes": 11},
     "realms[0].mailboxes[0].max_message_bytes: larger than max_bytes"),
    ({"uri": "m.{authid}", "http": "open", "visibility_timeout": 0}, "visibility_timeout: must be a positive"),
    ({"uri": "m.{authid}", "http": "open", "max_mesages": 1}, "realms[0].mailboxes[0].max_mesages: unknown key"),
    ({"uri": "m.{authid}", "token_secret_env": "RR_MB_SHORT"}, "at least 16 characters"),
    ({"uri": "m.{authid}", "http": "open", "max_messages": 10, "max_messages_per_sender": 11},
     "realms[0].mailboxes[0].max_messages_per_sender: larger than max_messages (10)"),
    ({"uri": "m.{authid}", "http": "open", "max_messages_per_sender": 0},
     "realms[0].mailboxes[0].max_messages_per_sender"),
    ({"uri": "m.{authid}", "http": "open", "max_bytes": 100, "max_message_bytes": 10, "max_bytes_per_sender": 101},
     "realms[0].mailboxes[0].max_bytes_per_sender: larger than max_bytes (100)"),
    ({"uri": "m.{authid}", "http": "open", "max_message_bytes": 100, "max_bytes_per_sender": 99},
     "realms[0].mailboxes[0].max_bytes_per_sender: smaller than max_message_bytes (100)"),
])
def test_bad_mailbox_rules_name_the_key(rule, message, monkeypatch):
    monkeypatch.setenv("RR_MB_SHORT", "short")
    with pytest.raises(cfg.ConfigError, match=re.escape(message)):
        cfg.parse({"realms": [{"name": "r", "mailboxes": [rule]}]})
