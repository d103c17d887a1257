"""The WAMP meta API of a realm: meta procedures the router answers itself,
meta events it publishes, and session testaments.

Theory of operation
-------------------
Meta procedures (``wamp.session.*``, ``wamp.subscription.*``,
``wamp.registration.*``) are router procedures (core/procedures.py): added
to the realm's registry by :class:`MetaApi`, authorized like any call, and
answered at once with RESULT or ERROR.  Clients cannot register those URIs.

Meta events come from the realm's :class:`RealmObserver` hooks.  Each hook
first asks the broker's index whether anyone subscribes to the meta topic and
builds nothing otherwise, so meta events cost one index lookup when nobody
listens.  Subscriptions and registrations of ``wamp.*`` URIs raise no meta
events (the meta API does not report on itself).

Testaments (``wamp.session.add_testament``) are parsed and authorized when
added, kept on the session per scope, and published by the broker when the
session leaves the realm in any way (GOODBYE, kill, transport lost): this
router has no session resumption, so a session is detached and destroyed at
once, and "detached"-scope testaments go first, as the spec requires.
"""

from datetime import datetime, timezone

from autobahn.wamp import message as m
from autobahn.wamp.exception import InvalidUriError, ProtocolError

from . import errors
from .procedures import ProcedureError
from .matching import EXACT, MATCH_POLICIES
from .realm_observer import RealmObserver
from .uri import uri_problem

PUBLISH = "publish"

# Testament scopes: "Default MUST be destroyed"; detached ones are sent first.
DETACHED = "detached"
DESTROYED = "destroyed"
SCOPES = (DETACHED, DESTROYED)
MAX_TESTAMENTS = 64  # per session and scope: bounded memory whatever clients do


# ------------------------------------------------------------------ helpers


