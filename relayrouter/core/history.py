"""Event history: publications kept per configured topic rule, read back by
``wamp.subscription.get_events`` (the WAMP spec's meta procedure) and by
``relayrouter.history.read`` (paging by publication ID or time).

Theory of operation
-------------------
A realm with ``[[realms.history]]`` rules gets a :class:`History`; the
broker hands it every routed publication (``record``), which costs one dict
lookup for a topic no rule covers (the rule found for a topic is cached).  A
covered publication becomes a :class:`StoredEvent` given to the store,
fire-and-forget: the publisher is never held up, and the store's writer
thread does the writing.  ``limit`` bounds the events kept per topic (the
oldest go first), ``max_age`` the time (a sweep from the Twisted side calls
:meth:`History.expire`).

Reads go to the store with a completion; the call stays pending (it counts
against the caller's pending calls) until the store answers.  The store keeps
events in storage order and a read sees everything submitted before it, so
paging with ``after=<last publication ID>`` has no gaps and no duplicates.

What is not kept, as the spec says: publications with session-ID black- or
whitelists (``eligible``/``exclude``: session IDs mean nothing to a later
reader).  authid/authrole lists are kept with the event and applied to each
reader.
"""

from dataclasses import dataclass
from datetime import datetime, timezone

from . import errors
from .matching import EXACT, MATCH_POLICIES, UriIndex
from .meta import iso8601
from .procedures import PENDING, ProcedureError
from .uri import pattern_problem
from .records import HistoryQuery, StoredEvent, StoreError, UnknownPublication

GET_EVENTS = "wamp.subscription.get_events"
READ = "relayrouter.history.read"
FEATURE = "event_history"

NO_HISTORY = "relayrouter.error.no_history"
UNKNOWN_PUBLICATION = "relayrouter.error.unknown_publication"
STORE_FAILED = "relayrouter.error.store_failed"

MAX_READ = 1000  # events per read, at most
_RULE_CACHE = 10_000  # topics whose rule is remembered; then the cache restarts

_AUDIENCE = ("eligible_authid", "eligible_authrole", "exclude_authid", "exclude_authrole")


@dataclass(frozen=True, slots=True)
class HistoryRule:
    uri: str
    match: str = EXACT
    limit: int = 1000  # events kept per topic
    max_age: float = 0.0  # seconds; 0 keeps them until the limit pushes them out

    @property
    def key(self) -> str:
        return f"{self.match}:{self.uri}"


