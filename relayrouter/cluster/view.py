"""The cluster view: the meta API answered for every node (testaments that
outlive the node their session was on are in :mod:`.testaments`).

Theory of operation
-------------------
*Meta API.*  Each node knows only its own sessions and subscriptions, and
answers questions about them on ``<prefix>.meta`` (every node) and
``<prefix>.node.<name>`` (that node alone).  A meta procedure called on one
node answers from its own state when that is enough (``wamp.session.get`` of
a local session, ``wamp.subscription.lookup`` of a local subscription) and
otherwise asks the others: one request on NATS, answers gathered until every
node heard within the heartbeat TTL has answered or ``heartbeat_ttl / 2`` has
passed, then merged with the local answer.  A dead node answers nothing, so
its sessions and subscriptions are gone from the answers at once (at worst a
question waits the deadline while it is still listed as live).  We chose
asking over a directory in JetStream KV: answers are the nodes' own state at
the time, with no copy to keep right after crashes and partitions, nothing
is written per SUBSCRIBE or join, and the cost (one round trip) is paid only
by meta calls, which are rare.

*Subscription IDs* are the same on every node for the same topic, match
policy and filter: a hash of them into [1, 2^53] (``broker.ids_by_name``), so
a lookup on one node gives the ID another node's subscribers hold, and
``list_subscribers`` of that ID answers for all.  On a (rare) hash collision
within one node, the second subscription gets a random ID of its own.

*Testaments* (``wamp.session.add_testament`` and ``flush_testaments``) are
kept in JetStream KV so that they outlive their node: :mod:`.testaments`,
which pings nodes with this module's questions.

Wire formats (msgpack):

- question: ``[1, asking node, reply subject, realm, op, args]``;
- answer: ``[1, answering node, result]`` (nil for an unknown realm); a
  ping's result is the answering process's incarnation.
"""

import asyncio
import hashlib

import msgpack
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..core import errors, meta
from ..core.ids import MAX_ID, global_id
from ..core.procedures import PENDING, ProcedureError
from . import subjects
from .testaments import Testaments

log = Logger(namespace="relayrouter.cluster")

WIRE_VERSION = 1


def subscription_id(realm: str, topic: str, match: str, filter_key) -> int:
    """The ID every node gives a subscription: a hash of realm, topic, match and filter."""
    name = "\0".join((realm, match, topic, repr(filter_key))).encode("utf8")
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big") % MAX_ID + 1


