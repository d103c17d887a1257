"""Helpers for driving authenticators through the core session."""

from autobahn.wamp import message as m

from relayrouter.core.auth import JoinRequest
from relayrouter.core.peer import TransportInfo
from relayrouter.testing import ALL_ROLES, connect, make_router


def request(authid=None, authextra=None, transport=None, realm="realm1", authmethods=("x",)):
    return JoinRequest(realm=realm, authmethods=tuple(authmethods), authid=authid, authrole=None,
                       authextra=authextra or {}, transport=transport or TransportInfo())


class Wire:
    """A router with one realm whose authenticators are given, and a peer on it."""

    def __init__(self, authenticators: dict, transport: TransportInfo | None = None, realms=("realm1",)):
        self.router = make_router(*realms)
        self.router.realms["realm1"].authenticators = authenticators
        self.peer = connect(self.router, transport)

    def hello(self, authmethods, authid=None, authextra=None, realm="realm1") -> m.Message:
        details = {"roles": ALL_ROLES, "authmethods": list(authmethods)}
        if authid is not None:
            details["authid"] = authid
        if authextra is not None:
            details["authextra"] = authextra
        self.peer.receive([1, realm, details])
        return self.peer.sent[-1] if self.peer.sent else None

    def authenticate(self, signature: str, extra=None) -> m.Message:
        self.peer.receive([5, signature, extra or {}])
        return self.peer.last()


def assert_welcome(msg, authid, authrole, authmethod):
    assert isinstance(msg, m.Welcome), msg
    assert (msg.authid, msg.authrole, msg.authmethod) == (authid, authrole, authmethod)


def assert_abort(msg, text_part):
    assert isinstance(msg, m.Abort), msg
    assert msg.reason == "wamp.error.authentication_failed"
    assert text_part in msg.message, msg.message
