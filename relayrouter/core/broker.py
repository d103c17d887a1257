"""The broker role: subscriptions and the routing of publications to events.

One EVENT message is built per publication and matching subscription, and the
same object goes to every receiver of that subscription: Autobahn caches its
serialized bytes per serializer, so a publication to N subscribers costs one
serialization per serializer in use, not N.

Filtered subscriptions: a SUBSCRIBE with the custom options ``_fields`` and/or
``_where`` (dojot's projection and conditions, :mod:`.filters`; custom
attributes per the WAMP spec, "_" and at least three of [a-z0-9_]) gets a
subscription of its own, a *variant* hung off the plain subscription of the
same topic and match.  Equal filters share one variant (and its ID), so one
filtered EVENT is built per variant, not per receiver.  A plain subscription
pays one empty-attribute check per publication for this; its EVENT is never
touched.  The filter reads the event's first positional argument when it is an
object, otherwise its keyword arguments; an event the conditions reject is
not sent (counted in ``filtered_out``), and payload-passthru events, which the
router cannot read, never reach filtered subscribers (``filtered_opaque``).
"""

from autobahn.wamp import message as m

from . import errors, messages
from .filters import INVALID_SYNTAX as INVALID_SYNTAX_KIND
from .filters import ContentFilter, FilterError
from .ids import SequentialIds, global_id
from .limits import refuse, subscription_refused
from .matching import EXACT, UriIndex, pattern_matches
from .messages import ppt_options
from .uri import pattern_problem

PUBLISH = "publish"
SUBSCRIBE = "subscribe"
PPT_FEATURE = "payload_passthru_mode"

_NO_OPTIONS: dict = {}
_SAME = object()  # Publication.event: the publication's own args/kwargs
FIELDS_OPTION = "_fields"
WHERE_OPTION = "_where"


class Subscription:
    __slots__ = ("id", "uri", "match", "subscribers", "created", "filter", "variants")

    def __init__(self, sub_id: int, uri: str, match: str, created: float,
                 content_filter: ContentFilter | None = None) -> None:
        self.id = sub_id
        self.uri = uri
        self.match = match
        # Insertion-ordered set of subscribed sessions.
        self.subscribers: dict = {}
        self.created = created
        self.filter = content_filter
        # Filtered subscriptions on the same topic and match, by filter key
        # (only on a plain subscription; None until the first one).
        self.variants: dict | None = None