class ClusterView:
    def __init__(self, cluster) -> None:
        self.cluster = cluster
        self.bridge = cluster.bridge
        self.reactor = cluster.reactor
        config = self.config = cluster.config
        self.node = config.node
        self.incarnation = global_id()  # this process, among those that ran with this node name
        self.deadline = config.heartbeat_ttl / 2
        self.counters = cluster.counters  # meta_questions, meta_answers
        self.realms: dict = {}
        self._meta_subject = subjects.meta_subject(config.subject_prefix)
        self._node_subject = subjects.node_subject(config.subject_prefix, config.node)
        for subject in (self._meta_subject, self._node_subject):
            cluster.handlers[subject] = self._asked
            self.bridge.subscribe(subject)
        self.testaments = Testaments(cluster, self)

    def attach(self, realm) -> None:
        self.realms[realm.name] = realm
        realm.broker.ids_by_name = lambda topic, match, key, name=realm.name: subscription_id(name, topic, match, key)
        realm.meta.cluster = self
        for uri, method in _PROCEDURES.items():
            realm.procedures.remove(uri)
            realm.procedures.add(uri, getattr(self, method))
        for uri, method in _TESTAMENT_PROCEDURES.items():
            realm.procedures.remove(uri)
            realm.procedures.add(uri, getattr(self.testaments, method))

    def start(self) -> None:
        self.testaments.start()

    def stop(self) -> None:
        self.testaments.stop()

    def testaments_published(self, realm, session) -> None:
        """The core published a leaving session's testaments here: nobody else must."""
        self.testaments.testaments_published(realm, session)

    def ping(self, node: str):
        """A Deferred: ``{node: its incarnation}`` if it answered within the deadline, else ``{}``."""
        return self.bridge.run(_gather, subjects.node_subject(self.config.subject_prefix, node),
                               [self.node, None, "ping", []], {node}, self.deadline)

    # ------------------------------------------------------ asking the others

    def _ask(self, call, op: str, args: list, merge):
        """Ask every live node ``op``; ``merge(answers)`` ({node: result}) answers ``call``."""
        expected = set(self.cluster.live_nodes())
        if not expected or not self.bridge.connected:
            return merge({})
        self.counters["meta_questions"] += 1
        d = self.bridge.run(_gather, self._meta_subject, [self.node, call.realm.name, op, args],
                            expected, self.deadline)
        d.addCallbacks(self._answer, self._unanswered, callbackArgs=(call, merge),
                       errbackArgs=(call, merge))
        return PENDING

    def _unanswered(self, failure: Failure, call, merge) -> None:
        log.info("cluster: a meta question to the other nodes failed ({error}); answering for this node",
                 error=failure.getErrorMessage())
        self._answer({}, call, merge)

    def _answer(self, answers: dict, call, merge) -> None:
        try:
            value = merge(answers)
        except ProcedureError as e:
            call.error(e.uri, e.message, *e.error_args, **e.error_kwargs)
            return
        except Exception as e:
            call.session.router.on_internal_error(call.session, e)
            call.error(errors.INTERNAL_ERROR, f"the router failed to answer '{call.procedure}'; see its log")
            return
        if call.done:
            return
        if value is None:
            call.result()
        else:
            call.result(value)

    def _asked(self, data: bytes) -> None:
        version, asker, reply, realm_name, op, args = msgpack.unpackb(data, raw=False)[:6]
        realm = self.realms.get(realm_name)
        fn = _ANSWERS.get(op)
        result = None
        if fn is not None and (realm is not None or op == "ping"):
            result = fn(self, realm, *args)
        self.counters["meta_answers"] += 1
        self.bridge.publish(reply, msgpack.packb([WIRE_VERSION, self.node, result], use_bin_type=True))

    # ------------------------------------------- what this node answers others

    def _answer_ping(self, realm) -> int:
        return self.incarnation

    def _answer_sessions(self, realm, roles) -> list:
        return [s.session_id for s in realm.sessions.values() if roles is None or s.authrole in roles]

    def _answer_session(self, realm, session_id):
        session = realm.sessions.get(session_id)
        return meta.session_details(session) if session is not None else None

    def _answer_kill(self, realm, session_id, reason, text) -> int:
        session = realm.sessions.get(session_id)
        if session is None:
            return 0
        session.goodbye(reason, text)
        return 1

    def _answer_kill_by(self, realm, attribute, value, reason, text) -> int:
        if attribute not in ("authid", "authrole"):
            return 0
        targets = [s for s in realm.sessions.values() if getattr(s, attribute) == value]
        for session in targets:
            session.goodbye(reason, text)
        return len(targets)

    def _answer_sub_list(self, realm) -> list:
        return [[s.id, s.match] for s in realm.broker.subscriptions_by_id.values()]

    def _answer_sub_lookup(self, realm, topic, match):
        subscription = realm.broker.subscriptions.get(topic, match)
        return subscription.id if subscription is not None else None

    def _answer_sub_match(self, realm, topic) -> list:
        return [s.id for s in realm.broker.subscriptions.match(topic)]

    def _answer_sub_get(self, realm, subscription_id):
        subscription = realm.broker.subscriptions_by_id.get(subscription_id)
        return meta.subscription_details(subscription) if subscription is not None else None

    def _answer_subscribers(self, realm, subscription_id):
        subscription = realm.broker.subscriptions_by_id.get(subscription_id)
        return [s.session_id for s in subscription.subscribers] if subscription is not None else None

    # ------------------------------------------------------ meta procedures

    def session_list(self, call):
        roles = meta.arg(call.args, 0, list, "filter_authroles", optional=True)
        local = meta.session_list(call)
        return self._ask(call, "sessions", [roles], lambda answers: local + _joined(answers.values()))

    def session_get(self, call):
        session_id = meta.arg(call.args, 0, int, "session")
        if session_id in call.realm.sessions:
            return meta.session_get(call)

        def merge(answers):
            for details in answers.values():
                if details is not None:
                    return details
            raise ProcedureError(errors.NO_SUCH_SESSION, f"no session {session_id} in realm '{call.realm.name}'"
                                 " on any node")
        return self._ask(call, "session", [session_id], merge)

    def session_kill(self, call):
        session_id = meta.arg(call.args, 0, int, "session")
        if session_id in call.realm.sessions:
            return meta.session_kill(call)
        reason, text = meta.close_reason(call.kwargs)

        def merge(answers):
            if not any(answers.values()):
                raise ProcedureError(errors.NO_SUCH_SESSION,
                                     f"no session {session_id} in realm '{call.realm.name}' on any node")
            return None
        return self._ask(call, "kill", [session_id, reason, text], merge)

    def session_kill_by_authid(self, call):
        return self._kill_by(call, "authid", meta.session_kill_by_authid)

    def session_kill_by_authrole(self, call):
        return self._kill_by(call, "authrole", meta.session_kill_by_authrole)

    def _kill_by(self, call, attribute: str, local_kill):
        value = meta.arg(call.args, 0, str, attribute)
        reason, text = meta.close_reason(call.kwargs)
        here = local_kill(call)
        return self._ask(call, "kill_by", [attribute, value, reason, text],
                         lambda answers: here + sum(n or 0 for n in answers.values()))

    def subscription_list(self, call):
        lists = meta.subscription_list(call)

        def merge(answers):
            seen = {sub_id for ids in lists.values() for sub_id in ids}
            for pairs in answers.values():
                for sub_id, match in pairs or ():
                    if match in lists and sub_id not in seen:
                        seen.add(sub_id)
                        lists[match].append(sub_id)
            return lists
        return self._ask(call, "sub_list", [], merge)

    def subscription_lookup(self, call):
        topic = meta.arg(call.args, 0, str, "topic")
        options = meta.arg(call.args, 1, dict, "options", optional=True)
        match = meta.match_option(options)
        local = call.realm.broker.subscriptions.get(topic, match)
        if local is not None:
            return call.result(local.id)

        def merge(answers):
            found = [sub_id for sub_id in answers.values() if sub_id is not None]
            # RESULT.Arguments|list == [subscription|id] or [null]
            return call.result(found[0] if found else None)
        return self._ask(call, "sub_lookup", [topic, match], merge)

    def subscription_match(self, call):
        topic = meta.arg(call.args, 0, str, "topic")
        local = [s.id for s in call.realm.broker.subscriptions.match(topic)]

        def merge(answers):
            ids = _union(local, answers.values())
            return call.result(ids or None)
        return self._ask(call, "sub_match", [topic], merge)

    def subscription_get(self, call):
        subscription_id = meta.arg(call.args, 0, int, "subscription")
        if subscription_id in call.realm.broker.subscriptions_by_id:
            return meta.subscription_get(call)

        def merge(answers):
            found = [details for details in answers.values() if details is not None]
            if not found:
                raise ProcedureError(errors.NO_SUCH_SUBSCRIPTION, f"no subscription {subscription_id} on any node")
            return min(found, key=lambda details: details["created"])  # the first node's
        return self._ask(call, "sub_get", [subscription_id], merge)

    def subscription_list_subscribers(self, call):
        return self._subscribers(call, lambda ids: ids)

    def subscription_count_subscribers(self, call):
        return self._subscribers(call, len)

    def _subscribers(self, call, shape):
        subscription_id = meta.arg(call.args, 0, int, "subscription")
        subscription = call.realm.broker.subscriptions_by_id.get(subscription_id)
        local = [s.session_id for s in subscription.subscribers] if subscription is not None else None

        def merge(answers):
            if local is None and all(ids is None for ids in answers.values()):
                raise ProcedureError(errors.NO_SUCH_SUBSCRIPTION, f"no subscription {subscription_id} on any node")
            return shape(_union(local or [], answers.values()))
        return self._ask(call, "subscribers", [subscription_id], merge)

