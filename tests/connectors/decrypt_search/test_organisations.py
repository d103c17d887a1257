"""Several organisations in one decrypt-search process: the listing file's checks,
and two organisations served by one real process against the real router."""

import json
import re
import sqlite3
import stat
import time

import pytest
import pytest_twisted

from connectors.decrypt_search import organisations, tap
from connectors.decrypt_search.service import DecryptSearch
from relayrouter import e2e
from relayrouter.e2e.wamp import publish_envelope

from ..processes import Child, twistd
from .support import (ORDER_SCHEMA, SUPPLIER, TICKETS, World, connect_publisher, connector_toml, get, post,
                      router_process, token)

GLOBEX_SECRET = "globex-own-api-secret-0123456789abcdefghij"


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def globex_auth(tmp_path) -> str:
    secret = tmp_path / "globex-jwt.secret"
    if not secret.exists():
        secret.write_text(GLOBEX_SECRET)
        secret.chmod(0o600)
    return f'algorithms = ["HS256"]\naudience = "decrypt-search"\n[[http.auth.keys]]\nsecret_file = "{secret}"\n'


def write_listing(tmp_path, world, entries: dict, extra_entry: str = "", listen: dict | None = None,
                  auth: dict | None = None) -> str:
    """acme/ and globex/ each with an ordinary configuration, and the listing naming them."""
    lines = []
    for me, entry in entries.items():
        folder = tmp_path / "orgs" / me
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "order.schema.json").write_text(json.dumps(ORDER_SCHEMA))
        text = connector_toml(world, me, http_auth=(auth or {}).get(me, globex_auth(tmp_path) if me == "globex"
                                                                     else ""))
        if listen and me in listen:
            text = text.replace('listen = "tcp:0:interface=127.0.0.1"', f'listen = "{listen[me]}"')
        (folder / "decrypt-search.toml").write_text(text)
        (folder / "router.ticket").write_text(TICKETS[me])
        (folder / "router.ticket").chmod(0o600)
        lines.append(f'[[organisations]]\nconfig = "{me}/decrypt-search.toml"\n{entry}\n')
    listing = tmp_path / "orgs" / "organisations.toml"
    listing.write_text("\n".join(lines) + extra_entry)
    return str(listing)


def identity(me):
    return f'authid = "{me}-connector"\nticket_file = "{me}/router.ticket"'


@pytest.fixture
def parse(tmp_path, monkeypatch):
    monkeypatch.delenv(tap.KEY_ENV, raising=False)

    def parse_(listing, *extra, env=None):
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        opts = tap.Options()
        opts.parseOptions(["--config", listing, "--state-dir", str(tmp_path / "state"), *extra])
        return opts

    return parse_


# ------------------------------------------------------------ the listing's checks

def test_a_listing_prepares_each_organisation_with_its_own_key_identity_and_state(tmp_path, world, parse):
    listing = write_listing(tmp_path, world, {"acme": identity("acme"), "globex": identity("globex")})
    opts = parse(listing)
    acme, globex = opts.organisations
    assert (acme.organisation.config.org, globex.organisation.config.org) == ("acme", "globex")
    assert acme.keys.public == world.public("acme") and globex.keys.public == world.public("globex")
    assert acme.settings.credentials.authid == "acme-connector"
    assert acme.settings.credentials.secret == TICKETS["acme"]
    assert globex.settings.credentials.secret == TICKETS["globex"]
    assert acme.settings.payload_passthru and globex.settings.payload_passthru
    top = tap.makeService(opts)
    children = {s.name: s for s in top}
    assert set(children) == {"organisation acme", "organisation globex"}
    assert all(isinstance(s, DecryptSearch) for s in children.values())
    for me in ("acme", "globex"):
        state = tmp_path / "state" / me
        assert (state / "records.sqlite3").exists()
        assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_without_an_identity_an_organisation_uses_the_command_lines(tmp_path, world, parse):
    listing = write_listing(tmp_path, world, {"acme": "", "globex": ""})
    opts = parse(listing, "--authid", "shared", env={"DECRYPT_SEARCH_TICKET": "a-shared-ticket"})
    assert {p.settings.credentials.authid for p in opts.organisations} == {"shared"}


