"""Signed key records and the key book built from them: no I/O.

Theory of operation.  Each organisation publishes its *key record* on the
key-directory topic ``<directory.topic>.<org>``; the router keeps the topic's
history, so a connector that starts later reads it there.  The router sees
public keys and signatures only.  A record is canonical JSON (sorted keys,
no spaces)::

    {"type": "relayrouter.keys", "version": 1, "org": "acme", "seq": 2, "issued": 1765100000.0,
     "current": {"encryption_key": b64, "signing_key": b64},
     "previous": [{"encryption_key": b64, "signing_key": b64}, ...],
     "retired": ["<key id>", ...]}

published as one positional argument ``{"record": b64(bytes), "signatures":
[{"kid": "<signing key id>", "signature": b64(Ed25519 over the bytes)}]}``,
signed by the current signing key (proof that the organisation holds it) and
by each previous one it still holds (the cross-signature that announces a
rotation).

:func:`verify` accepts a record of organisation O when, in this order: it
is well formed and names O (the topic's last part); its ``seq`` is above
the last accepted one of O (the same record again is a duplicate, an older
one is stale: both ignored, counted; a different one with the same ``seq`` is
refused: an equivocation); its current signing key signed it; and a key we already
trust for O signed it too: a *pin* (a fingerprint in ``[[directory.pins]]``,
or a signing key of O's ``[[peers]]`` entries), or the current or a previous
signing key of O's last accepted record (so a rotation announced by the old
key carries trust over to the new one).  With ``trust = "first-use"`` the
first record of an organisation nobody pinned is taken as it is.  A record
cannot bring back a key an earlier one retired.  Refusals are
:class:`KeyRecordError` with a message saying why.

:class:`KeyBook` holds what every part of the connector uses: the signing
keys vouched for (static peers, replaced for an organisation by its accepted
record), the key ids retired, and whom to seal for.  Its :attr:`KeyBook.view`
is replaced whole on each change, so ingest threads read one consistent
snapshot.
"""

import base64
import binascii
import json
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from relayrouter.api import e2e_keys, httpinput

RECORD_TYPE = "relayrouter.keys"
RECORD_VERSION = 1
MAX_EVENT = 16384  # bytes of a record: a few keys, never more
MAX_KEYS = 16  # previous keys, retired key ids, signatures: each at most this many
TRUST_MODES = ("pinned", "first-use")


class KeyRecordError(Exception):
    """A key record that is refused; the message says why."""


class StaleRecord(KeyRecordError):
    """A record older than the one accepted: superseded (the router's history holds them) or a rollback;
    either way it changes nothing."""


@dataclass(frozen=True)
class KeyRecord:
    org: str
    seq: int
    issued: float
    current: e2e_keys.PublicKeys
    previous: tuple  # PublicKeys
    retired: frozenset  # key ids
    data: bytes  # the canonical bytes signed
    signatures: tuple  # ((kid, signature bytes), ...)

    @property
    def signing_keys(self) -> dict:
        """kid -> PublicKeys of the keys this record vouches for as signers (current and previous)."""
        return {k.signing_kid: k for k in (self.current,) + self.previous}

    def event(self) -> dict:
        """The positional argument published on the directory topic."""
        return {"record": _b64(self.data),
                "signatures": [{"kid": kid, "signature": _b64(sig)} for kid, sig in self.signatures]}

    def describe(self) -> dict:
        return {"seq": self.seq, "issued": self.issued, "encryption_kid": self.current.encryption_kid,
                "signing_kid": self.current.signing_kid,
                "previous": [{"encryption_kid": k.encryption_kid, "signing_kid": k.signing_kid}
                             for k in self.previous],
                "retired": sorted(self.retired)}


# ------------------------------------------------------------------ making

def build(org: str, seq: int, issued: float, current, previous=(), retired=()) -> bytes:
    """The canonical bytes of a key record (``current``/``previous``: PublicKeys)."""
    body = {"type": RECORD_TYPE, "version": RECORD_VERSION, "org": org, "seq": seq, "issued": issued,
            "current": _pair(current), "previous": [_pair(p) for p in previous], "retired": sorted(set(retired))}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf8")


def sign(data: bytes, signers) -> dict:
    """The event of ``data`` signed by each of ``signers`` (PrivateKeys: current first)."""
    record = parse_record(data)
    signatures = tuple((k.public.signing_kid, k.sign(data)) for k in signers)
    return KeyRecord(record.org, record.seq, record.issued, record.current, record.previous, record.retired, data,
                     signatures).event()


