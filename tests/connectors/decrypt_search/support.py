"""Configurations and keys for the decrypt-search tests."""

from pathlib import Path

from connectors.decrypt_search import config as cfg
from relayrouter.e2e.keys import FileKeys

ORDER_SCHEMA = {
    "type": "object",
    "required": ["order", "amount", "status"],
    "properties": {
        "order": {"type": "integer"},
        "amount": {"type": "number", "minimum": 0},
        "status": {"type": "string", "enum": ["new", "paid", "shipped"]},
        "placed": {"type": "string"},
        "note": {"type": "string"},
    },
}


def org_keys():
    return {name: FileKeys.generate(name) for name in ("acme", "globex", "initech")}


def config_dict(me: str, keys: dict, **overrides) -> dict:
    data = {
        "organisation": {"name": me},
        "peers": [{"org": name, **{k: v for k, v in k_.public.as_dict().items() if k in ("encryption_key", "signing_key")}}
                  for name, k_ in keys.items() if name != me],
        "topics": [{"uri": "com.orders.", "match": "prefix", "schema": ORDER_SCHEMA},
                   {"uri": "com.notes", "match": "exact"}],
        "index": [{"name": "amount", "type": "number"}, {"name": "status"},
                  {"name": "placed", "type": "date"}, {"name": "city", "path": "ship.city"}],
    }
    data.update(overrides)
    return data


def make_config(me: str, keys: dict, **overrides) -> cfg.Config:
    return cfg.parse(config_dict(me, keys, **overrides), Path("."))


# ------------------------------------------------------------ real processes

import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402

import jwt as pyjwt  # noqa: E402
import treq  # noqa: E402
from autobahn.twisted.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp.types import ComponentConfig  # noqa: E402
from twisted.internet import defer, endpoints, reactor, task  # noqa: E402

from relayrouter.e2e.keys import write_private  # noqa: E402
from relayrouter.e2e.wamp import enable_payload_passthru  # noqa: E402

from ...support import SERIALIZERS, Client, within  # noqa: E402
from ..processes import HTTP_LINE, Child, RouterProcess, listener, twistd  # noqa: E402

JWT_SECRET = "decrypt-search-test-secret-0123456789abcdef"
TICKETS = {"acme": "acme-connector-ticket-0123456789", "globex": "globex-connector-ticket-0123456789"}

ROUTER_TOML = listener() + """
[[realms]]
name = "trade"
[realms.auth.anonymous]
role = "publisher"
[realms.auth.ticket]
[[realms.auth.ticket.principals]]
authid = "acme-connector"
role = "connector"
secret_env = "ACME_TICKET"
[[realms.auth.ticket.principals]]
authid = "globex-connector"
role = "connector"
secret_env = "GLOBEX_TICKET"

[[realms.history]]
uri = "com.orders."
match = "prefix"
limit = 5000

[[realms.history]]
uri = "com.notes"
match = "exact"
limit = 5000

[[realms.roles]]
name = "publisher"
[[realms.roles.rules]]
uri = "com."
match = "prefix"
allow = ["publish", "subscribe"]

[[realms.roles]]
name = "connector"
[[realms.roles.rules]]
uri = "com."
match = "prefix"
allow = ["publish", "subscribe", "register", "call"]
[[realms.roles.rules]]
uri = "relayrouter.history.read"
match = "exact"
allow = ["call"]
"""

SUPPLIER = "supplier"


def router_process(tmp_path) -> RouterProcess:
    return RouterProcess(tmp_path, ROUTER_TOML, env={"ACME_TICKET": TICKETS["acme"],
                                                     "GLOBEX_TICKET": TICKETS["globex"]})


class World:
    """Key files for every organisation, written as ``relayrouter keys new`` would."""

    def __init__(self, tmp_path) -> None:
        self.dir = tmp_path / "keys"
        self.dir.mkdir()
        self.keys = {name: FileKeys.generate(name) for name in ("acme", "globex", SUPPLIER)}
        for name, keys in self.keys.items():
            write_private(self.dir / f"{name}.key", keys)
            (self.dir / f"{name}.pub").write_text(json.dumps(keys.public.as_dict()))
        secret = tmp_path / "jwt.secret"
        secret.write_text(JWT_SECRET)
        secret.chmod(0o600)
        self.jwt_secret_file = secret

    def public(self, name):
        return self.keys[name].public


def connector_toml(world: World, me: str, extra: str = "", schema_file="order.schema.json", topic_options="",
                   http_auth="") -> str:
    """``http_auth``: the [http.auth] table in place of the HMAC secret's (``world.jwt_secret_file``)."""
    peers = "".join(f'\n[[peers]]\npublic_file = "{world.dir / (name + ".pub")}"\n'
                    for name in world.keys if name != me)
    return f"""
[organisation]
name = "{me}"
key_file = "{world.dir / (me + '.key')}"
{peers}
[[topics]]
uri = "com.orders."
match = "prefix"
schema_file = "{schema_file}"
{topic_options}

[[topics]]
uri = "com.notes"
match = "exact"

[[index]]
name = "n"
path = "order"
type = "number"

[[index]]
name = "amount"
type = "number"

[[index]]
name = "status"

[[index]]
name = "placed"
type = "date"

[[index]]
name = "city"
path = "ship.city"

[http]
listen = "tcp:0:interface=127.0.0.1"
[http.auth]
{http_auth or _HMAC_AUTH.format(secret=world.jwt_secret_file)}

[wamp]
procedures = "com.{me}.records"
{extra}
"""