class History:
    def __init__(self, realm, rules, store) -> None:
        self.realm = realm
        self.store = store
        self.rules = tuple(rules)
        self.rules_by_pattern = UriIndex[HistoryRule]()
        for rule in self.rules:
            self.rules_by_pattern.add(rule.uri, rule.match, rule)
        self._rule_by_topic: dict[str, HistoryRule | None] = {}
        self.skipped = 0  # publications not kept because of session-ID lists
        realm.procedures.add(GET_EVENTS, self.get_events)
        realm.procedures.add(READ, self.read)

    # ------------------------------------------------------------- recording

    def rule_for(self, topic: str) -> HistoryRule | None:
        cache = self._rule_by_topic
        try:
            return cache[topic]
        except KeyError:
            pass
        if len(cache) >= _RULE_CACHE:
            cache.clear()
        rule = cache[topic] = self.rules_by_pattern.best(topic)
        return rule

    def record(self, publication, publication_id: int) -> None:
        """Called by the broker for every routed publication."""
        msg = publication.msg
        rule = self.rule_for(msg.topic)
        if rule is None:
            return
        receivers = publication.receivers
        if receivers is not None and (receivers.eligible is not None or receivers.exclude):
            # "all events published with Options.exclude|list[int] or Options.eligible|list[int]
            # should be ignored by the Event History mechanism and not be saved at all"
            self.skipped += 1
            return
        self.store.history_append(StoredEvent(
            self.realm.name, rule.key, msg.topic, publication_id, self.realm.now(),
            [msg.payload] if msg.payload is not None else msg.args, msg.kwargs,
            _details(publication), _audience(receivers)), keep=rule.limit)

    def expire(self) -> None:
        now = self.realm.now()
        for rule in self.rules:
            if rule.max_age:
                self.store.history_expire(self.realm.name, rule.key, now - rule.max_age)

    # ------------------------------------------------- relayrouter.history.read

    def read(self, call):
        """``read(topic, match="exact", after=None, since=None, limit=100)``
        -> ``{"events": [...], "more": bool}``, oldest first."""
        fields = _fields(call, ("topic", "match", "after", "since", "limit"))
        topic = fields.get("topic")
        match = fields.get("match") or EXACT
        if not isinstance(topic, str) or match not in MATCH_POLICIES:
            raise ProcedureError(errors.INVALID_ARGUMENT, "give 'topic' (a URI) and 'match' "
                                 "(exact, prefix or wildcard)")
        self._readable(call, topic, match)
        after = _optional_id(fields, "after")
        since = fields.get("since")
        if since is not None and not _number(since):
            raise ProcedureError(errors.INVALID_ARGUMENT, "'since' must be seconds since the epoch")
        query = HistoryQuery(self.realm.name, topic, match, limit=_limit(fields.get("limit"), 100),
                             after=after, time_min=_oldest(self, topic, match, since),
                             reader=(call.session.authid, call.session.authrole))
        self.store.history_read(query, lambda outcome: _answer(call, outcome, _read_result(call)))
        return PENDING

    # --------------------------------------------- wamp.subscription.get_events

    def get_events(self, call):
        """As the WAMP spec's Event History says: ``[subscription|id]`` (and, as
        some routers take it, ``limit`` second), options in ArgumentsKw."""
        args, kwargs = call.args, call.kwargs
        subscription_id = args[0] if args else kwargs.get("subscription")
        subscription = self.realm.broker.subscriptions_by_id.get(subscription_id) \
            if isinstance(subscription_id, int) and not isinstance(subscription_id, bool) else None
        if subscription is None:
            raise ProcedureError(errors.NO_SUCH_SUBSCRIPTION, f"no subscription {subscription_id!r} in this realm")
        self._readable(call, subscription.uri, subscription.match)
        limit = args[1] if len(args) > 1 else kwargs.get("limit")
        only_topic = kwargs.get("topic")
        if only_topic is not None and not isinstance(only_topic, str):
            raise ProcedureError(errors.INVALID_ARGUMENT, "'topic' must be a URI")
        times = _spec_times(kwargs)
        query = HistoryQuery(
            self.realm.name, subscription.uri, subscription.match,
            limit=_limit(limit, MAX_READ), reverse=bool(kwargs.get("reverse", False)),
            after=_optional_id(kwargs, "after_publication"), from_=_optional_id(kwargs, "from_publication"),
            before=_optional_id(kwargs, "before_publication"), until=_optional_id(kwargs, "until_publication"),
            only_topic=only_topic, reader=(call.session.authid, call.session.authrole), **times)
        subscription_id = subscription.id
        self.store.history_read(query, lambda outcome: _answer(
            call, outcome, lambda page: _as_spec_result(call, page, subscription_id)))
        return PENDING

    # ---------------------------------------------------------------- helpers

    def _readable(self, call, topic: str, match: str) -> None:
        problem = pattern_problem(topic, match)
        if problem is not None:
            raise ProcedureError(errors.INVALID_URI, f"cannot read history: {problem}")
        # "In order to request event history, a peer must be allowed to subscribe"
        refusal = self.realm.authorize(call.session, "subscribe", topic, match)
        if refusal is not None:
            raise ProcedureError(errors.NOT_AUTHORIZED, refusal)
        if match == EXACT and self.rule_for(topic) is None:
            raise ProcedureError(NO_HISTORY, f"no history is kept for '{topic}' in realm "
                                 f"'{self.realm.name}' (see [[realms.history]])")


