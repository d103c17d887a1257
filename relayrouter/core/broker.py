"""The broker role: subscriptions and the routing of publications to events.

One EVENT message is built per publication and matching subscription, and the
same object goes to every receiver of that subscription: Autobahn caches its
serialized bytes per serializer, so a publication to N subscribers costs one
serialization per serializer in use, not N.
"""

from autobahn.wamp import message as m

from . import errors
from .ids import SequentialIds, global_id
from .matching import EXACT, UriIndex
from .uri import pattern_problem

PUBLISH = "publish"
SUBSCRIBE = "subscribe"


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
        created = subscription is None
        if created:
            subscription = Subscription(self._ids.next(), msg.topic, match, self.realm.now())
            self.subscriptions.add(msg.topic, match, subscription)
            self.subscriptions_by_id[subscription.id] = subscription
        # "If the Subscriber is already subscribed ... the Broker SHOULD answer
        # with SUBSCRIBED and the existing Subscription|id"
        fresh = session not in subscription.subscribers
        subscription.subscribers[session] = None
        session.subscriptions.add(subscription)
        session.peer.send(m.Subscribed(msg.request, subscription.id))
        if fresh:
            self.realm.observer.subscribed(session, subscription, created)

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
        session.subscriptions.discard(subscription)
        deleted = not subscription.subscribers
        if deleted:
            self.subscriptions.remove(subscription.uri, subscription.match)
            del self.subscriptions_by_id[subscription.id]
        self.realm.observer.unsubscribed(session, subscription, deleted)

    # ------------------------------------------------------------- publishing

    def publish(self, session, msg: m.Publish, disclose_me: bool = False) -> None:
        refusal = self.realm.authorize(session, PUBLISH, msg.topic)
        if refusal is not None:
            if msg.acknowledge:
                _error(session, msg, errors.NOT_AUTHORIZED, refusal)
            return
        publication = global_id()
        matches = self.subscriptions.match(msg.topic)
        if matches:
            self._dispatch(session, msg, publication, matches, disclose_me)
        if msg.acknowledge:
            session.peer.send(m.Published(msg.request, publication))

    def _dispatch(self, session, msg: m.Publish, publication: int, matches: list, disclose_me: bool) -> None:
        # Publisher exclusion: "exclude_me ... defaults to true"
        exclude_me = msg.exclude_me is not False
        disclose = disclose_me and self.realm.may_disclose_publisher(session, msg.topic)
        receivers_filter = _ReceiverFilter.of(msg)
        for subscription in matches:
            event = m.Event(
                subscription.id,
                publication,
                args=msg.args,
                kwargs=msg.kwargs,
                payload=msg.payload,
                publisher=session.session_id if disclose else None,
                publisher_authid=session.authid if disclose else None,
                publisher_authrole=session.authrole if disclose else None,
                topic=msg.topic if subscription.match != EXACT else None,
                enc_algo=msg.enc_algo,
                enc_key=msg.enc_key,
                enc_serializer=msg.enc_serializer,
            )
            for receiver in subscription.subscribers:
                if receiver is session and exclude_me:
                    continue
                if receivers_filter is not None and not receivers_filter.admits(receiver):
                    continue
                receiver.peer.send(event)


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
