"""Roles, rules and claim-derived permissions, through the core with in-memory peers."""

from types import MappingProxyType

from autobahn.wamp import message as m

from relayrouter.core.auth import Accept
from relayrouter.core.authorization import RoleAuthorizer, Role, Rule
from relayrouter.testing import ALL_ROLES, connect, make_router
from tests.refusals import assert_refused


class _Fixed:
    authmethod = "x"

    def __init__(self, accept):
        self.accept = accept

    def hello(self, request):
        return self.accept


def joined(router, authrole="device", authid="dev-1", claims=None):
    realm = router.realms["realm1"]
    realm.authenticators = {"x": _Fixed(Accept(authid, authrole, "x", permissions=MappingProxyType(claims or {})))}
    peer = connect(router)
    peer.receive([1, "realm1", {"roles": ALL_ROLES, "authmethods": ["x"]}])
    assert isinstance(peer.take()[-1], m.Welcome)
    return peer


def router_with(*roles):
    router = make_router()
    router.realms["realm1"].authorizer = RoleAuthorizer(list(roles))
    return router


def refused(peer, raw):
    peer.receive(raw)
    reply = peer.take()[-1]
    return isinstance(reply, m.Error) and reply.error == "wamp.error.not_authorized", reply


def test_default_deny_names_action_and_uri():
    peer = joined(router_with(Role("other", (Rule("com.x", allow={"publish"}),))))
    ok, reply = refused(peer, [32, 1, {}, "com.x"])
    assert ok
    assert "subscribe" in reply.args[0] and "'com.x'" in reply.args[0] and "device" in reply.args[0]


def test_exact_prefix_and_wildcard_rules():
    role = Role("device", (
        Rule("com.app.", "prefix", {"subscribe", "call"}),
        Rule("com.app.admin", "exact", set()),  # a more specific rule takes back
        Rule("com..status", "wildcard", {"publish"}),
    ))
    peer = joined(router_with(role))
    assert isinstance((peer.receive([32, 1, {}, "com.app.news"]), peer.take()[-1])[1], m.Subscribed)
    assert refused(peer, [32, 2, {}, "com.app.admin"])[0]
    assert refused(peer, [32, 3, {}, "org.app.news"])[0]
    peer.receive([16, 4, {"acknowledge": True}, "com.dev7.status"])
    assert isinstance(peer.take()[-1], m.Published)
    assert refused(peer, [16, 5, {"acknowledge": True}, "com.dev7.other"])[0]


def test_prefix_subscription_cannot_reach_past_an_exact_grant():
    peer = joined(router_with(Role("device", (Rule("relay.session.lab42", allow={"subscribe"}),))))
    assert refused(peer, [32, 1, {"match": "prefix"}, "relay.session.lab42"])[0]
    assert refused(peer, [32, 2, {"match": "wildcard"}, "relay.session."])[0]
    peer.receive([32, 3, {}, "relay.session.lab42"])
    assert isinstance(peer.take()[-1], m.Subscribed)


def test_claim_derived_topic_and_scopes():
    rule = Rule("relay.session.{topic}", allow=set(), scopes={"read": {"subscribe"}, "write": {"publish"}})
    router = router_with(Role("device", (rule,)))
    reader = joined(router, claims={"topic": "lab42", "scopes": ["read"]})
    reader.receive([32, 1, {}, "relay.session.lab42"])
    assert isinstance(reader.take()[-1], m.Subscribed)
    assert refused(reader, [32, 2, {}, "relay.session.lab43"])[0]
    assert refused(reader, [16, 3, {"acknowledge": True}, "relay.session.lab42"])[0]
    writer = joined(router, authid="dev-2", claims={"topic": "lab42", "scopes": "read write"})
    writer.receive([16, 4, {"acknowledge": True}, "relay.session.lab42"])
    assert isinstance(writer.take()[-1], m.Published)


def test_claim_values_that_are_not_one_component_grant_nothing():
    rule = Rule("relay.session.{topic}", "prefix", {"subscribe"})
    router = router_with(Role("device", (rule,)))
    for topic in ("", "a.b", "x#", None):
        peer = joined(router, claims={"topic": topic} if topic is not None else {})
        assert refused(peer, [32, 1, {}, "relay.session.a.b"])[0]


def test_register_and_call_rules():
    role = Role("svc", (Rule("com.svc.", "prefix", {"register", "call"}),))
    router = router_with(role)
    callee = joined(router, authrole="svc", authid="svc-1")
    callee.receive([64, 1, {}, "com.svc.add"])
    assert isinstance(callee.take()[-1], m.Registered)
    assert refused(callee, [64, 2, {}, "com.other.add"])[0]
    caller = joined(router, authrole="device")
    assert refused(caller, [48, 3, {}, "com.svc.add"])[0]


def test_decisions_are_cached_per_session_and_bounded():
    authorizer = RoleAuthorizer([Role("device", (Rule("a.", "prefix", {"publish"}),))], cache_limit=4)
    router = make_router()
    router.realms["realm1"].authorizer = authorizer
    peer = joined(router)
    session = peer.session
    for i in range(10):
        assert authorizer.authorize(session, "publish", f"a.{i}") is None
    grants = authorizer.grants_by_session[session]
    assert len(grants.decisions) <= 4
    peer.receive([6, {}, "wamp.close.normal"])
    assert session not in authorizer.grants_by_session


def test_disclosure_per_rule():
    role = Role("device", (Rule("com.x", allow={"publish", "subscribe"}, disclose_publisher=True),
                           Rule("com.y", allow={"publish", "subscribe"})))
    router = router_with(role)
    sub = joined(router, authid="s")
    pub = joined(router, authid="p")
    sub.receive([32, 1, {}, "com.x"])
    sub.receive([32, 2, {}, "com.y"])
    sub.take()
    pub.receive([16, 3, {"disclose_me": True}, "com.x"])
    pub.receive([16, 4, {"disclose_me": True, "acknowledge": True}, "com.y"])
    [x] = sub.take()
    assert x.publisher_authid == "p"
    # Disclosure not granted on com.y: the publication is refused, not sent anonymously.
    assert_refused(pub.last(), "wamp.error.option_disallowed.disclose_me",
                   "this realm does not let publishers disclose their identity")