class Broker:
    def __init__(self, realm) -> None:
        self.realm = realm
        self.subscriptions = UriIndex[Subscription]()
        self.subscriptions_by_id: dict[int, Subscription] = {}
        # topic -> (Publication, publication ID): the retained event of each
        # topic, oldest first, at most realm.policy.max_retained_events.
        self.retained: dict[str, tuple] = {}
        # Event history (core/history.py) when the realm keeps any: told of
        # every routed publication.
        self.history = None
        # Mailboxes (core/mailbox.py) when the realm has any: a PUBLISH to a
        # mailbox URI is stored there instead of routed.
        self.mailboxes = None
        # The cluster link (relayrouter/cluster/, Twisted side) when [cluster]
        # is configured: told of each publication routed here and of each
        # topic pattern that gains its first or loses its last subscription.
        self.cluster = None
        # f(topic, match, filter key or None) -> subscription ID, set by the
        # cluster so that one topic pattern has one ID on every node; None:
        # sequential IDs of this node's own.
        self.ids_by_name = None
        self._ids = SequentialIds()

    # ------------------------------------------------------------ subscribing

    def subscribe(self, session, msg: m.Subscribe, options: dict = _NO_OPTIONS) -> None:
        match = msg.match or EXACT  # some clients send match: null for exact
        problem = pattern_problem(msg.topic, match)
        if problem is not None:
            _error(session, msg, errors.INVALID_URI, f"cannot subscribe: {problem}")
            return
        refusal = self.realm.authorize(session, SUBSCRIBE, msg.topic, match)
        if refusal is not None:
            _error(session, msg, errors.NOT_AUTHORIZED, refusal)
            return
        try:
            content_filter = _content_filter(options)
        except FilterError as e:
            _error(session, msg, e.uri, f"cannot subscribe: {e.message}")
            return
        base = self.subscriptions.get(msg.topic, match)
        subscription = base if content_filter is None else _variant(base, content_filter)
        if subscription is None or session not in subscription.subscribers:
            over = subscription_refused(session)
            if over is not None:
                refuse(session, msg, "max_subscriptions", over)
                return
        created = subscription is None
        if created:
            subscription = self._create(msg.topic, match, base, content_filter)
        # "If the Subscriber is already subscribed ... the Broker SHOULD answer
        # with SUBSCRIBED and the existing Subscription|id"
        fresh = session not in subscription.subscribers
        subscription.subscribers[session] = None
        session.subscriptions.setdefault(subscription)
        session.peer.send(m.Subscribed(msg.request, subscription.id))
        if fresh:
            self.realm.observer.subscribed(session, subscription, created)
        if msg.get_retained and self.retained:
            self._send_retained(session, subscription)

    def _create(self, topic: str, match: str, base: Subscription | None,
                content_filter: ContentFilter | None) -> Subscription:
        if base is None:
            base = Subscription(self._new_id(topic, match, None), topic, match, self.realm.now())
            self.subscriptions.add(topic, match, base)
            self.subscriptions_by_id[base.id] = base
            if self.cluster is not None:
                self.cluster.interest_added(self, base)
        if content_filter is None:
            return base
        variant = Subscription(self._new_id(topic, match, content_filter.key), topic, match, self.realm.now(),
                               content_filter)
        if base.variants is None:
            base.variants = {}
        base.variants[content_filter.key] = variant
        self.subscriptions_by_id[variant.id] = variant
        return variant

    def _new_id(self, topic: str, match: str, filter_key) -> int:
        if self.ids_by_name is None:
            return self._ids.next()
        sub_id = self.ids_by_name(topic, match, filter_key)
        while sub_id in self.subscriptions_by_id:  # two names, one hash: this one differs from the other nodes'
            sub_id = global_id()
        return sub_id

    def unsubscribe(self, session, msg: m.Unsubscribe) -> None:
        subscription = self.subscriptions_by_id.get(msg.subscription)
        if subscription is None or session not in subscription.subscribers:
            _error(session, msg, errors.NO_SUCH_SUBSCRIPTION,
                   f"this session has no subscription {msg.subscription}")
            return
        self._drop(session, subscription)
        session.peer.send(m.Unsubscribed(msg.request))

    def remove_session(self, session) -> None:
        for subscription in list(session.subscriptions):
            self._drop(session, subscription)

    def _drop(self, session, subscription: Subscription) -> None:
        del subscription.subscribers[session]
        session.subscriptions.pop(subscription, None)
        deleted = not subscription.subscribers
        if deleted:
            base = self.subscriptions.get(subscription.uri, subscription.match)
            if subscription is not base:
                del base.variants[subscription.filter.key]
                del self.subscriptions_by_id[subscription.id]
            if not base.subscribers and not base.variants:
                self.subscriptions.remove(base.uri, base.match)
                self.subscriptions_by_id.pop(base.id, None)
                if self.cluster is not None:
                    self.cluster.interest_removed(self, base)
        self.realm.observer.unsubscribed(session, subscription, deleted)

    # ------------------------------------------------------------- publishing

    def publish(self, session, msg: m.Publish, options: dict = _NO_OPTIONS) -> None:
        """A PUBLISH from ``session``; ``options`` is its raw Options dict."""
        refusal = self.realm.authorize(session, PUBLISH, msg.topic)
        if refusal is not None:
            if msg.acknowledge:
                _error(session, msg, errors.NOT_AUTHORIZED, refusal)
            return
        ppt = ppt_options(options)
        if ppt is not None and not session.supports("publisher", PPT_FEATURE):
            raise errors.ProtocolViolation(
                "PUBLISH uses payload passthru mode (ppt_scheme) but the session did not "
                "announce payload_passthru_mode for its publisher role")
        disclose = options.get("disclose_me") is True
        if disclose and not self.realm.may_disclose_publisher(session, msg.topic):
            # "a Broker may deny a Publisher's request to disclose its identity"
            if msg.acknowledge:
                _error(session, msg, errors.DISCLOSE_ME_DISALLOWED,
                       "this realm does not let publishers disclose their identity")
            return
        mailboxes = self.mailboxes
        if mailboxes is not None and mailboxes.match(msg.topic) is not None:
            mailboxes.publish(session, msg)  # PUBLISHED once durable
            return
        publication = self._route(Publication(msg, session, disclose, ppt))
        if msg.acknowledge:
            session.peer.send(m.Published(msg.request, publication))

    def publish_for(self, session, msg: m.Publish) -> None:
        """Publish on behalf of a session that is leaving (a testament); never disclosed."""
        self._route(Publication(msg, session, False, None, excludable=False))

    def _route(self, publication: "Publication") -> int:
        publication_id = global_id()
        self.realm.router.stats.publications += 1
        msg = publication.msg
        matches = self.subscriptions.match(msg.topic)
        if matches:
            self._dispatch(publication, publication_id, matches)
        # "A Publisher can request storage of a new Retained Event by setting Publish.Options.retain"
        if msg.retain:
            self._retain(msg.topic, publication, publication_id)
        if self.history is not None:
            self.history.record(publication, publication_id)
        if self.cluster is not None:
            self.cluster.published(self, publication, publication_id)
        return publication_id

    def dispatch_remote(self, publication: "Publication", publication_id: int, matches: list) -> None:
        """A publication routed by another node, to the local ``matches``
        (base subscriptions): sent here, never retained, kept or forwarded."""
        self._dispatch(publication, publication_id, matches)

    def _dispatch(self, publication: "Publication", publication_id: int, matches: list) -> None:
        # Publication.admits, inlined: this loop runs once per receiver.
        excluded = publication.publisher if publication.exclude_me else None
        receivers = publication.receivers
        for subscription in matches:
            if subscription.subscribers:
                event = publication.event(subscription, publication_id)
                # A snapshot: a receiver may leave while we send (its transport failing).
                for receiver in tuple(subscription.subscribers):
                    if receiver is not excluded and (receivers is None or receivers.admits(receiver)):
                        receiver.peer.send(event)
            if subscription.variants:
                self._dispatch_filtered(publication, publication_id, subscription)

    def _dispatch_filtered(self, publication: "Publication", publication_id: int, base: Subscription) -> None:
        for variant in tuple(base.variants.values()):
            event = self._filtered_event(publication, variant, publication_id)
            if event is not None:
                for receiver in tuple(variant.subscribers):
                    if publication.admits(receiver):
                        receiver.peer.send(event)

    def _filtered_event(self, publication: "Publication", variant: Subscription, publication_id: int,
                        retained: bool = False):
        msg = publication.msg
        if msg.payload is not None or publication.ppt is not None:
            self.realm.counters["filtered_opaque"] += 1
            return None
        args, kwargs = _filtered_payload(variant.filter, msg.args, msg.kwargs)
        if args is None and kwargs is None:
            self.realm.counters["filtered_out"] += 1
            return None
        return publication.event(variant, publication_id, retained, args, kwargs)

    def publish_meta(self, matches: list, topic: str, args: list) -> None:
        """A meta event published by the router itself to ``matches`` (from
        ``subscriptions.match(topic)``, which the caller checked first)."""
        publication_id = global_id()
        for subscription in matches:
            targets = [(subscription, args)]
            if subscription.variants:
                targets += [(variant, _filtered_payload(variant.filter, args, None)[0])
                            for variant in subscription.variants.values()]
            for target, target_args in targets:
                if target_args is None:
                    continue
                event = m.Event(target.id, publication_id, args=target_args,
                                topic=topic if target.match != EXACT else None)
                for receiver in tuple(target.subscribers):
                    receiver.peer.send(event)

    # --------------------------------------------------------------- retention

    def _retain(self, topic: str, publication: "Publication", publication_id: int) -> None:
        retained = self.retained
        retained.pop(topic, None)
        retained[topic] = (publication, publication_id)
        # Memory stays bounded: the oldest retained topic goes first.
        limit = self.realm.policy.max_retained_events
        while len(retained) > limit:
            retained.pop(next(iter(retained)))
            self.realm.counters["retained_events_evicted"] += 1

    def retain_remote(self, topic: str, publication: "Publication", publication_id: int) -> None:
        """The retained event of ``topic`` published on another node (the cluster's shared state)."""
        self._retain(topic, publication, publication_id)

    def forget_retained(self, topic: str) -> None:
        self.retained.pop(topic, None)

    def _send_retained(self, session, subscription: Subscription) -> None:
        # "the Broker MUST send the Subscriber the most recent Retained Event that
        # they would have received if they were subscribing when it was published"
        if subscription.match == EXACT:
            found = self.retained.get(subscription.uri)
            candidates = [found] if found is not None else []
        else:
            candidates = [entry for topic, entry in self.retained.items()
                          if pattern_matches(subscription.uri, subscription.match, topic)]
        for publication, publication_id in candidates:
            if not publication.admits(session):
                continue
            if subscription.filter is None:
                event = publication.event(subscription, publication_id, retained=True)
            else:
                event = self._filtered_event(publication, subscription, publication_id, retained=True)
            if event is not None:
                session.peer.send(event)