def _pair(public) -> dict:
    return {"encryption_key": _b64(public.encryption), "signing_key": _b64(public.signing)}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ------------------------------------------------------------------ reading

def parse_event(args, topic_org: str) -> KeyRecord:
    """The record an event carries (signatures not yet checked); KeyRecordError when it is not one."""
    if not isinstance(args, (list, tuple)) or len(args) != 1 or not isinstance(args[0], dict):
        raise KeyRecordError("not a key record event (one object with record and signatures expected)")
    event = args[0]
    if set(event) != {"record", "signatures"}:
        raise KeyRecordError("a key record event has exactly the keys record and signatures")
    data = _unb64(event["record"], "record", MAX_EVENT)
    signatures = event["signatures"]
    if not isinstance(signatures, list) or not 1 <= len(signatures) <= MAX_KEYS:
        raise KeyRecordError(f"signatures: a list of 1 to {MAX_KEYS}")
    pairs = []
    for i, item in enumerate(signatures):
        if not isinstance(item, dict) or set(item) != {"kid", "signature"} or not _is_kid(item["kid"]):
            raise KeyRecordError(f"signatures[{i}]: must be {{kid, signature}} with a 16-digit hex kid")
        pairs.append((item["kid"], _unb64(item["signature"], f"signatures[{i}].signature", 64, exact=True)))
    record = parse_record(data)
    if record.org != topic_org:
        raise KeyRecordError(f"the record is {record.org!r}'s, published on {topic_org!r}'s topic")
    return KeyRecord(record.org, record.seq, record.issued, record.current, record.previous, record.retired, data,
                     tuple(pairs))


def parse_record(data: bytes) -> KeyRecord:
    try:
        body = httpinput.json_value(data, field="the record")  # a record is flat: deep nesting is hostile
    except ValueError:  # httpinput.BadInput: not JSON, not UTF-8, or nested too deep to be a record
        raise KeyRecordError("the record is not JSON") from None
    if not isinstance(body, dict) or body.get("type") != RECORD_TYPE:
        raise KeyRecordError(f"not a key record (type {RECORD_TYPE!r} expected)")
    if body.get("version") != RECORD_VERSION:
        raise KeyRecordError(f"key record version {body.get('version')!r}; this connector reads {RECORD_VERSION}")
    if json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf8") != data:
        raise KeyRecordError("the record is not in canonical form (sorted keys, no spaces)")
    org, seq, issued = body.get("org"), body.get("seq"), body.get("issued")
    if not isinstance(org, str) or not org:
        raise KeyRecordError("org: must be a non-empty string")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq < 2 ** 53:
        raise KeyRecordError("seq: must be a positive integer")
    if isinstance(issued, bool) or not isinstance(issued, (int, float)):
        raise KeyRecordError("issued: must be a time in epoch seconds")
    previous, retired = body.get("previous"), body.get("retired")
    if not isinstance(previous, list) or len(previous) > MAX_KEYS:
        raise KeyRecordError(f"previous: a list of at most {MAX_KEYS} key pairs")
    if not isinstance(retired, list) or len(retired) > 4 * MAX_KEYS or not all(_is_kid(k) for k in retired):
        raise KeyRecordError(f"retired: a list of at most {4 * MAX_KEYS} key ids")
    current = _keys(body.get("current"), org, "current")
    return KeyRecord(org, seq, float(issued), current,
                     tuple(_keys(p, org, f"previous[{i}]") for i, p in enumerate(previous)), frozenset(retired),
                     data, ())


def _keys(pair, org: str, where: str) -> e2e_keys.PublicKeys:
    if not isinstance(pair, dict) or set(pair) != {"encryption_key", "signing_key"}:
        raise KeyRecordError(f"{where}: must be {{encryption_key, signing_key}}")
    try:
        return e2e_keys.PublicKeys(org, e2e_keys.unb64(pair["encryption_key"], f"{where}.encryption_key"),
                                   e2e_keys.unb64(pair["signing_key"], f"{where}.signing_key"))
    except e2e_keys.KeyFileError as e:
        raise KeyRecordError(str(e)) from None


def _unb64(text, where: str, size: int, exact: bool = False) -> bytes:
    if not isinstance(text, str) or len(text) > 2 * size:
        raise KeyRecordError(f"{where}: must be base64")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyRecordError(f"{where}: must be base64") from None
    if (exact and len(data) != size) or len(data) > size:
        raise KeyRecordError(f"{where}: {len(data)} bytes")
    return data


def _is_kid(value) -> bool:
    return isinstance(value, str) and len(value) == 16 and all(c in "0123456789abcdef" for c in value)


