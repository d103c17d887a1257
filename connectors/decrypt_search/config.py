"""The decrypt-search configuration file (TOML), checked whole at start.

Every error names the key it is about, the way the router does:
``configuration error: topics[1].match: must be exact, prefix or wildcard``.
Reading keys and schemas from files happens here too, so a connector that
starts has everything it needs; nothing here logs a secret.
"""

import importlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from jsonschema import exceptions as schema_exceptions
from jsonschema import validators

from relayrouter.api import ConfigError, configcheck, e2e_keys

MATCHES = ("exact", "prefix", "wildcard")
FIELD_TYPES = ("number", "date", "keyword")
BUILTIN_FIELDS = {"topic": "keyword", "sender": "keyword", "created": "date", "received": "date"}
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class TopicRule:
    uri: str
    match: str
    schema: dict | None
    validator: object = field(default=None, compare=False, repr=False)
    checks: tuple = field(default=(), compare=False, repr=False)  # (name, callable) run before indexing

    def matches(self, topic: str) -> bool:
        if self.match == "exact":
            return topic == self.uri
        if self.match == "prefix":
            return topic.startswith(self.uri)
        pattern, parts = self.uri.split("."), topic.split(".")
        return len(pattern) == len(parts) and all(p == "" or p == t for p, t in zip(pattern, parts))


@dataclass(frozen=True)
class IndexField:
    name: str
    path: tuple
    type: str


@dataclass(frozen=True)
class Report:
    """A named aggregate of a number field: ``GET /reports/<name>``, ``<procedures>.report``."""
    name: str
    field: str  # an indexed number field
    metrics: tuple  # count, sum, avg, min, max, p<N>
    by: tuple = ()  # keyword fields to group by
    bucket: str | None = None  # minute | hour | day: also group by time bucket of created


@dataclass(frozen=True)
class JwtKeyConfig:
    kid: str | None
    secret: bytes | None
    public_pem: bytes | None
    jwks: dict | None = None  # a JWKS file's document


@dataclass(frozen=True)
class HttpAuth:
    algorithms: tuple
    keys: tuple
    audience: str | None = None
    issuer: str | None = None
    leeway: float = 30.0
    jwks_url: str | None = None  # the identity provider's keys, fetched (again on an unknown kid)
    refresh_interval: float = 60.0  # least seconds between two fetches of jwks_url


@dataclass(frozen=True)
class Config:
    org: str
    key_file: str | None
    key_env: str | None
    peers: dict  # org -> PublicKeys: the peer's current keys (sealed for, its signatures verified)
    trusted_senders: tuple
    publish_for: tuple
    topics: tuple
    index: tuple
    text_fields: tuple  # dotted paths; empty: every string in the document
    store_backend: str = "sqlite"
    store_dsn: str | None = None
    store_path: str = "records.sqlite3"
    http_listen: tuple = ()
    http_auth: HttpAuth | None = None
    procedures: str | None = None
    hooks: tuple = ()
    reports: tuple = ()
    catchup_page: int = 500
    max_body: int = 1 << 20
    previous_keys: tuple = ()  # our earlier key pairs (FileKeys): what was sealed for them still opens
    previous_peers: tuple = ()  # peers' earlier PublicKeys: their signatures still verify
    retired_keys: frozenset = frozenset()  # key ids that take no new record (ours or peers')
    trusted_senders_given: bool = False  # organisation.trusted_senders set: only those; else every peer
    publish_for_given: bool = False
    directory_topic: str | None = None  # [directory]: records on <topic>.<org>; None: no key directory
    directory_publish: bool = True
    directory_trust: str = "pinned"  # or "first-use"
    directory_pins: dict = field(default_factory=dict)  # org -> fingerprints (SHA-256 hex of signing keys)

    def field(self, name: str) -> str | None:
        """The type of an indexed (or built-in) field, None if unknown."""
        if name in BUILTIN_FIELDS:
            return BUILTIN_FIELDS[name]
        return next((f.type for f in self.index if f.name == name), None)

    def report(self, name: str) -> Report | None:
        return next((r for r in self.reports if r.name == name), None)

    def rule_for(self, topic: str) -> TopicRule | None:
        return next((r for r in self.topics if r.matches(topic)), None)


