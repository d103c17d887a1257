"""[cluster]: checks naming the key, secrets from env/file, and no NATS client
without the section."""

import itertools
import os
import subprocess
import sys

import pytest

from relayrouter import config as cfg
from relayrouter.cluster import subjects
from relayrouter.core.matching import pattern_matches

BASE = {"nats": ["nats://127.0.0.1:4222"], "node": "n1"}


def parse(**cluster):
    return cfg.parse({"cluster": cluster}).cluster


def test_without_the_section_there_is_no_cluster():
    assert cfg.parse({}).cluster is None


def test_a_minimal_section():
    c = parse(**BASE)
    assert c.servers == ("nats://127.0.0.1:4222",) and c.node == "n1" and c.subject_prefix == "relayrouter"
    assert c.user is None and c.token is None and c.tls is None
    assert c.loop == "thread" and parse(**BASE, loop="reactor").loop == "reactor"
    assert c.prefer_local_callees is False and parse(**BASE, prefer_local_callees=True).prefer_local_callees
    assert (c.resume_window, c.resume_limit) == (5.0, 30.0)
    assert parse(**BASE, resume_window=0.5, resume_limit=2).resume_limit == 2.0


@pytest.mark.parametrize("cluster, message", [
    ({"node": "n1"}, "cluster.nats: required"),
    ({"nats": [], "node": "n1"}, "cluster.nats: must be a non-empty list"),
    ({"nats": "nats://x:4222", "node": "n1"}, "cluster.nats: must be a non-empty list"),
    ({"nats": ["http://x:4222"], "node": "n1"}, "cluster.nats[0]: 'http://x:4222' is not a NATS URL"),
    ({**BASE, "node": "a.b"}, "cluster.node: 'a.b' must be"),
    ({**BASE, "node": "a b"}, "cluster.node: 'a b' must be"),
    ({**BASE, "subject_prefix": "x.>"}, "cluster.subject_prefix: 'x.>' must be"),
    ({**BASE, "nodes": 3}, "cluster.nodes: unknown key"),
    ({**BASE, "reconnect_wait": 0}, "cluster.reconnect_wait: must be a positive number"),
    ({**BASE, "max_pending_bytes": 10}, "cluster.max_pending_bytes: must be at least"),
    ({**BASE, "heartbeat_interval": 2, "heartbeat_ttl": 3}, "cluster.heartbeat_ttl: must be at least twice"),
    ({**BASE, "heartbeat_interval": -1}, "cluster.heartbeat_interval: must be a positive number"),
    ({**BASE, "user": "u"}, "cluster.password_env: give password_env or password_file with user"),
    ({**BASE, "password_env": "CLUSTER_TEST_PW"}, "cluster.user: required with password_env"),
    ({**BASE, "token_env": "CLUSTER_TEST_UNSET"}, "cluster.token_env: environment variable CLUSTER_TEST_UNSET"),
    ({**BASE, "tls": {"certificate": "/nonexistent.pem"}}, "cluster.tls.certificate: cannot read"),
    ({**BASE, "tls": {"verify": True}}, "cluster.tls.verify: unknown key"),
    ({**BASE, "loop": "asyncio"}, 'cluster.loop: must be "thread" or "reactor" (with twistd --reactor=asyncio), '
                                  "not 'asyncio'"),
    ({**BASE, "loop": 1}, "cluster.loop: must be"),
    ({**BASE, "prefer_local_callees": "yes"}, "cluster.prefer_local_callees: must be"),
    ({**BASE, "resume_window": 0}, "cluster.resume_window: must be a positive number of seconds"),
    ({**BASE, "resume_window": "5s"}, "cluster.resume_window: must be"),
    ({**BASE, "resume_limit": -1}, "cluster.resume_limit: must be a positive number of seconds"),
    ({**BASE, "resume_limit": 0.5}, "cluster.resume_limit: must be at least 1 s"),
])
def test_errors_name_the_key(cluster, message, monkeypatch):
    monkeypatch.setenv("CLUSTER_TEST_PW", "pw")
    monkeypatch.delenv("CLUSTER_TEST_UNSET", raising=False)
    with pytest.raises(cfg.ConfigError) as e:
        parse(**cluster)
    assert message in str(e.value)


