import pytest
from autobahn.wamp import message as m

from relayrouter.auth.ticket import TicketAuthenticator, TicketPrincipal
from relayrouter.core.auth import Accept, Challenge, Deny

from .wire import Wire, assert_abort, assert_welcome, request

PRINCIPALS = {"alice": TicketPrincipal("s3cret-ticket", "user")}


def auth():
    return TicketAuthenticator(PRINCIPALS)


def test_right_ticket_is_accepted():
    a = auth()
    challenge = a.hello(request("alice"))
    assert challenge == Challenge("ticket", {}, state="alice")
    assert a.authenticate(request("alice"), challenge.state, "s3cret-ticket", {}) == \
        Accept("alice", "user", "ticket", authprovider="static")


def test_wrong_ticket_is_denied():
    decision = auth().authenticate(request("alice"), "alice", "guess", {})
    assert decision == Deny("wrong authid or ticket")


def test_unknown_authid_gets_the_same_denial_as_a_wrong_secret():
    wrong_secret = auth().authenticate(request("alice"), "alice", "guess", {})
    unknown = auth().authenticate(request("mallory"), "mallory", "s3cret-ticket", {})
    assert wrong_secret == unknown


def test_no_authid_is_denied_saying_one_is_needed():
    assert auth().hello(request(None)) == Deny("ticket authentication needs an authid in HELLO")


def test_an_empty_secret_is_refused_naming_the_role():
    with pytest.raises(ValueError) as refused:
        TicketPrincipal("", "operator")
    assert str(refused.value) == "empty ticket secret for role 'operator'"


def test_non_string_ticket_is_denied():
    assert isinstance(auth().authenticate(request("alice"), "alice", None, {}), Deny)


def test_secret_never_in_repr():
    assert "s3cret" not in repr(PRINCIPALS)


def test_through_the_session():
    wire = Wire({"ticket": auth()})
    challenge = wire.hello(["ticket"], authid="alice")
    assert isinstance(challenge, m.Challenge) and challenge.method == "ticket"
    assert_welcome(wire.authenticate("s3cret-ticket"), "alice", "user", "ticket")


def test_wrong_ticket_through_the_session_aborts():
    wire = Wire({"ticket": auth()})
    wire.hello(["ticket"], authid="alice")
    abort = wire.authenticate("nope")
    assert_abort(abort, "wrong authid or ticket")
    assert "nope" not in abort.message and wire.peer.closed