# ------------------------------------------------------------------ parsing

def load(path: str | Path, base: Path | None = None) -> Config:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf8"))
    except OSError as e:
        raise ConfigError(f"--config: cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config: {path} is not valid TOML: {e}") from None
    return parse(data, base or path.parent)


TOP_KEYS = {"organisation", "peers", "topics", "index", "text", "store", "http", "wamp", "hooks", "catchup",
            "reports", "directory"}
METRIC = re.compile(r"^(count|sum|avg|min|max|p([1-9][0-9]?))$")
BUCKET_NAMES = ("minute", "hour", "day")
DEFAULT_METRICS = ("count", "sum", "avg", "min", "max")  # a report's, when it names none
DEFAULT_ALGORITHMS = ("HS256",)  # [http.auth]'s, when it names none
MAX_GROUP_BY = 3


def parse(data: dict, base: Path) -> Config:
    _known(data, TOP_KEYS, "")
    org = _table(data, "organisation", {"name", "key_file", "key_env", "trusted_senders", "publish_for",
                                        "previous_key_files", "retired_keys"})
    name = _str(org, "name", "organisation", required=True)
    peers, previous_peers = _peers(data.get("peers", []), base)
    directory = _directory(data.get("directory"))
    known = {**peers, **{o: None for o in directory.get("pins", {})}}
    senders = _org_list(org, "trusted_senders", known, default=[p for p in peers if peers[p].signing])
    recipients = _org_list(org, "publish_for", known, default=[p for p in peers if peers[p].encryption])
    index = _index(data.get("index", []))
    store = _table(data, "store", {"backend", "dsn", "path"})
    _note("store", {"backend": (str, "sqlite"), "dsn": (str, None), "path": (str, "records.sqlite3")})
    _note("organisation", {"key_file": (str, None), "key_env": (str, None)})
    backend = store.get("backend", "sqlite")
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(f"store.backend: must be sqlite or postgresql, not {backend!r}")
    if backend == "postgresql" and not store.get("dsn"):
        raise ConfigError("store.dsn: required with store.backend = \"postgresql\" (postgresql://user@host/db)")
    text = _table(data, "text", {"fields"})
    http = _table(data, "http", {"listen", "auth", "max_body"})
    if http.get("listen") and http.get("auth") is None:
        raise ConfigError("http.auth: required when http.listen is set (every endpoint needs a bearer token)")
    wamp = _table(data, "wamp", {"procedures"})
    catchup = _table(data, "catchup", {"page"})
    topics = _topics(data.get("topics", []), base)
    if directory:
        probe = f"{directory['topic']}.{name}"
        clash = next((i for i, r in enumerate(topics) if r.matches(probe)), None)
        if clash is not None:
            raise ConfigError(f"directory.topic: {directory['topic']!r} is also matched by topics[{clash}] (key "
                              "records are not envelopes: give the directory a topic of its own)")
    return Config(
        org=name, key_file=_path(org.get("key_file"), base), key_env=org.get("key_env"), peers=peers,
        trusted_senders=tuple(senders), publish_for=tuple(recipients), topics=topics,
        index=index, text_fields=tuple(tuple(p.split(".")) for p in _str_list(text, "fields", "text")),
        store_backend=backend, store_dsn=store.get("dsn"), store_path=store.get("path", "records.sqlite3"),
        http_listen=tuple(_str_list(http, "listen", "http")), http_auth=_http_auth(http.get("auth"), base),
        procedures=_str(wamp, "procedures", "wamp"), hooks=tuple(_hooks(data.get("hooks", []))),
        reports=_reports(data.get("reports", []), index),
        catchup_page=_int(catchup, "page", "catchup", 500, 1, 10000),
        max_body=_int(http, "max_body", "http", 1 << 20, 1024, 64 << 20),
        previous_keys=_previous_keys(org, name, base), previous_peers=previous_peers,
        retired_keys=_retired(org), trusted_senders_given="trusted_senders" in org,
        publish_for_given="publish_for" in org, directory_topic=directory.get("topic"),
        directory_publish=directory.get("publish", True), directory_trust=directory.get("trust", "pinned"),
        directory_pins=directory.get("pins", {}))


