"""What the router says about a realm to a peer of its own (the meta API, a
retained-event subscription), for core tests to assert on instead of reading
the realm's tables.  Each helper joins a fresh peer and leaves again."""

from autobahn.wamp import message as m

from relayrouter.testing import join


def _asking(router, realm: str):
    return join(router, realm)


def ask(router, procedure: str, *args, realm: str = "realm1"):
    """The result of calling ``procedure`` (a meta procedure) as a new anonymous peer."""
    peer = _asking(router, realm)
    try:
        return _result(peer, procedure, list(args))
    finally:
        peer.session.transport_lost()


def _result(peer, procedure, args):
    peer.receive([48, 1, {}, procedure, args])
    [reply] = peer.take()
    assert isinstance(reply, m.Result), reply.marshal()
    return reply.args[0] if reply.args else None


def session_ids(router, realm: str = "realm1") -> list:
    """The sessions of the realm, but the asker."""
    peer = _asking(router, realm)
    try:
        return sorted(set(_result(peer, "wamp.session.list", [])) - {peer.session.session_id})
    finally:
        peer.session.transport_lost()


def subscriptions(router, realm: str = "realm1") -> list:
    """[(match, uri)] of the realm's subscriptions."""
    peer = _asking(router, realm)
    try:
        listed = _result(peer, "wamp.subscription.list", [])
        found = [_result(peer, "wamp.subscription.get", [sid]) for ids in listed.values() for sid in ids]
        return sorted((d["match"], d["uri"]) for d in found)
    finally:
        peer.session.transport_lost()


def registrations(router, realm: str = "realm1") -> list:
    """[(match, uri)] of the realm's registrations."""
    peer = _asking(router, realm)
    try:
        listed = _result(peer, "wamp.registration.list", [])
        found = [_result(peer, "wamp.registration.get", [rid]) for ids in listed.values() for rid in ids]
        return sorted((d["match"], d["uri"]) for d in found)
    finally:
        peer.session.transport_lost()


def retained(router, prefix: str = "com.", realm: str = "realm1", peer=None) -> dict:
    """{topic: args} of the events retained under ``prefix``, as a new subscriber
    (or ``peer``, with a subscription of its own for the purpose) gets them."""
    asking = peer or _asking(router, realm)
    try:
        asking.receive([32, 999, {"match": "prefix", "get_retained": True}, prefix])
        subscribed, *events = asking.take()
        assert isinstance(subscribed, m.Subscribed), subscribed.marshal()
        if peer is not None:
            asking.receive([34, 999, subscribed.subscription])
            asking.take()
        return {event.topic: event.args for event in events}
    finally:
        if peer is None:
            asking.session.transport_lost()