@pytest.mark.parametrize("entries, extra, message", [
    ({"acme": "", "globex": ""}, '[[organisations]]\nconfig = "acme/decrypt-search.toml"\nstate_dir = "other"\n',
     r"organisations\[2\]\.config: organisation\.name 'acme' is also organisations\[0\]'s"),
    ({"acme": 'state_dir = "shared"', "globex": 'state_dir = "shared"'}, "",
     r"organisations\[1\]\.state_dir: 'shared' is also organisations\[0\]'s state directory"),
    ({"acme": 'state_dir = "../elsewhere"', "globex": ""}, "",
     r"organisations\[0\]\.state_dir: '\.\./elsewhere' must be a plain directory name"),
    ({"acme": 'colour = "red"', "globex": ""}, "", r"organisations\[0\]\.colour: unknown key"),
    ({"acme": 'authid = 3', "globex": ""}, "", r"organisations\[0\]\.authid: must be a non-empty string"),
])
def test_what_two_organisations_would_share_is_refused_naming_the_key(tmp_path, world, parse, entries, extra,
                                                                     message):
    listing = write_listing(tmp_path, world, entries, extra_entry=extra)
    with pytest.raises(SystemExit, match=message):
        parse(listing)


def test_the_same_store_file_or_http_endpoint_is_refused(tmp_path, world, parse):
    listing = write_listing(tmp_path, world, {"acme": "", "globex": ""},
                            listen={"acme": "tcp:18431:interface=127.0.0.1", "globex": "tcp:18431"})
    with pytest.raises(SystemExit, match=r"organisations\[1\] \(.*globex.*\): http\.listen\[0\] 'tcp:18431': "
                                         r"the same endpoint as organisations\[0\]'s"):
        parse(listing)
    shared = tmp_path / "shared.sqlite3"
    listing = write_listing(tmp_path, world, {"acme": "", "globex": ""})
    for me in ("acme", "globex"):
        path = tmp_path / "orgs" / me / "decrypt-search.toml"
        path.write_text(path.read_text() + f'\n[store]\npath = "{shared}"\n')
    with pytest.raises(SystemExit, match=r"organisations\[1\]\.config: store .*shared\.sqlite3 is also "
                                         r"organisations\[0\]'s"):
        parse(listing)


def test_an_api_key_both_organisations_accept_is_refused(tmp_path, world, parse):
    listing = write_listing(tmp_path, world, {"acme": "", "globex": ""}, auth={"globex": ""})  # acme's secret too
    with pytest.raises(SystemExit, match=r"organisations\[1\] .*http\.auth\.keys: a key that organisations\[0\]'s "
                                         r"API accepts too"):
        parse(listing)
    told_apart = ('algorithms = ["HS256"]\naudience = "globex-search"\n[[http.auth.keys]]\n'
                  f'secret_file = "{world.jwt_secret_file}"\n')
    listing = write_listing(tmp_path, world, {"acme": "", "globex": ""}, auth={"globex": told_apart})
    assert len(parse(listing).organisations) == 2


def test_a_loose_key_file_names_the_organisation(tmp_path, world, parse):
    listing = write_listing(tmp_path, world, {"acme": "", "globex": ""})
    (world.dir / "globex.key").chmod(0o640)
    with pytest.raises(SystemExit, match=r"organisations\[1\] \(.*globex.*\): key file .* loose permissions 0640"):
        parse(listing)
    (world.dir / "globex.key").chmod(0o600)
    (tmp_path / "orgs" / "acme" / "router.ticket").chmod(0o644)
    listing = write_listing(tmp_path, world, {"acme": identity("acme"), "globex": ""})
    (tmp_path / "orgs" / "acme" / "router.ticket").chmod(0o644)
    with pytest.raises(SystemExit, match=r"organisations\[0\] .*organisations\[0\]\.ticket_file: .* accessible "
                                         r"by group or others"):
        parse(listing)


@pytest.mark.parametrize("args, env, message", [
    (["--key-file", "k"], {}, r"--key-file \(DECRYPT_SEARCH_KEY_FILE\): not with a listing of organisations"),
    (["--http", "tcp:0"], {}, r"--http \(DECRYPT_SEARCH_HTTP\): not with a listing of organisations"),
    ([], {"DECRYPT_SEARCH_KEY": "{}"}, r"DECRYPT_SEARCH_KEY: not with a listing of organisations"),
])
def test_process_wide_key_and_listener_options_are_refused(tmp_path, world, parse, args, env, message):
    listing = write_listing(tmp_path, world, {"acme": "", "globex": ""})
    with pytest.raises(SystemExit, match=message):
        parse(listing, *args, env=env)