def _known(table: dict, allowed: set, where: str, depth: int = 2) -> None:
    configcheck.note_table(where, allowed, table, depth=depth)  # the reference is made of these notes
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where + '.' if where else ''}{key}: unknown key")


def _table(data: dict, name: str, allowed: set) -> dict:
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{name}: must be a table")
    _known(table, allowed, name, depth=3)
    return table


def _str(table: dict, key: str, where: str, required: bool = False) -> str | None:
    configcheck.note_key(where, key, str, None if required else configcheck.OPTIONAL)
    value = table.get(key)
    if value is None and required:
        raise ConfigError(f"{where}.{key}: required")
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{where}.{key}: must be a non-empty string")
    return value


def _str_list(table: dict, key: str, where: str, default: tuple = ()) -> list:
    configcheck.note_key(where, key, list, list(default))
    value = table.get(key, list(default))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}.{key}: must be a list of strings")
    return value


def _int(table: dict, key: str, where: str, default: int, low: int, high: int) -> int:
    configcheck.note_key(where, key, int, default)
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}.{key}: must be an integer from {low} to {high}")
    return value


def _path(value, base: Path) -> str | None:
    return None if value is None else str(base / value)


def _array(data, name: str) -> list:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ConfigError(f"{name}: must be an array of tables ([[{name}]])")
    return data


def _peers(data, base: Path) -> tuple:
    """(org -> current PublicKeys, earlier PublicKeys): an org listed again with ``previous = true``."""
    peers, previous = {}, []
    for i, item in enumerate(_array(data, "peers")):
        where = f"peers[{i}]"
        _known(item, {"org", "encryption_key", "signing_key", "public_file", "previous"}, where)
        _note(where, {"org": (str, None), "encryption_key": (str, None), "signing_key": (str, None),
                      "public_file": (str, None), "previous": (bool, False)})
        try:
            if "public_file" in item:
                public = e2e_keys.load_public(base / item["public_file"])
            else:
                public = e2e_keys.PublicKeys.from_dict(item, where)
        except e2e_keys.KeyFileError as e:
            raise ConfigError(f"{where}: {e}") from None
        org = item.get("org") or public.org
        if not org:
            raise ConfigError(f"{where}.org: required")
        keys = e2e_keys.PublicKeys(org, public.encryption, public.signing)
        earlier = item.get("previous", False)
        if not isinstance(earlier, bool):
            raise ConfigError(f"{where}.previous: must be true or false")
        if earlier:
            previous.append(keys)
        elif org in peers:
            raise ConfigError(f"{where}.org: {org!r} is listed twice (mark its earlier keys previous = true)")
        else:
            peers[org] = keys
    orphans = [p.org for p in previous if p.org not in peers]
    if orphans:
        raise ConfigError(f"peers: {orphans[0]!r} has previous keys but no current ones (a [[peers]] entry "
                          "without previous = true)")
    return peers, tuple(previous)


def _previous_keys(org: dict, name: str, base: Path) -> tuple:
    """Our earlier key pairs, from private key files (chmod 600) of the same organisation."""
    keys = []
    for j, path in enumerate(_str_list(org, "previous_key_files", "organisation")):
        where = f"organisation.previous_key_files[{j}]"
        try:
            pair = e2e_keys.load_private(base / path)
        except e2e_keys.KeyFileError as e:
            raise ConfigError(f"{where}: {e}") from None
        if pair.public.org and pair.public.org != name:
            raise ConfigError(f"{where}: the key file is for organisation {pair.public.org!r}, not {name!r}")
        keys.append(pair)
    return tuple(keys)


KEY_ID = re.compile(r"^[0-9a-f]{16}$")


def _retired(org: dict) -> frozenset:
    kids = _str_list(org, "retired_keys", "organisation")
    bad = [k for k in kids if not KEY_ID.match(k)]
    if bad:
        raise ConfigError(f"organisation.retired_keys: {bad[0]!r} is not a key id (16 lower-case hex digits, as "
                          "relayrouter keys show prints them)")
    return frozenset(kids)


FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
URI = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")


