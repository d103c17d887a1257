"""The broker role: subscriptions and the routing of publications to events.

One EVENT message is built per publication and matching subscription, and the
same object goes to every receiver of that subscription: Autobahn caches its
serialized bytes per serializer, so a publication to N subscribers costs one
serialization per serializer in use, not N.
"""

from autobahn.wamp import message as m

from . import errors, messages
from .ids import SequentialIds, global_id
from .limits import refuse, subscription_refused
from .matching import EXACT, UriIndex, pattern_matches
from .messages import ppt_options
from .uri import pattern_problem

PUBLISH = "publish"
SUBSCRIBE = "subscribe"
PPT_FEATURE = "payload_passthru_mode"

_NO_OPTIONS: dict = {}


class Subscription:
    __slots__ = ("id", "uri", "match", "subscribers", "created")

    def __init__(self, sub_id: int, uri: str, match: str, created: float) -> None:
        self.id = sub_id
        self.uri = uri
        self.match = match
        # Insertion-ordered set of subscribed sessions.
        self.subscribers: dict = {}
        self.created = created


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
        self._ids = SequentialIds()

    # ------------------------------------------------------------ subscribing

    def subscribe(self, session, msg: m.Subscribe) -> None:
        match = msg.match or EXACT  # some clients send match: null for exact
        problem = pattern_problem(msg.topic, match)
        if problem is not None:
            _error(session, msg, errors.INVALID_URI, f"cannot subscribe: {problem}")
            return
        refusal = self.realm.authorize(session, SUBSCRIBE, msg.topic, match)
        if refusal is not None:
            _error(session, msg, errors.NOT_AUTHORIZED, refusal)
            return
        subscription = self.subscriptions.get(msg.topic, match)
        if subscription is None or session not in subscription.subscribers:
            over = subscription_refused(session)
            if over is not None:
                refuse(session, msg, "max_subscriptions", over)
                return
        created = subscription is None
        if created:
            subscription = Subscription(self._ids.next(), msg.topic, match, self.realm.now())
            self.subscriptions.add(msg.topic, match, subscription)
            self.subscriptions_by_id[subscription.id] = subscription
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
            self.subscriptions.remove(subscription.uri, subscription.match)
            del self.subscriptions_by_id[subscription.id]
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
        publication = self._route(Publication(msg, session, disclose, ppt))
        if msg.acknowledge:
            session.peer.send(m.Published(msg.request, publication))

    def publish_for(self, session, msg: m.Publish) -> None:
        """Publish on behalf of a session that is leaving (a testament); never disclosed."""
        self._route(Publication(msg, session, False, None, excludable=False))

    def _route(self, publication: "Publication") -> int:
        publication_id = global_id()
        msg = publication.msg
        matches = self.subscriptions.match(msg.topic)
        if matches:
            self._dispatch(publication, publication_id, matches)
        # "A Publisher can request storage of a new Retained Event by setting Publish.Options.retain"
        if msg.retain:
            self._retain(msg.topic, publication, publication_id)
        if self.history is not None:
            self.history.record(publication, publication_id)
        return publication_id

    def _dispatch(self, publication: "Publication", publication_id: int, matches: list) -> None:
        for subscription in matches:
            event = publication.event(subscription, publication_id)
            # A snapshot: a receiver may leave while we send (its transport failing).
            for receiver in tuple(subscription.subscribers):
                if publication.admits(receiver):
                    receiver.peer.send(event)

    def publish_meta(self, matches: list, topic: str, args: list) -> None:
        """A meta event published by the router itself to ``matches`` (from
        ``subscriptions.match(topic)``, which the caller checked first)."""
        publication_id = global_id()
        for subscription in matches:
            event = m.Event(subscription.id, publication_id, args=args,
                            topic=topic if subscription.match != EXACT else None)
            for receiver in tuple(subscription.subscribers):
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
            if publication.admits(session):
                session.peer.send(publication.event(subscription, publication_id, retained=True))


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

    def event(self, subscription: Subscription, publication_id: int, retained: bool = False) -> m.Event:
        msg = self.msg
        disclose = self.disclose
        publisher = self.publisher
        return messages.event(
            self.ppt,
            subscription.id,
            publication_id,
            args=msg.args,
            kwargs=msg.kwargs,
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
        if not (msg.eligible or msg.eligible_authid or msg.eligible_authrole
                or msg.exclude or msg.exclude_authid or msg.exclude_authrole
                or msg.eligible == [] or msg.eligible_authid == [] or msg.eligible_authrole == []):
            return None
        self = cls()
        self.eligible = _as_set(msg.eligible)
        self.eligible_authid = _as_set(msg.eligible_authid)
        self.eligible_authrole = _as_set(msg.eligible_authrole)
        self.exclude = _as_set(msg.exclude) or ()
        self.exclude_authid = _as_set(msg.exclude_authid) or ()
        self.exclude_authrole = _as_set(msg.exclude_authrole) or ()
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


def _as_set(values) -> set | None:
    if values is None:
        return None
    if isinstance(values, str):
        return {values}
    return set(values)


def _error(session, request, uri: str, text: str) -> None:
    session.peer.send(m.Error(request.MESSAGE_TYPE, request.request, uri, args=[text]))