def test_credentials_from_env_and_file_never_shown(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTER_TEST_PW", "s3cret-password")
    c = parse(**BASE, user="router", password_env="CLUSTER_TEST_PW")
    assert (c.user, c.password) == ("router", "s3cret-password") and "s3cret" not in repr(c)
    token = tmp_path / "token"
    token.write_text("tok-0123456789\n")
    token.chmod(0o600)
    c = parse(**BASE, token_file=str(token))
    assert c.token == "tok-0123456789" and "tok-" not in repr(c)
    with pytest.raises(cfg.ConfigError, match="cluster.token_env: give either user/password or a token"):
        parse(**BASE, user="router", password_env="CLUSTER_TEST_PW", token_file=str(token))
    token.chmod(0o644)
    with pytest.raises(cfg.ConfigError, match=r"cluster.token_file: .* is readable by others \(mode 644\)"):
        parse(**BASE, token_file=str(token))


def _user_seed() -> str:
    import nkeys

    return nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()


def test_nkey_seed_from_env_or_file_checked_and_never_shown(tmp_path, monkeypatch):
    seed = _user_seed()
    monkeypatch.setenv("CLUSTER_TEST_SEED", seed)
    c = parse(**BASE, nkey_seed_env="CLUSTER_TEST_SEED")
    assert c.nkey_seed == seed and seed not in repr(c) and "nkey_seed=set" in repr(c)
    seed_file = tmp_path / "router.nk"
    seed_file.write_text(seed + "\n")
    seed_file.chmod(0o600)
    assert parse(**BASE, nkey_seed_file=str(seed_file)).nkey_seed == seed
    seed_file.chmod(0o640)
    with pytest.raises(cfg.ConfigError, match=r"cluster.nkey_seed_file: .* is readable by others \(mode 640\)"):
        parse(**BASE, nkey_seed_file=str(seed_file))
    broken = seed[:-2] + ("AA" if not seed.endswith("AA") else "BB")
    monkeypatch.setenv("CLUSTER_TEST_SEED", broken)
    with pytest.raises(cfg.ConfigError) as e:
        parse(**BASE, nkey_seed_env="CLUSTER_TEST_SEED")
    assert str(e.value).startswith("cluster.nkey_seed_env: not a valid nkey seed") and broken not in str(e.value)
    monkeypatch.setenv("CLUSTER_TEST_SEED", "UAXXXXXXXX")
    with pytest.raises(cfg.ConfigError, match="cluster.nkey_seed_env: not an nkey user seed"):
        parse(**BASE, nkey_seed_env="CLUSTER_TEST_SEED")
    monkeypatch.setenv("CLUSTER_TEST_SEED", seed)
    monkeypatch.setenv("CLUSTER_TEST_PW", "pw")
    with pytest.raises(cfg.ConfigError, match="cluster: give one way to authenticate to NATS, not user/password "
                                              "and nkey_seed"):
        parse(**BASE, user="u", password_env="CLUSTER_TEST_PW", nkey_seed_env="CLUSTER_TEST_SEED")


def test_a_creds_file_is_checked_private_and_whole(tmp_path):
    seed = _user_seed()
    creds = tmp_path / "router.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\neyJ0eXAi.eyJqdGki.c2ln\n------END NATS USER JWT------\n\n"
                     f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n")
    creds.chmod(0o600)
    c = parse(**BASE, credentials_file=str(creds))
    assert c.credentials_file == str(creds) and seed not in repr(c)
    creds.chmod(0o604)
    with pytest.raises(cfg.ConfigError, match=r"cluster.credentials_file: .* is readable by others"):
        parse(**BASE, credentials_file=str(creds))
    creds.write_text("just a token\n")
    creds.chmod(0o600)
    with pytest.raises(cfg.ConfigError, match="cluster.credentials_file: .* is not a NATS creds file"):
        parse(**BASE, credentials_file=str(creds))
    with pytest.raises(cfg.ConfigError, match="cluster.credentials_file: cannot read"):
        parse(**BASE, credentials_file=str(tmp_path / "missing.creds"))
    token = tmp_path / "token"
    token.write_text("t\n")
    token.chmod(0o600)
    creds.write_text(f"-----BEGIN NATS USER JWT-----\na.b.c\n-\n-----BEGIN USER NKEY SEED-----\n{seed}\n-\n")
    with pytest.raises(cfg.ConfigError, match="not token and credentials_file"):
        parse(**BASE, token_file=str(token), credentials_file=str(creds))


def test_a_tls_key_readable_by_others_is_refused(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    key.chmod(0o640)
    with pytest.raises(cfg.ConfigError, match="cluster.tls.key: .* is readable by others"):
        parse(**BASE, tls={"certificate": str(cert), "key": str(key)})
    key.chmod(0o600)
    with pytest.raises(cfg.ConfigError, match="cluster.tls: give certificate and key together"):
        parse(**BASE, tls={"key": str(key)})
    tls = parse(**BASE, tls={"certificate": str(cert), "key": str(key), "hostname": "nats.lab"}).tls
    assert (tls.certificate, tls.key, tls.hostname) == (str(cert), str(key), "nats.lab")


IMPORTS = """
import sys, tempfile
from relayrouter import config as cfg
from relayrouter.service import RouterService
data = {"state_dir": tempfile.mkdtemp(), "listeners": [{"type": "websocket", "endpoint": "tcp:0"}]}
if sys.argv[1] == "clustered":
    data["cluster"] = {"nats": ["nats://127.0.0.1:1"], "node": "n1"}
RouterService(cfg.parse(data).with_defaults())
print(",".join(sorted(m for m in sys.modules if m == "nats" or m.startswith("nats."))))
"""


@pytest.mark.parametrize("mode", ["alone", "clustered"])
def test_the_nats_client_is_imported_only_with_a_cluster_section(mode):
    out = subprocess.run([sys.executable, "-c", IMPORTS, mode], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=os.getcwd()))
    if mode == "alone":
        assert out.stdout.strip() == ""
    else:
        assert "nats" in out.stdout.strip().split(",")


# ------------------------------------------------------------ subjects

def test_components_are_escaped_into_one_token_each():
    for component in ("plain", "a*b", "x>", "50%", "tab\there", "größe", "", "-_AZaz09"):
        token = subjects.escape(component)
        assert not ({".", "*", ">", " ", "\t"} & set(token)) and token
        assert all(" " < c <= "~" for c in token)
        assert subjects.unescape(token) == component
    assert subjects.escape("a*b") == "a%2Ab" and subjects.escape("") == "%"
    assert subjects.escape("lab.one", dots=True) == "lab%2Eone"
    base = subjects.realm_base("relayrouter", "lab.one")
    assert base == "relayrouter.ev.lab%2Eone"
    assert subjects.event_subject(base, "com.a*.x") == "relayrouter.ev.lab%2Eone.com.a%2A.x"


@pytest.mark.parametrize("uri, match, subject", [
    ("com.lab.temp", "exact", "R.com.lab.temp"),
    ("com..temp", "wildcard", "R.com.*.temp"),
    ("..", "wildcard", "R.*.*.*"),
    ("com.lab.t", "prefix", "R.com.lab.>"),
    ("com.lab.", "prefix", "R.com.lab.>"),
    ("com", "prefix", "R.>"),
    ("", "prefix", "R.>"),
])
def test_interest_subjects(uri, match, subject):
    assert subjects.interest_subject("R", uri, match) == subject


def _nats_matches(pattern: str, subject: str) -> bool:
    """NATS's own subject matching rule ('*' one token, '>' one or more at the end)."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


@pytest.mark.parametrize("uri, match", [("com.lab.t", "prefix"), ("com.lab.", "prefix"), ("c", "prefix"),
                                        ("com..temp", "wildcard"), ("com.lab.temp", "exact")])
def test_every_topic_a_pattern_matches_reaches_its_subject(uri, match):
    """The NATS subscription is never narrower than the WAMP pattern (it may be coarser for a prefix)."""
    topics = ["com.lab.temp", "com.lab.tx", "com.lab.t", "com.lab", "com.zoo.temp", "c", "cx.y", "com.lab.t.deep",
              "com.l*b.temp", "org.lab.temp"]
    for topic in topics:
        if pattern_matches(uri, match, topic):
            assert _nats_matches(subjects.interest_subject("R", uri, match), subjects.event_subject("R", topic))


def test_an_event_subject_is_its_topic_escaped_component_by_component():
    """event_subject's shortcut for a topic with nothing to escape gives what escaping each
    component gives, for every topic of up to three characters over the awkward ones."""
    alphabet = ["a", ".", "%", "*", ">", " ", "\x00", "\x7f", "~", "!", "-", "/", "=", "?", "é"]
    for n in range(4):
        for topic in map("".join, itertools.product(alphabet, repeat=n)):
            expected = "R." + ".".join(subjects.escape(c) for c in topic.split("."))
            assert subjects.event_subject("R", topic) == expected, repr(topic)


def test_replicas_default_to_the_nats_servers_and_are_checked():
    assert parse(**BASE).replicas is None  # as many as the NATS servers known, up to 3
    assert parse(**BASE, replicas=3).replicas == 3
    for wrong in (0, 6, -1, 2.5, "3", True):
        with pytest.raises(cfg.ConfigError, match=r"^cluster\.replicas: must be a whole number from 1 to 5"):
            parse(**BASE, replicas=wrong)


def _realm(**what):
    return {"name": "realm1", **what}


@pytest.mark.parametrize("data, names", [
    ({"realms": [_realm(mailboxes=[{"uri": "mailbox.{authid}", "http": "off"}])]}, "realm 'realm1' (mailboxes)"),
    ({"realms": [_realm(history=[{"uri": "news"}])]}, "realm 'realm1' (history)"),
    ({"realm_templates": [_realm(history=[{"uri": "news"}], mailboxes=[{"uri": "mb.{authid}", "http": "off"}])]},
     "realm 'realm1' (mailboxes and history)"),
])
def test_a_clustered_node_with_mailboxes_or_history_needs_the_shared_database(data, names):
    with pytest.raises(cfg.ConfigError) as refused:
        cfg.parse({"cluster": BASE, **data})
    assert str(refused.value).startswith("storage.dsn: a clustered node ([cluster]) keeps mailboxes and event "
                                         "history in the PostgreSQL database every node shares")
    assert names in str(refused.value)
    shared = cfg.parse({"cluster": BASE, "storage": {"dsn": "postgresql://router@db.example/relay"}, **data})
    assert shared.storage.dsn and shared.cluster is not None
    assert cfg.parse(data).cluster is None  # alone, SQLite in the state directory stays the default