def _directory(data) -> dict:
    """[directory]: the key directory's topic, whether we publish, how peers' first records are trusted."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("directory: must be a table")
    _known(data, {"topic", "publish", "trust", "pins"}, "directory")
    topic = _str(data, "topic", "directory", required=True)
    if not URI.match(topic):
        raise ConfigError(f"directory.topic: {topic!r} must be a URI prefix like com.example.keys (records go "
                          "to <topic>.<organisation>)")
    configcheck.note_key("directory", "publish", bool, True)
    publish = data.get("publish", True)
    if not isinstance(publish, bool):
        raise ConfigError("directory.publish: must be true or false")
    configcheck.note_key("directory", "trust", str, "pinned")
    trust = data.get("trust", "pinned")
    if trust not in ("pinned", "first-use"):
        raise ConfigError(f"directory.trust: must be pinned or first-use, not {trust!r}")
    pins: dict = {}
    for i, item in enumerate(_array(data.get("pins", []), "directory.pins")):
        where = f"directory.pins[{i}]"
        _known(item, {"org", "fingerprints"}, where)
        org = _str(item, "org", where, required=True)
        prints = _str_list(item, "fingerprints", where)
        bad = [p for p in prints if not FINGERPRINT.match(p)]
        if not prints or bad:
            raise ConfigError(f"{where}.fingerprints: SHA-256 fingerprints of signing keys (64 lower-case hex "
                              "digits, as relayrouter keys show prints them)"
                              + (f"; {bad[0][:70]!r} is not one" if bad else ""))
        pins[org] = tuple(pins.get(org, ())) + tuple(prints)
    return {"topic": topic, "publish": publish, "trust": trust, "pins": pins}


def check_rotation(config: "Config", current) -> None:
    """Refuse retiring the key pair we seal and sign with (records we publish would be quarantined)."""
    own = {current.public.encryption_kid, current.public.signing_kid}
    if own & config.retired_keys:
        raise ConfigError(f"organisation.retired_keys: {sorted(own & config.retired_keys)[0]} is our current key "
                          "(the key file's); make a new key pair current first, then retire this one")
    for earlier in config.previous_keys:
        if earlier.public.signing_kid == current.public.signing_kid:
            raise ConfigError("organisation.previous_key_files: holds the current key pair again")


def _org_list(table: dict, key: str, peers: dict, default: list) -> list:
    if key not in table:
        return default
    names = _str_list(table, key, "organisation")
    for name in names:
        if name not in peers:
            raise ConfigError(f"organisation.{key}: {name!r} is not in [[peers]] (or [[directory.pins]])")
    return names


def _topics(data, base: Path) -> tuple:
    rules = []
    for i, item in enumerate(_array(data, "topics")):
        where = f"topics[{i}]"
        _known(item, {"uri", "match", "schema", "schema_file", "validators"}, where)
        uri = _str(item, "uri", where, required=True)
        _note(where, {"match": (str, "exact"), "schema": (dict, None), "schema_file": (str, None)})
        match = item.get("match", "exact")
        if match not in MATCHES:
            raise ConfigError(f"{where}.match: must be exact, prefix or wildcard, not {match!r}")
        schema = _schema(item, where, base)
        validator = None
        if schema is not None:
            validator = validators.validator_for(schema)(schema, format_checker=None)
        rules.append(TopicRule(uri, match, schema, validator, _checks(item, where)))
    if not rules:
        raise ConfigError("topics: at least one [[topics]] to subscribe to")
    return tuple(rules)


def _schema(item: dict, where: str, base: Path):
    if "schema" in item and "schema_file" in item:
        raise ConfigError(f"{where}: give schema or schema_file, not both")
    schema = item.get("schema")
    if "schema_file" in item:
        path = base / item["schema_file"]
        try:
            schema = json.loads(path.read_text("utf8"))
        except OSError as e:
            raise ConfigError(f"{where}.schema_file: cannot read {path}: {e.strerror}") from None
        except ValueError as e:
            raise ConfigError(f"{where}.schema_file: {path} is not JSON: {e}") from None
    if schema is None:
        return None
    if not isinstance(schema, dict):
        raise ConfigError(f"{where}.schema: must be a JSON Schema object")
    try:
        validators.validator_for(schema).check_schema(schema)
    except schema_exceptions.SchemaError as e:
        raise ConfigError(f"{where}.schema: not a valid JSON Schema: {e.message}") from None
    return schema


def _checks(item: dict, where: str) -> tuple:
    """The Python validators of a topic rule, imported now: an error names the key."""
    targets = _str_list(item, "validators", where)
    return tuple((t, import_callable(t, f"{where}.validators[{j}]")) for j, t in enumerate(targets))


def import_callable(target: str, key: str):
    """The function ``package.module:function`` names; a ConfigError naming ``key`` if there is none."""
    module_name, _, name = target.partition(":")
    if not module_name or not name:
        raise ConfigError(f"{key}: {target!r} must be 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # an import error of any kind in the user's module
        raise ConfigError(f"{key}: cannot import {module_name}: {type(e).__name__}: {e}") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ConfigError(f"{key}: {module_name} has no function {name!r}")
    return function


def _index(data) -> tuple:
    fields, seen = [], set(BUILTIN_FIELDS)
    for i, item in enumerate(_array(data, "index")):
        where = f"index[{i}]"
        _known(item, {"name", "path", "type"}, where)
        name = _str(item, "name", where, required=True)
        if not FIELD_NAME.match(name):
            raise ConfigError(f"{where}.name: {name!r} must be lower-case letters, digits and _ (a letter first)")
        if name in seen:
            raise ConfigError(f"{where}.name: {name!r} is taken (built-in fields: {', '.join(BUILTIN_FIELDS)})")
        seen.add(name)
        _note(where, {"type": (str, "keyword")})
        kind = item.get("type", "keyword")
        if kind not in FIELD_TYPES:
            raise ConfigError(f"{where}.type: must be number, date or keyword, not {kind!r}")
        path = _str(item, "path", where) or name
        fields.append(IndexField(name, tuple(path.split(".")), kind))
    return tuple(fields)


def _http_auth(data, base: Path) -> HttpAuth | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError("http.auth: must be a table")
    _known(data, {"algorithms", "keys", "audience", "issuer", "leeway", "refresh_interval"}, "http.auth")
    algorithms = tuple(_str_list(data, "algorithms", "http.auth", DEFAULT_ALGORITHMS)) or DEFAULT_ALGORITHMS
    keys, urls = [], []
    for i, item in enumerate(_array(data.get("keys", []), "http.auth.keys")):
        where = f"http.auth.keys[{i}]"
        if isinstance(item, dict) and "jwks_url" in item:
            _known(item, {"jwks_url"}, where)
            _note(where, {"jwks_url": (str, None)})
            urls.append(_jwks_url(item["jwks_url"], f"{where}.jwks_url"))
        else:
            keys.append(_jwt_key(item, where, base))
    if not keys and not urls:
        raise ConfigError("http.auth.keys: at least one key to check bearer tokens with")
    if len(urls) > 1:
        raise ConfigError("http.auth.keys: at most one jwks_url")
    kidless = [i for i, k in enumerate(keys) if k.kid is None and k.jwks is None]
    if urls and kidless:
        raise ConfigError(f"http.auth.keys[{kidless[0]}]: give it a kid: beside a jwks_url, a key without one "
                          "would be tried for every token whose kid is not its own")
    leeway = _seconds(data, "leeway", 30.0)
    return HttpAuth(algorithms, tuple(keys), _str(data, "audience", "http.auth"), _str(data, "issuer", "http.auth"),
                    leeway, urls[0] if urls else None, _seconds(data, "refresh_interval", 60.0))


def _seconds(table: dict, key: str, default: float) -> float:
    configcheck.note_key("http.auth", key, (int, float), default)
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"http.auth.{key}: must be a number of seconds >= 0")
    return float(value)


def _jwks_url(url, key: str) -> str:
    """https, or http to this machine only: keys fetched in the clear could be swapped on the way."""
    if not isinstance(url, str):
        raise ConfigError(f"{key}: must be a URL")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        return url
    raise ConfigError(f"{key}: {url!r} must be https:// (or http:// to 127.0.0.1, ::1 or localhost)")


def _jwt_key(item: dict, where: str, base: Path) -> JwtKeyConfig:
    _known(item, {"kid", "secret_env", "secret_file", "public_key_file", "jwks_file"}, where)
    _note(where, {name: (str, None) for name in ("kid", "secret_env", "secret_file", "public_key_file", "jwks_file")})
    given = [k for k in ("secret_env", "secret_file", "public_key_file", "jwks_file") if k in item]
    if len(given) != 1:
        raise ConfigError(f"{where}: give exactly one of secret_env, secret_file, public_key_file, jwks_file, "
                          "jwks_url")
    if "secret_env" in item:
        var = item["secret_env"]
        if not os.environ.get(var):
            raise ConfigError(f"{where}.secret_env: environment variable {var} is not set")
        return JwtKeyConfig(item.get("kid"), os.environ[var].encode("utf8"), None)
    path = base / item[given[0]]
    if "secret_file" in item:
        try:
            e2e_keys.check_private_file(path)
            return JwtKeyConfig(item.get("kid"), path.read_bytes().rstrip(b"\r\n"), None)
        except e2e_keys.KeyFileError as e:
            raise ConfigError(f"{where}.secret_file: {e}") from None
    try:
        text = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{where}.{given[0]}: cannot read {path}: {e.strerror}") from None
    if "jwks_file" in item:
        try:
            return JwtKeyConfig(item.get("kid"), None, None, json.loads(text))
        except ValueError as e:
            raise ConfigError(f"{where}.jwks_file: {path} is not JSON: {e}") from None
    return JwtKeyConfig(item.get("kid"), None, text)


def _reports(data, index: tuple) -> tuple:
    kinds = dict(BUILTIN_FIELDS, **{f.name: f.type for f in index})
    reports, names = [], set()
    for i, item in enumerate(_array(data, "reports")):
        where = f"reports[{i}]"
        _known(item, {"name", "field", "metrics", "by", "bucket"}, where)
        name = _str(item, "name", where, required=True)
        if not FIELD_NAME.match(name) or name in names:
            raise ConfigError(f"{where}.name: {name!r} must be unique, lower-case letters, digits and _")
        names.add(name)
        number = _str(item, "field", where, required=True)
        if kinds.get(number) != "number":
            numbers = [f for f, k in kinds.items() if k == "number"]
            raise ConfigError(f"{where}.field: {number!r} is not an indexed number field ({', '.join(numbers)})")
        metrics = _str_list(item, "metrics", where, DEFAULT_METRICS) or list(DEFAULT_METRICS)
        bad = [m for m in metrics if not METRIC.match(m)]
        if bad:
            raise ConfigError(f"{where}.metrics: {bad[0]!r} is not count, sum, avg, min, max or p1..p99")
        by = _str_list(item, "by", where)
        wrong = [f for f in by if kinds.get(f) != "keyword"]
        if wrong or len(by) > MAX_GROUP_BY or len(set(by)) != len(by):
            raise ConfigError(f"{where}.by: up to {MAX_GROUP_BY} different keyword fields "
                              f"({', '.join(f for f, k in kinds.items() if k == 'keyword')})"
                              + (f"; {wrong[0]!r} is not one" if wrong else ""))
        _note(where, {"bucket": (str, None)})
        bucket = item.get("bucket")
        if bucket is not None and bucket not in BUCKET_NAMES:
            raise ConfigError(f"{where}.bucket: must be minute, hour or day, not {bucket!r}")
        reports.append(Report(name, number, tuple(dict.fromkeys(metrics)), tuple(by), bucket))
    return tuple(reports)


def _note(where: str, keys: dict) -> None:
    """Keys read without the helpers above, for the configuration reference: name -> (type, default);
    a default of None here means none, not required."""
    for name, (kind, default) in keys.items():
        configcheck.note_key(where, name, kind, configcheck.OPTIONAL if default is None else default)


def _hooks(data) -> list:
    hooks = []
    for i, item in enumerate(_array(data, "hooks")):
        where = f"hooks[{i}]"
        _known(item, {"function"}, where)
        target = _str(item, "function", where, required=True)
        if ":" not in target:
            raise ConfigError(f"{where}.function: {target!r} must be 'package.module:function'")
        hooks.append(target)
    return hooks