class Publication:
    """What a publication needs to become EVENTs, now or later (retained)."""

    __slots__ = ("msg", "publisher", "disclose", "ppt", "exclude_me", "receivers")

    def __init__(self, msg: m.Publish, publisher, disclose: bool, ppt: dict | None,
                 excludable: bool = True) -> None:
        self.msg = msg
        self.publisher = publisher
        self.disclose = disclose
        self.ppt = ppt
        # Publisher exclusion: "exclude_me ... defaults to true"
        self.exclude_me = excludable and msg.exclude_me is not False
        self.receivers = _ReceiverFilter.of(msg)

    def admits(self, receiver) -> bool:
        if receiver is self.publisher and self.exclude_me:
            return False
        return self.receivers is None or self.receivers.admits(receiver)

    def event(self, subscription: Subscription, publication_id: int, retained: bool = False,
              args=_SAME, kwargs=_SAME) -> m.Event:
        msg = self.msg
        disclose = self.disclose
        publisher = self.publisher
        return messages.event(
            self.ppt,
            subscription.id,
            publication_id,
            args=msg.args if args is _SAME else args,
            kwargs=msg.kwargs if kwargs is _SAME else kwargs,
            payload=msg.payload,
            publisher=publisher.session_id if disclose else None,
            publisher_authid=publisher.authid if disclose else None,
            publisher_authrole=publisher.authrole if disclose else None,
            topic=msg.topic if subscription.match != EXACT else None,
            retained=True if retained else None,
            enc_algo=msg.enc_algo,
            enc_key=msg.enc_key,
            enc_serializer=msg.enc_serializer,
        )