def iso8601(seconds: float) -> str:
    stamp = datetime.fromtimestamp(seconds, timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def session_details(session) -> dict:
    transport = session.transport
    return {
        "session": session.session_id,
        "authid": session.authid,
        "authrole": session.authrole,
        "authmethod": session.authmethod,
        "authprovider": session.authprovider,
        "transport": {"type": transport.kind, "peer": transport.peer,
                      "serializer": transport.serializer, "is_secure": transport.is_secure},
    }


def subscription_details(subscription) -> dict:
    return {"id": subscription.id, "created": iso8601(subscription.created),
            "uri": subscription.uri, "match": subscription.match}


def registration_details(registration) -> dict:
    return {"id": registration.id, "created": iso8601(registration.created),
            "uri": registration.uri, "match": registration.match, "invoke": registration.invoke}


def arg(args: list, index: int, kind, name: str, optional: bool = False):
    if len(args) <= index or (optional and args[index] is None):
        if optional:
            return None
        raise ProcedureError(errors.INVALID_ARGUMENT, f"missing argument {index + 1}: {name}")
    value = args[index]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ProcedureError(errors.INVALID_ARGUMENT, f"argument {index + 1} ({name}) has the wrong type")
    return value


def _kwarg(kwargs: dict, name: str, kind, default):
    value = kwargs.get(name, default)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise ProcedureError(errors.INVALID_ARGUMENT, f"keyword argument '{name}' has the wrong type")
    return value


def match_option(options) -> str:
    match = (options or {}).get("match") or EXACT
    if match not in MATCH_POLICIES:
        raise ProcedureError(errors.INVALID_ARGUMENT, f"unknown match policy '{match}'")
    return match


def by_policy(entries) -> dict:
    lists = {policy: [] for policy in MATCH_POLICIES}
    for entry in entries:
        lists[entry.match].append(entry.id)
    return lists


# ------------------------------------------------------------ the procedures


class MetaApi:
    """The meta procedures of one realm."""

    def __init__(self, realm) -> None:
        self.realm = realm
        # The cluster view (relayrouter/cluster/view.py) when [cluster] is
        # configured: told when a leaving session's testaments were published
        # here, so that no other node publishes them again.
        self.cluster = None
        for uri, handler in PROCEDURES.items():
            realm.procedures.add(uri, handler)

    def publish_testaments(self, session) -> None:
        testaments, session.testaments = session.testaments, {}
        publish_testaments(self.realm.broker, session, testaments)
        if self.cluster is not None:
            self.cluster.testaments_published(self.realm, session)


def publish_testaments(broker, session, testaments: dict) -> None:
    """``testaments`` (scope -> [Publish]) on behalf of ``session``, which is gone."""
    for scope in SCOPES:  # "MUST send detached-scope Testaments before destroyed-scope"
        for publish in testaments.get(scope, ()):
            broker.publish_for(session, publish)


def _session(call) -> object:
    session_id = arg(call.args, 0, int, "session")
    session = call.realm.sessions.get(session_id)
    if session is None:
        raise ProcedureError(errors.NO_SUCH_SESSION, f"no session {session_id} in realm '{call.realm.name}'")
    return session


def _sessions_with_roles(call) -> list:
    roles = arg(call.args, 0, list, "filter_authroles", optional=True)
    sessions = call.realm.sessions.values()
    if roles is None:
        return list(sessions)
    return [s for s in sessions if s.authrole in roles]


def session_count(call):
    return len(_sessions_with_roles(call))


def session_list(call):
    return [s.session_id for s in _sessions_with_roles(call)]


def session_get(call):
    return session_details(_session(call))


def close_reason(kwargs) -> tuple[str, str | None]:
    # "if not provided the reason defaults to wamp.close.normal"
    reason = _kwarg(kwargs, "reason", str, errors.CLOSE_NORMAL)
    if not reason or uri_problem(reason) is not None:
        raise ProcedureError(errors.INVALID_URI, f"'{reason}' is not a valid close reason URI")
    return reason, _kwarg(kwargs, "message", str, None)


def _kill(sessions, kwargs) -> int:
    reason, text = close_reason(kwargs)
    for session in sessions:
        session.goodbye(reason, text)
    return len(sessions)


def session_kill(call):
    target = _session(call)
    # "Specifying the caller's own session will result in a wamp.error.no_such_session"
    if target is call.session:
        raise ProcedureError(errors.NO_SUCH_SESSION, "a session cannot kill itself; send GOODBYE instead")
    _kill([target], call.kwargs)
    return None


def session_kill_by_authid(call):
    authid = arg(call.args, 0, str, "authid")
    targets = [s for s in call.realm.sessions.values() if s.authid == authid and s is not call.session]
    return _kill(targets, call.kwargs)


def session_kill_by_authrole(call):
    authrole = arg(call.args, 0, str, "authrole")
    targets = [s for s in call.realm.sessions.values() if s.authrole == authrole and s is not call.session]
    return _kill(targets, call.kwargs)


def add_testament(call):
    args, kwargs, caller = call.args, call.kwargs, call.session
    topic = arg(args, 0, str, "topic")
    event_args = arg(args, 1, list, "args", optional=True)
    event_kwargs = arg(args, 2, dict, "kwargs", optional=True)
    options = dict(_kwarg(kwargs, "publish_options", dict, {}))
    scope = testament_scope(kwargs)
    options.pop("acknowledge", None)  # "The Router MAY ignore publish options that do not make sense"
    try:
        payload = [event_args or [], event_kwargs] if event_kwargs else ([event_args] if event_args else [])
        publish = m.Publish.parse([m.Publish.MESSAGE_TYPE, 1, options, topic, *payload])
    except InvalidUriError:
        raise ProcedureError(errors.INVALID_URI, f"'{topic}' is not a valid topic URI") from None
    except (ProtocolError, ValueError, TypeError, AssertionError) as e:
        raise ProcedureError(errors.INVALID_ARGUMENT, f"bad publish_options: {e}") from None
    refusal = call.realm.authorize(caller, PUBLISH, topic)
    if refusal is not None:
        raise ProcedureError(errors.NOT_AUTHORIZED, refusal)
    bucket = caller.testaments.setdefault(scope, [])
    if len(bucket) >= MAX_TESTAMENTS:
        raise ProcedureError(errors.INVALID_ARGUMENT, f"at most {MAX_TESTAMENTS} testaments per scope")
    bucket.append(publish)
    return None


def flush_testaments(call):
    call.session.testaments.pop(testament_scope(call.kwargs), None)
    return None


def testament_scope(kwargs) -> str:
    scope = _kwarg(kwargs, "scope", str, DESTROYED)
    if scope not in SCOPES:
        raise ProcedureError(errors.INVALID_ARGUMENT,
                             f"scope must be 'detached' or 'destroyed', not '{scope}'")
    return scope


def _subscription(call):
    subscription_id = arg(call.args, 0, int, "subscription")
    subscription = call.realm.broker.subscriptions_by_id.get(subscription_id)
    if subscription is None:
        raise ProcedureError(errors.NO_SUCH_SUBSCRIPTION, f"no subscription {subscription_id}")
    return subscription


def subscription_list(call):
    return by_policy(call.realm.broker.subscriptions_by_id.values())


def subscription_lookup(call):
    topic = arg(call.args, 0, str, "topic")
    options = arg(call.args, 1, dict, "options", optional=True)
    subscription = call.realm.broker.subscriptions.get(topic, match_option(options))
    # RESULT.Arguments|list == [subscription|id] or [null]: answered explicitly, None included.
    return call.result(subscription.id if subscription is not None else None)


def subscription_match(call):
    matches = call.realm.broker.subscriptions.match(arg(call.args, 0, str, "topic"))
    return call.result([s.id for s in matches] if matches else None)


def subscription_get(call):
    return subscription_details(_subscription(call))


def subscription_list_subscribers(call):
    return [s.session_id for s in _subscription(call).subscribers]


def subscription_count_subscribers(call):
    return len(_subscription(call).subscribers)


def _registration(call):
    registration_id = arg(call.args, 0, int, "registration")
    registration = call.realm.dealer.registrations_by_id.get(registration_id)
    if registration is None:
        raise ProcedureError(errors.NO_SUCH_REGISTRATION, f"no registration {registration_id}")
    return registration


def registration_list(call):
    return by_policy(call.realm.dealer.registrations_by_id.values())


def registration_lookup(call):
    procedure = arg(call.args, 0, str, "procedure")
    options = arg(call.args, 1, dict, "options", optional=True)
    registration = call.realm.dealer.registrations.get(procedure, match_option(options))
    return call.result(registration.id if registration is not None else None)


def registration_match(call):
    registration = call.realm.dealer.registrations.best(arg(call.args, 0, str, "procedure"))
    return call.result(registration.id if registration is not None else None)


def registration_get(call):
    return registration_details(_registration(call))


def registration_list_callees(call):
    return [s.session_id for s in _registration(call).callees]


def registration_count_callees(call):
    return len(_registration(call).callees)


SESSION_COUNT = "wamp.session.count"
PROCEDURES = {
    SESSION_COUNT: session_count,
    "wamp.session.list": session_list,
    "wamp.session.get": session_get,
    "wamp.session.kill": session_kill,
    "wamp.session.kill_by_authid": session_kill_by_authid,
    "wamp.session.kill_by_authrole": session_kill_by_authrole,
    "wamp.session.add_testament": add_testament,
    "wamp.session.flush_testaments": flush_testaments,
    "wamp.subscription.list": subscription_list,
    "wamp.subscription.lookup": subscription_lookup,
    "wamp.subscription.match": subscription_match,
    "wamp.subscription.get": subscription_get,
    "wamp.subscription.list_subscribers": subscription_list_subscribers,
    "wamp.subscription.count_subscribers": subscription_count_subscribers,
    "wamp.registration.list": registration_list,
    "wamp.registration.lookup": registration_lookup,
    "wamp.registration.match": registration_match,
    "wamp.registration.get": registration_get,
    "wamp.registration.list_callees": registration_list_callees,
    "wamp.registration.count_callees": registration_count_callees,
}


# ---------------------------------------------------------------- the events


def _is_meta(uri: str) -> bool:
    return uri.startswith("wamp.")


class MetaEvents(RealmObserver):
    """Publishes the spec's meta events on the realm's broker, as the router.

    Each hook looks the meta topic up first and builds its payload only when
    someone subscribes to it."""

    def __init__(self, realm) -> None:
        self.realm = realm

    def _matches(self, topic: str) -> list | None:
        """The local subscriptions to ``topic``; None when nobody may want it
        (none here, and no other nodes: a clustered realm's go to them too)."""
        broker = self.realm.broker
        matches = broker.subscriptions.match(topic)
        return matches if matches or broker.cluster is not None else None

    def _publish(self, matches: list, topic: str, args: list) -> None:
        broker = self.realm.broker
        if matches:
            broker.publish_meta(matches, topic, args)
        if broker.cluster is not None:  # every other node's subscribers too (relayrouter/cluster/)
            broker.cluster.meta_published(broker, topic, args)

    def joined(self, session) -> None:
        matches = self._matches("wamp.session.on_join")
        if matches is not None:
            self._publish(matches, "wamp.session.on_join", [session_details(session)])

    def left(self, session) -> None:
        matches = self._matches("wamp.session.on_leave")
        if matches is not None:
            self._publish(matches, "wamp.session.on_leave",
                          [session.session_id, session.authid, session.authrole])

    def subscribed(self, session, subscription, created: bool) -> None:
        if not _is_meta(subscription.uri):
            self._lifecycle("wamp.subscription", "on_subscribe", session, subscription,
                            subscription_details if created else None)

    def unsubscribed(self, session, subscription, deleted: bool) -> None:
        if not _is_meta(subscription.uri):
            self._lifecycle("wamp.subscription", "on_unsubscribe", session, subscription, None, deleted)

    def registered(self, session, registration, created: bool) -> None:
        if not _is_meta(registration.uri):
            self._lifecycle("wamp.registration", "on_register", session, registration,
                            registration_details if created else None)

    def unregistered(self, session, registration, deleted: bool) -> None:
        if not _is_meta(registration.uri):
            self._lifecycle("wamp.registration", "on_unregister", session, registration, None, deleted)

    def _lifecycle(self, prefix: str, event: str, session, entry, created_details=None,
                   deleted: bool = False) -> None:
        # "on_subscribe MUST always be fired subsequent to on_create";
        # "on_delete MUST always be preceded by on_unsubscribe"
        if created_details is not None:
            topic = f"{prefix}.on_create"
            matches = self._matches(topic)
            if matches is not None:
                self._publish(matches, topic, [session.session_id, created_details(entry)])
        topic = f"{prefix}.{event}"
        matches = self._matches(topic)
        if matches is not None:
            self._publish(matches, topic, [session.session_id, entry.id])
        if deleted:
            topic = f"{prefix}.on_delete"
            matches = self._matches(topic)
            if matches is not None:
                self._publish(matches, topic, [session.session_id, entry.id])
