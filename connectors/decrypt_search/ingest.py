"""From an event the router forwarded to a record or a quarantine entry; no I/O.

:meth:`Ingestor.process` takes what a subscription (or a page of the router's
event history) delivers — publication id, topic, positional arguments — and
returns a :class:`Record` to index or a :class:`Quarantined` with the reason
it cannot be used.  Order of the checks: the payload must be one envelope
(``malformed``), then :func:`relayrouter.e2e.open_envelope` (``wrong_topic``,
``not_addressed``, ``unknown_sender``, ``bad_signature``, ``retired_key``,
``undecryptable``, ``malformed``; with every key pair of ours, current and
previous, and the signing keys of ourselves and the trusted peers, current
and previous), then the document must be an object that passes its topic's
JSON Schema and whose indexed fields have their declared types
(``schema_invalid``), then the rule's Python validators, in order, each of
which may refuse it (``rejected``, with its message; a validator that fails
otherwise: ``internal_error``, naming it).  Nothing raises: bad input is data
here.

A validator is ``function(record)`` with ``record`` a dict (``topic``,
``sender``, ``created``, ``document``, ``message_id``); it accepts by
returning None (or True) and refuses by returning a message (a string) or
raising :class:`Rejected`.  It runs on the ingest worker threads, several at
once: it must not block for long and must be thread-safe.
"""

import datetime
import json
import time
from dataclasses import dataclass, field

from jsonschema.exceptions import best_match

from relayrouter.api import e2e

from .config import Config
from .keyring import KeyBook

SCHEMA_INVALID = "schema_invalid"
NO_TOPIC_RULE = "no_topic_rule"
DUPLICATE = "duplicate"
INTERNAL_ERROR = "internal_error"
REJECTED = "rejected"
REASONS = e2e.REASONS + (SCHEMA_INVALID, NO_TOPIC_RULE, DUPLICATE, INTERNAL_ERROR, REJECTED)


class Rejected(Exception):
    """Raised by a validator to refuse a record; its text is the quarantine message."""
MAX_MESSAGE = 500  # characters of a quarantine message


@dataclass(frozen=True)
class Record:
    publication: int
    topic: str
    message_id: str
    sender: str
    sender_kid: str
    created: float
    received: float
    document: dict
    fields: dict  # name -> value (float for number/date, str for keyword), absent when missing
    text: str
    payload: bytes = field(default=b"", repr=False)  # the envelope as received (kept if it is a replay)

    def as_dict(self, record_id: int | None = None) -> dict:
        result = {"publication": self.publication, "topic": self.topic, "message_id": self.message_id,
                  "sender": self.sender, "created": self.created, "received": self.received,
                  "document": self.document}
        if record_id is not None:
            result["id"] = record_id
        return result


@dataclass(frozen=True)
class Quarantined:
    publication: int
    topic: str
    reason: str
    message: str
    received: float
    payload: bytes  # the envelope (or whatever came instead), kept as received
    sender_kid: str | None = None
    message_id: str | None = None