def signed_by(record: KeyRecord, keys: dict) -> set:
    """The kids of ``keys`` (kid -> PublicKeys) whose signature of the record verifies."""
    good = set()
    for kid, signature in record.signatures:
        public = keys.get(kid)
        if public is None:
            continue
        try:
            nacl.signing.VerifyKey(public.signing).verify(record.data, signature)
        except nacl.exceptions.BadSignatureError:
            continue
        good.add(kid)
    return good


def verify(record: KeyRecord, last: KeyRecord | None, pins: frozenset, trust: str) -> bool:
    """Whether to take ``record`` (True), or it is ``last`` again (False); KeyRecordError when refused.

    ``pins``: fingerprints (SHA-256 hex) of signing keys trusted for the record's organisation."""
    org = record.org
    if last is not None:
        if record.seq == last.seq and record.data == last.data:
            return False
        if record.seq < last.seq:
            raise StaleRecord(f"{org}'s record seq {record.seq} is older than the accepted seq {last.seq}")
        if record.seq == last.seq:
            raise KeyRecordError(f"{org}'s record seq {record.seq} is the same seq as the accepted seq {last.seq} "
                                 "with other contents (a conflicting record)")
        used = set(record.signing_keys) | {k.encryption_kid for k in (record.current,) + record.previous}
        back = sorted(used & last.retired)
        if back:
            raise KeyRecordError(f"{org}'s record seq {record.seq} uses key {back[0]}, which its seq {last.seq} "
                                 "retired")
    own = signed_by(record, record.signing_keys)
    if record.current.signing_kid not in own:
        raise KeyRecordError(f"{org}'s record seq {record.seq} is not signed by its own current key "
                             f"{record.current.signing_kid}")
    pinned = {kid for kid, k in record.signing_keys.items() if e2e_keys.fingerprint(k.signing) in pins} & own
    if pinned:
        return True
    if last is not None:
        if signed_by(record, last.signing_keys):
            return True
        raise KeyRecordError(f"{org}'s record seq {record.seq} is signed by no key its accepted seq {last.seq} "
                             "or a pin vouches for")
    if trust == "first-use":
        return True
    raise KeyRecordError(f"{org}'s record seq {record.seq} is signed by no pinned key of {org} (pin its signing "
                         "key's fingerprint in [[directory.pins]] or list its keys in [[peers]])")


# ------------------------------------------------------------------ the book

@dataclass(frozen=True)
class View:
    """One consistent snapshot of the keys in use."""
    ring: tuple  # our PrivateKeys, current first
    senders: dict  # signing kid -> PublicKeys
    retired: frozenset
    recipients: dict  # org -> PublicKeys to seal for


class KeyBook:
    """Our keys, the peers' from the configuration, and the directory's accepted records."""

    def __init__(self, config, keys) -> None:
        self.config = config
        self.keys = keys
        self.records: dict = {}  # org -> KeyRecord accepted
        self.view = self._build()

    def pins(self, org: str) -> frozenset:
        """Fingerprints trusted for ``org`` by configuration: [[directory.pins]] and [[peers]] signing keys."""
        static = [p for p in list(self.config.peers.values()) + list(self.config.previous_peers)
                  if p.org == org and p.signing]
        return frozenset(self.config.directory_pins.get(org, ())) | {e2e_keys.fingerprint(p.signing)
                                                                      for p in static}

    def accept(self, record: KeyRecord) -> None:
        self.records[record.org] = record
        self.view = self._build()

    def rebuild(self) -> None:
        """After the configuration or our keys changed (SIGHUP)."""
        self.view = self._build()

    def trusted(self, org: str) -> bool:
        if org == self.config.org:
            return True
        if self.config.trusted_senders_given:
            return org in self.config.trusted_senders
        return True

    def _build(self) -> View:
        ring = (self.keys,) + tuple(self.config.previous_keys)
        senders = {k.public.signing_kid: k.public for k in ring}
        recipients, retired = {}, set(self.config.retired_keys)
        static: dict = {}
        for peer in list(self.config.peers.values()) + list(self.config.previous_peers):
            static.setdefault(peer.org, []).append(peer)
        for org in set(static) | set(self.records):
            if org == self.config.org:
                continue
            record = self.records.get(org)
            if record is not None:
                keys = [record.current, *record.previous]
                retired |= record.retired
            else:
                keys = static[org]
            if keys[0].encryption:
                recipients[org] = keys[0]
            if self.trusted(org):
                senders.update({k.signing_kid: k for k in keys if k.signing})
        return View(ring, senders, frozenset(retired), recipients)

    def describe(self) -> dict:
        return {org: record.describe() for org, record in sorted(self.records.items())}