async def _gather(nc, js, subject: str, question: list, expected: set, deadline: float) -> dict:
    """Publish ``question`` on ``subject`` with a reply subject of our own; the answers
    by node, once every ``expected`` node answered or after ``deadline`` seconds."""
    inbox = nc.new_inbox()
    answers: dict = {}
    everyone = asyncio.Event()

    async def heard(msg) -> None:
        try:
            version, node, result = msgpack.unpackb(msg.data, raw=False)[:3]
        except Exception:
            return  # not an answer of ours
        answers[node] = result
        if expected.issubset(answers):
            everyone.set()

    sub = await nc.subscribe(inbox, cb=heard)
    try:
        asker, realm, op, args = question
        await nc.publish(subject, msgpack.packb([WIRE_VERSION, asker, inbox, realm, op, args], use_bin_type=True))
        try:
            await asyncio.wait_for(everyone.wait(), deadline)
        except asyncio.TimeoutError:
            pass  # answered with what came back
    finally:
        await sub.unsubscribe()
    return dict(answers)


def _joined(lists) -> list:
    return [item for items in lists if items for item in items]


def _union(first: list, lists) -> list:
    seen = dict.fromkeys(first)
    for items in lists:
        for item in items or ():
            seen.setdefault(item)
    return list(seen)


_ANSWERS = {
    "ping": ClusterView._answer_ping,
    "sessions": ClusterView._answer_sessions,
    "session": ClusterView._answer_session,
    "kill": ClusterView._answer_kill,
    "kill_by": ClusterView._answer_kill_by,
    "sub_list": ClusterView._answer_sub_list,
    "sub_lookup": ClusterView._answer_sub_lookup,
    "sub_match": ClusterView._answer_sub_match,
    "sub_get": ClusterView._answer_sub_get,
    "subscribers": ClusterView._answer_subscribers,
}

_PROCEDURES = {
    "wamp.session.list": "session_list",
    "wamp.session.get": "session_get",
    "wamp.session.kill": "session_kill",
    "wamp.session.kill_by_authid": "session_kill_by_authid",
    "wamp.session.kill_by_authrole": "session_kill_by_authrole",
    "wamp.subscription.list": "subscription_list",
    "wamp.subscription.lookup": "subscription_lookup",
    "wamp.subscription.match": "subscription_match",
    "wamp.subscription.get": "subscription_get",
    "wamp.subscription.list_subscribers": "subscription_list_subscribers",
    "wamp.subscription.count_subscribers": "subscription_count_subscribers",
}

_TESTAMENT_PROCEDURES = {
    "wamp.session.add_testament": "add_testament",
    "wamp.session.flush_testaments": "flush_testaments",
}