def _details(publication) -> dict:
    details = dict(publication.ppt) if publication.ppt else {}
    if publication.disclose:
        publisher = publication.publisher
        details.update(publisher=publisher.session_id, publisher_authid=publisher.authid,
                       publisher_authrole=publisher.authrole)
    return details


def _audience(receivers) -> dict | None:
    if receivers is None:
        return None
    audience = {name: sorted(getattr(receivers, name)) for name in _AUDIENCE
                if getattr(receivers, name)}
    return audience or None


def _fields(call, names: tuple) -> dict:
    fields = dict(call.kwargs)
    for name, value in zip(names, call.args):
        fields.setdefault(name, value)
    return fields


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _optional_id(fields: dict, name: str) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ProcedureError(errors.INVALID_ARGUMENT, f"'{name}' must be a publication ID")
    return value


def _limit(value, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_READ:
        raise ProcedureError(errors.INVALID_ARGUMENT, f"'limit' must be a whole number from 1 to {MAX_READ}")
    return value


def _oldest(history: History, topic: str, match: str, since) -> float | None:
    """The earliest timestamp to return: ``since``, and for one topic its rule's max_age."""
    rule = history.rule_for(topic) if match == EXACT else None
    floor = history.realm.now() - rule.max_age if rule is not None and rule.max_age else None
    if since is None:
        return floor
    return float(since) if floor is None else max(float(since), floor)


def _parse_time(kwargs: dict, name: str) -> float | None:
    value = kwargs.get(name)
    if value is None:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("z", "Z"))
    except (AttributeError, ValueError):
        raise ProcedureError(errors.INVALID_ARGUMENT,
                             f"'{name}' must be an RFC 3339 timestamp like 2026-12-01T10:00:00.000Z") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def _spec_times(kwargs: dict) -> dict:
    """from_time (>=), after_time (>), before_time (<), until_time (<=): the tighter bound wins."""
    times: dict = {}
    low = [(t, inclusive) for t, inclusive in ((_parse_time(kwargs, "from_time"), True),
                                               (_parse_time(kwargs, "after_time"), False)) if t is not None]
    high = [(t, inclusive) for t, inclusive in ((_parse_time(kwargs, "until_time"), True),
                                                (_parse_time(kwargs, "before_time"), False)) if t is not None]
    if low:
        t, inclusive = max(low, key=lambda b: (b[0], not b[1]))
        times.update(time_min=t, time_min_inclusive=inclusive)
    if high:
        t, inclusive = min(high, key=lambda b: (b[0], b[1]))
        times.update(time_max=t, time_max_inclusive=inclusive)
    return times


def _answer(call, outcome, shape) -> None:
    if isinstance(outcome, UnknownPublication):
        call.error(UNKNOWN_PUBLICATION, str(outcome))
    elif isinstance(outcome, StoreError):
        call.session.router.on_internal_error(call.session, outcome)
        call.error(STORE_FAILED, "the router could not read the history; see its log")
    else:
        shape(outcome)


def _event_fields(event) -> dict:
    return {"publication": event.publication, "topic": event.topic, "timestamp": event.timestamp,
            "args": list(event.args or ()), "kwargs": dict(event.kwargs or {}),
            "details": dict(event.details)}


def _read_result(call):
    def shape(page) -> None:
        call.result({"events": [_event_fields(e) for e in page.events], "more": page.more})
    return shape


def _as_spec_result(call, page, subscription_id: int) -> None:
    # "an array of Event objects containing an additional timestamp attribute"
    events = []
    for event in page.events:
        details = dict(event.details)
        details.setdefault("topic", event.topic)
        events.append({"timestamp": iso8601(event.timestamp), "subscription": subscription_id,
                       "publication": event.publication, "details": details,
                       "args": list(event.args or ()), "kwargs": dict(event.kwargs or {})})
    call.result(*events, more=page.more)