def test_an_organisation_must_name_its_own_key(tmp_path, world, parse):
    listing = write_listing(tmp_path, world, {"acme": "", "globex": ""})
    path = tmp_path / "orgs" / "globex" / "decrypt-search.toml"
    path.write_text(re.sub(r'key_file = ".*"\n', "", path.read_text(), count=1))
    with pytest.raises(SystemExit, match=r"organisations\[1\] .*organisation\.key_file or organisation\.key_env: "
                                         "required"):
        parse(listing)


def test_a_bad_organisation_file_refuses_the_whole_start_naming_it(tmp_path, world, parse):
    listing = write_listing(tmp_path, world, {"acme": "", "globex": ""})
    path = tmp_path / "orgs" / "globex" / "decrypt-search.toml"
    path.write_text(path.read_text().replace('match = "prefix"', 'match = "fuzzy"'))
    with pytest.raises(SystemExit, match=r"organisations\[1\] \(.*globex/decrypt-search\.toml\): topics\[0\]\.match"):
        parse(listing)


def test_a_listing_with_other_tables_or_no_entries_is_refused(tmp_path, parse):
    listing = tmp_path / "l.toml"
    listing.write_text('organisations = []\n')
    with pytest.raises(SystemExit, match=r"organisations: must be a non-empty array of tables"):
        parse(str(listing))
    listing.write_text('[[organisations]]\nconfig = "a.toml"\n[http]\nlisten = "tcp:0"\n')
    with pytest.raises(SystemExit, match=r"configuration error: http: unknown key \(a listing"):
        parse(str(listing))
    listing.write_text('[[organisations]]\nstate_dir = "a"\n')
    with pytest.raises(SystemExit, match=r"organisations\[0\]\.config: required"):
        parse(str(listing))


def test_endpoint_keys():
    keys = organisations._endpoint_keys
    assert keys("tcp:0:interface=127.0.0.1") == []
    assert keys("tcp:8080") == keys("tcp:port=8080:interface=0.0.0.0") == [("tcp", "8080", "*")]
    assert keys("tcp:8080:interface=127.0.0.1") == [("tcp", "8080", "127.0.0.1")]
    assert keys("unix:/run/ds.sock") == keys("unix:address=/run/ds.sock") == [("unix", "/run/ds.sock")]


def test_same_endpoint():
    same = organisations._same_endpoint
    assert same(("tcp", "80", "*"), ("tcp", "80", "127.0.0.1"))
    assert same(("tcp", "80", "127.0.0.1"), ("tcp", "80", "127.0.0.1"))
    assert not same(("tcp", "80", "127.0.0.1"), ("tcp", "80", "127.0.0.2"))
    assert not same(("tcp", "80", "*"), ("tcp", "81", "*"))


def test_different_ports_or_interfaces_are_apart(tmp_path, world):
    listing = write_listing(tmp_path, world, {"acme": "", "globex": ""},
                            listen={"acme": "tcp:18432:interface=127.0.0.1", "globex": "tcp:18432:interface=127.0.0.2"})
    assert len(organisations.load(listing)) == 2


# ------------------------------------------------------------ one process, two organisations, end to end

class Api:
    """One organisation's HTTP API in the shared process, for support.get / post / until_stored."""

    def __init__(self, child: Child, port: int) -> None:
        self.child = child
        self.url = f"http://127.0.0.1:{port}"

    def describe(self) -> str:
        return self.child.describe()


def start_process(child: Child) -> dict:
    """Start it; each organisation's API by the port its listener logged."""
    child.start()
    ports = {}
    while len(ports) < 2:
        match = child.wait_for(re.compile(r"decrypt-search (acme|globex) listening: http://127\.0\.0\.1:(\d+)/"))
        ports[match.group(1)] = int(match.group(2))
    joined = set()
    while len(joined) < 2:
        joined.add(child.wait_for(re.compile(r"joined realm trade at .* as (acme|globex)-connector")).group(1))
    return {me: Api(child, port) for me, port in ports.items()}


def doc(n, note):
    return {"order": n, "amount": float(n), "status": "new", "ship": {"city": "Lyon"}, "note": note}


@pytest.fixture
def router(tmp_path):
    proc = router_process(tmp_path)
    proc.start()
    yield proc
    proc.stop()