class Ingestor:
    def __init__(self, config: Config, keys, clock=time.time, book: KeyBook | None = None) -> None:
        self.config = config
        self.keys = keys
        self.clock = clock
        # every key pair of ours (current first), the signing keys vouched for, the retired key ids
        self.book = book if book is not None else KeyBook(config, keys)

    def process(self, publication: int, topic: str, args) -> Record | Quarantined:
        now = self.clock()
        payload = args[0] if isinstance(args, (list, tuple)) and len(args) == 1 else None
        if not isinstance(payload, (bytes, bytearray)):
            return Quarantined(publication, topic, e2e.MALFORMED, _shape(args), now, _raw(args))
        payload = bytes(payload)
        rule = self.config.rule_for(topic)
        if rule is None:
            return Quarantined(publication, topic, NO_TOPIC_RULE, f"no [[topics]] rule matches '{topic}'", now,
                               payload)
        try:
            view = self.book.view  # one snapshot: the key directory may replace it meanwhile
            opened = e2e.open_envelope(payload, view.ring, view.senders, topic=topic, retired=view.retired)
        except e2e.EnvelopeError as e:
            return Quarantined(publication, topic, e.reason, e.message[:MAX_MESSAGE], now, payload,
                               *_ids(payload))
        problem = _invalid(opened.document, rule)
        fields = None if problem else extract_fields(opened.document, self.config.index)
        if isinstance(fields, str):
            problem = fields
        if problem:
            return Quarantined(publication, topic, SCHEMA_INVALID, problem[:MAX_MESSAGE], now, payload,
                               opened.sender.signing_kid, opened.message_id.hex())
        refusal = _validate(rule, {"topic": topic, "sender": opened.sender.org, "created": opened.created_ms / 1000.0,
                                   "message_id": opened.message_id.hex(), "document": opened.document})
        if refusal is not None:
            reason, message = refusal
            return Quarantined(publication, topic, reason, message[:MAX_MESSAGE], now, payload,
                               opened.sender.signing_kid, opened.message_id.hex())
        return Record(publication, topic, opened.message_id.hex(), opened.sender.org, opened.sender.signing_kid,
                      opened.created_ms / 1000.0, now, opened.document, fields,
                      text_of(opened.document, self.config.text_fields), payload)


def _validate(rule, record: dict) -> tuple | None:
    """(reason, message) of the first validator that refuses the record, or None."""
    for target, function in rule.checks:
        try:
            verdict = function(record)
        except Rejected as e:
            return REJECTED, f"{target}: {e}"
        except Exception as e:  # the validator's own failure: the record is kept aside, not lost
            return INTERNAL_ERROR, f"validator {target} failed: {type(e).__name__}: {e}"
        if isinstance(verdict, str):
            return REJECTED, f"{target}: {verdict}"
        if verdict not in (None, True):
            return INTERNAL_ERROR, (f"validator {target} returned a {type(verdict).__name__}: "
                                    "None or True accepts, a message refuses")
    return None


def _shape(args) -> str:
    if not isinstance(args, (list, tuple)) or len(args) != 1:
        count = len(args) if isinstance(args, (list, tuple)) else 0
        return f"expected one positional argument (the envelope), got {count}"
    return f"the payload is a {type(args[0]).__name__}, not an envelope (bytes)"


def _raw(args) -> bytes:
    try:
        return json.dumps(args, default=repr).encode("utf8")[:65536]
    except (TypeError, ValueError):
        return repr(args).encode("utf8")[:65536]


def _ids(payload: bytes) -> tuple:
    try:
        parsed = e2e.parse(payload)
    except e2e.EnvelopeError:
        return None, None
    return parsed.sender_kid, parsed.message_id.hex()


def _invalid(document, rule) -> str | None:
    if not isinstance(document, dict):
        return f"the document is a {type(document).__name__}, not an object"
    if rule.validator is None:
        return None
    error = best_match(rule.validator.iter_errors(document))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(document)"
    return f"{where}: {error.message}"


def lookup(document, path: tuple):
    value = document
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def extract_fields(document: dict, index) -> dict | str:
    """Indexed values by field name, or a message naming the first field of the wrong type."""
    fields = {}
    for f in index:
        value = lookup(document, f.path)
        if value is None:
            continue
        converted = convert(value, f.type)
        if converted is None:
            return f"{'.'.join(f.path)}: {value!r} is not a {f.type}"
        fields[f.name] = converted
    return fields


def convert(value, kind: str):
    """A document value as stored for its index type; None when it is not of that type."""
    if kind == "keyword":
        return value if isinstance(value, str) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if kind == "date" and isinstance(value, str):
        return parse_date(value)
    return None


def parse_date(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 date or date-time (UTC when no offset is given)."""
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def text_of(document: dict, paths: tuple) -> str:
    """What full-text search sees: the strings at ``paths``, or every string in the document."""
    if paths:
        values = [lookup(document, p) for p in paths]
    else:
        values = [document]
    strings: list[str] = []
    for value in values:
        _strings(value, strings)
    return "\n".join(strings)


def _strings(value, out: list) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, out)
    elif isinstance(value, list):
        for item in value:
            _strings(item, out)