class _ReceiverFilter:
    """Subscriber black- and whitelisting from PUBLISH.Options.

    A receiver gets the event when it passes every whitelist given
    (eligible, eligible_authid, eligible_authrole) and is on no blacklist
    (exclude, exclude_authid, exclude_authrole).
    """

    __slots__ = ("eligible", "eligible_authid", "eligible_authrole",
                 "exclude", "exclude_authid", "exclude_authrole")

    @classmethod
    def of(cls, msg: m.Publish) -> "_ReceiverFilter | None":
        # Each is an Autobahn property (a call): read once.  An empty
        # whitelist admits nobody; an empty blacklist excludes nobody.
        eligible, eligible_authid, eligible_authrole = msg.eligible, msg.eligible_authid, msg.eligible_authrole
        exclude, exclude_authid, exclude_authrole = msg.exclude, msg.exclude_authid, msg.exclude_authrole
        if not (eligible or eligible_authid or eligible_authrole or exclude or exclude_authid or exclude_authrole
                or eligible == [] or eligible_authid == [] or eligible_authrole == []):
            return None
        self = cls()
        self.eligible = _as_set(eligible)
        self.eligible_authid = _as_set(eligible_authid)
        self.eligible_authrole = _as_set(eligible_authrole)
        self.exclude = _as_set(exclude) or ()
        self.exclude_authid = _as_set(exclude_authid) or ()
        self.exclude_authrole = _as_set(exclude_authrole) or ()
        return self

    def admits(self, session) -> bool:
        if self.eligible is not None and session.session_id not in self.eligible:
            return False
        if self.eligible_authid is not None and session.authid not in self.eligible_authid:
            return False
        if self.eligible_authrole is not None and session.authrole not in self.eligible_authrole:
            return False
        return (session.session_id not in self.exclude
                and session.authid not in self.exclude_authid
                and session.authrole not in self.exclude_authrole)


def _content_filter(options: dict) -> ContentFilter | None:
    fields = options.get(FIELDS_OPTION)
    where = options.get(WHERE_OPTION)
    if fields is None and where is None:
        return None
    for name, value in ((FIELDS_OPTION, fields), (WHERE_OPTION, where)):
        if value is not None and not isinstance(value, str):
            raise FilterError(INVALID_SYNTAX_KIND, f"SUBSCRIBE.Options.{name} must be a string, "
                              f"not {type(value).__name__}")
    return ContentFilter(fields or None, where or None)


def _variant(base: Subscription | None, content_filter: ContentFilter) -> Subscription | None:
    if base is None or base.variants is None:
        return None
    return base.variants.get(content_filter.key)


def _filtered_payload(content_filter: ContentFilter, args, kwargs) -> tuple:
    """(args, kwargs) of a filtered event, (None, None) when it is not sent."""
    if args and isinstance(args[0], dict):
        kept = content_filter.apply(args[0])
        return (None, None) if kept is None else ([kept, *args[1:]], kwargs)
    kept = content_filter.apply(kwargs or {})
    return (None, None) if kept is None else (args, kept)


def _as_set(values) -> set | None:
    if values is None:
        return None
    if isinstance(values, str):
        return {values}
    return set(values)


def _error(session, request, uri: str, text: str) -> None:
    session.peer.send(m.Error(request.MESSAGE_TYPE, request.request, uri, args=[text]))