_HMAC_AUTH = """algorithms = ["HS256"]
audience = "decrypt-search"
[[http.auth.keys]]
secret_file = "{secret}"
"""


class Connector(Child):
    def __init__(self, tmp_path, world: World, me: str, router: RouterProcess, extra: str = "", env=None,
                 args=(), pythonpath=None, topic_options: str = "", http_auth: str = "") -> None:
        self.dir = tmp_path / f"connector-{me}"
        self.dir.mkdir(exist_ok=True)
        config = self.dir / "decrypt-search.toml"
        (self.dir / "order.schema.json").write_text(json.dumps(ORDER_SCHEMA))
        config.write_text(connector_toml(world, me, extra, topic_options=topic_options, http_auth=http_auth))
        base_env = {"DECRYPT_SEARCH_TICKET": TICKETS[me], **(env or {})}
        super().__init__(f"decrypt-search-{me}", twistd(
            "decrypt-search", "--config", config, "--router", router.ws_url, "--realm", "trade",
            "--authid", f"{me}-connector", "--state-dir", self.dir / "state", "--retry-initial", "0.1",
            "--retry-max", "1", *args), env=base_env)
        if pythonpath:
            self.env["PYTHONPATH"] = f"{self.env['PYTHONPATH']}:{pythonpath}"
        self.me = me
        self.http_port = None

    def start(self, ready: bool = True) -> None:
        super().start()
        if ready:
            self.http_port = int(self.wait_for(HTTP_LINE).group(1))
            self.wait_for(r"joined realm trade")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def token(scopes=("search", "quarantine", "publish", "status"), lifetime=300, secret=JWT_SECRET, **claims):
    now = int(time.time())
    body = {"sub": "analyst", "aud": "decrypt-search", "iat": now, "exp": now + lifetime,
            "scope": " ".join(scopes), **claims}
    return pyjwt.encode(body, secret, algorithm="HS256")


@defer.inlineCallbacks
def get(connector: Connector, path: str, params=None, bearer=None, expect=200):
    headers = {"Authorization": f"Bearer {bearer or token()}"} if bearer is not False else {}
    response = yield treq.get(connector.url + path, params=params, headers=headers)
    body = yield response.json()
    assert response.code == expect, (response.code, body)
    return body


@defer.inlineCallbacks
def post(connector: Connector, path: str, body, bearer=None, expect=200):
    headers = {"Authorization": f"Bearer {bearer or token()}", "Content-Type": "application/json"}
    response = yield treq.post(connector.url + path, json.dumps(body).encode(), headers=headers)
    answer = yield response.json()
    assert response.code == expect, (response.code, answer)
    return answer


@defer.inlineCallbacks
def until_stored(connector: Connector, count: int, seconds: float = 30.0, quarantined: int = 0):
    """Poll /status until the connector has stored ``count`` records (and quarantined as many)."""
    deadline = time.monotonic() + seconds
    while True:
        status = yield get(connector, "/status")
        store = status["store"]
        if store["records"] >= count and sum(store["quarantine"].values()) >= quarantined:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{store} after {seconds} s, waiting for {count} records\n{connector.describe()}")
        yield task.deferLater(reactor, 0.05, lambda: None)


@defer.inlineCallbacks
def connect_publisher(router: RouterProcess, serializer: str = "cbor"):
    session = Client(ComponentConfig("trade", {}))
    enable_payload_passthru(session)
    factory = WampWebSocketClientFactory(lambda: session, url=router.ws_url,
                                         serializers=[SERIALIZERS[serializer]()])
    yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", router.port).connect(factory)
    yield within(session.joined)
    return session


def scan_memory(pid: int, needles: list) -> list:
    """The needles found anywhere in the readable memory of process ``pid``."""
    found = set()
    longest = max(len(n) for n in needles)
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]", "[vvar_vclock]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            tail = b""
            for offset in range(start, end, 1 << 22):
                try:
                    mem.seek(offset)
                    chunk = mem.read(min(1 << 22, end - offset))
                except (OSError, ValueError, OverflowError):
                    break
                data = tail + chunk
                for needle in needles:
                    if needle in data:
                        found.add(needle)
                tail = data[-longest:]
    return sorted(found)


def files_containing(directory, needles: list) -> list:
    hits = []
    for root, _, files in os.walk(directory):
        for name in files:
            data = open(os.path.join(root, name), "rb").read()
            hits += [(name, n) for n in needles if n in data]
    return hits




@defer.inlineCallbacks
def connect_ws_url(router: RouterProcess, **extra):
    """An Autobahn session to the router process, with the test Client's authentication extras."""
    session = Client(ComponentConfig("trade", extra))
    factory = WampWebSocketClientFactory(lambda: session, url=router.ws_url, serializers=[SERIALIZERS["cbor"]()])
    yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", router.port).connect(factory)
    yield within(session.joined)
    return session
