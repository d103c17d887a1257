"""The guard at join, where a broken line went unnoticed: an authid on the deny
list is refused whatever its credential says, a credential expiring this very
second is expired, and each refusal of a denied credential is counted."""

from autobahn.wamp import message as m

from tests.core.test_revocation import join, world  # noqa: F401 (the fixture)


def test_a_denied_authid_cannot_join_again(world):  # noqa: F811
    clock, router, guard, realm = world
    guard.revoke("authid", "dev-9", clock.now + 60)
    [abort] = join(realm, router, authid="dev-9", sub="someone-else").take()
    assert isinstance(abort, m.Abort) and abort.reason == "wamp.error.not_authorized"
    assert abort.message == "this credential has been revoked"
    [welcome] = join(realm, router, authid="dev-10").take()
    assert isinstance(welcome, m.Welcome)


def test_a_credential_expiring_now_is_expired(world):  # noqa: F811
    clock, router, guard, realm = world
    [abort] = join(realm, router, expires_at=clock.now).take()
    assert isinstance(abort, m.Abort) and abort.reason == "wamp.error.authentication_failed"
    assert abort.message == "the credential has expired"


def test_every_refused_denied_credential_is_counted(world):  # noqa: F811
    clock, router, guard, realm = world
    guard.revoke("bid", "booking-1", clock.now + 60)
    for _ in range(2):
        [abort] = join(realm, router, bid="booking-1").take()
        assert isinstance(abort, m.Abort)
    assert guard.counters["refused_denied"] == 2