@pytest_twisted.inlineCallbacks
def test_two_organisations_in_one_process_stay_apart_and_survive_kill_9(tmp_path, world, router):
    listing = write_listing(tmp_path, world, {"acme": identity("acme"), "globex": identity("globex")})
    state = tmp_path / "state"
    child = Child("decrypt-search-orgs", twistd(
        "decrypt-search", "--config", listing, "--router", router.ws_url, "--realm", "trade",
        "--state-dir", state, "--retry-initial", "0.1", "--retry-max", "1"))
    tokens = {"acme": token(), "globex": token(secret=GLOBEX_SECRET)}
    try:
        apis = start_process(child)
        publisher = yield connect_publisher(router)
        supplier = world.keys[SUPPLIER]
        sent = {"acme": [1, 2, 3], "globex": [10, 11]}
        for me, numbers in sent.items():
            for n in numbers:
                envelope = e2e.seal(doc(n, f"for {me} only"), "com.orders.eu", supplier, [world.public(me)])
                yield publish_envelope(publisher, "com.orders.eu", envelope, acknowledge=True)
        for me, numbers in sent.items():
            status = yield until_stored(apis[me], tokens[me], len(numbers), quarantined=5 - len(numbers))
            assert status["organisation"] == me
            assert status["store"]["quarantine"] == {"not_addressed": 5 - len(numbers)}

        @pytest_twisted.inlineCallbacks
        def seen(me):
            page = yield get(apis[me], "/search", {"order": "n", "topic": "com.orders.eu"}, bearer=tokens[me])
            return [r["document"]["order"] for r in page["records"]]

        for me, numbers in sent.items():
            assert (yield seen(me)) == numbers
        # each one's token is a stranger on the other's API
        refused = yield get(apis["globex"], "/search", bearer=tokens["acme"], expect=401)
        assert "signature" in refused["message"]
        yield get(apis["acme"], "/search", bearer=tokens["globex"], expect=401)
        # each publishes on its own behalf, with its own key: the other verifies the sender
        yield post(apis["acme"], "/publish", {"topic": "com.notes", "document": {"text": "from acme"},
                                              "recipients": ["globex"]}, bearer=tokens["acme"])
        note = None
        for _ in range(200):
            note = yield get(apis["globex"], "/search", {"topic": "com.notes"}, bearer=tokens["globex"])
            if note["records"]:
                break
            yield _later(0.05)
        assert [(r["sender"], r["document"]) for r in note["records"]] == [("acme", {"text": "from acme"})]

        # separate stores: each file holds only its organisation's records
        counts = {me: _count(state / me / "records.sqlite3") for me in sent}
        assert counts == {"acme": 4, "globex": 3}  # acme: 3 + its own note; globex: 2 + acme's note

        child.kill9()
        for me, numbers in {"acme": [4], "globex": [12]}.items():
            for n in numbers:
                envelope = e2e.seal(doc(n, f"while down {me}"), "com.orders.eu", supplier, [world.public(me)])
                yield publish_envelope(publisher, "com.orders.eu", envelope, acknowledge=True)
        apis = start_process(child)
        yield until_stored(apis["acme"], tokens["acme"], 5)
        yield until_stored(apis["globex"], tokens["globex"], 4)
        assert (yield seen("acme")) == [1, 2, 3, 4]
        assert (yield seen("globex")) == [10, 11, 12]
        assert tokens["acme"] not in child.output() and TICKETS["acme"] not in child.output()
        assert child.new_faults() == []
    finally:
        child.stop()


def test_one_organisation_that_cannot_start_stops_the_process(tmp_path, world, router):
    listing = write_listing(tmp_path, world, {"acme": identity("acme"), "globex": identity("globex")})
    (world.dir / "globex.key").chmod(0o644)
    child = Child("decrypt-search-orgs", twistd(
        "decrypt-search", "--config", listing, "--router", router.ws_url, "--realm", "trade",
        "--state-dir", tmp_path / "state"))
    child.start()
    try:
        child.wait_for(r"configuration error: organisations\[1\] .*globex.* loose permissions 0644")
        assert child.proc.wait(30) != 0
        assert "joined realm" not in child.output()
    finally:
        child.stop()


@pytest_twisted.inlineCallbacks
def until_stored(api: Api, bearer: str, count: int, quarantined: int = 0):
    """Poll the organisation's /status (with its own token) until it has stored ``count`` records."""
    deadline = time.monotonic() + 30
    while True:
        status = yield get(api, "/status", bearer=bearer)
        store = status["store"]
        if store["records"] >= count and sum(store["quarantine"].values()) >= quarantined:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{store}, waiting for {count} records\n{api.describe()}")
        yield _later(0.05)


def _count(path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT count(*) FROM records").fetchone()[0]


def _later(seconds):
    from twisted.internet import reactor, task
    return task.deferLater(reactor, seconds, lambda: None)

