"""Tenants in the core: create, delete, list with a sequence number, events."""

import pytest
from autobahn.wamp import message as m

from relayrouter.core.procedures import AdminPolicy, ProcedureError
from relayrouter.core.tenancy import LIST, TOPIC, MemoryTenantStore, Tenancy
from relayrouter.testing import join, make_router


class Builder:
    def __init__(self, router):
        self.router, self.built, self.unbuilt = router, [], []

    def build(self, name, template):
        self.built.append((name, template))
        return self.router.add_realm(name)

    def unbuild(self, realm):
        self.unbuilt.append(realm.name)


def setup(store=None):
    router = make_router("mgmt")
    builder = Builder(router)
    tenancy = Tenancy(router, {"tenant": "T", "other": "O"}, store or MemoryTenantStore(), builder,
                      AdminPolicy(frozenset({"anonymous"})), "tenant", ("mgmt",))
    tenancy.add_procedures(router.realms["mgmt"].procedures)
    return router, builder, tenancy


def test_create_list_delete_with_events_in_sequence():
    router, builder, tenancy = setup()
    watcher = join(router, "mgmt")
    watcher.receive([32, 1, {}, TOPIC])
    watcher.take()
    assert tenancy.create("acme") == {"tenant": "acme", "template": "tenant", "seq": 1}
    assert tenancy.create("globex", "other")["seq"] == 2
    assert builder.built == [("acme", "T"), ("globex", "O")]
    assert [e.args[0] for e in watcher.take()] == [
        {"type": "CREATE", "tenant": "acme", "seq": 1}, {"type": "CREATE", "tenant": "globex", "seq": 2}]
    listed = tenancy.list()
    assert listed["tenants"] == ["acme", "globex"] and listed["seq"] == 2
    assert tenancy.delete("acme")["seq"] == 3
    assert "acme" not in router.realms and builder.unbuilt == ["acme"]
    assert [e.args[0] for e in watcher.take()] == [{"type": "DELETE", "tenant": "acme", "seq": 3}]
    assert tenancy.list()["tenants"] == ["globex"]


def test_delete_ends_sessions_with_goodbye_and_reason():
    router, _, tenancy = setup()
    tenancy.create("acme")
    a, b = join(router, "acme"), join(router, "acme")
    bystander = join(router, "mgmt")
    result = tenancy.delete("acme", "contract ended")
    assert result["sessions_closed"] == 2
    for peer in (a, b):
        [goodbye] = peer.take()
        assert isinstance(goodbye, m.Goodbye) and goodbye.reason == "wamp.close.close_realm"
        assert goodbye.message == "realm 'acme' was deleted: contract ended"
    assert bystander.take() == []
    from relayrouter.testing import connect
    peer = connect(router)
    peer.receive([1, "acme", {"roles": {"subscriber": {}}}])
    [abort] = peer.take()
    assert isinstance(abort, m.Abort) and abort.reason == "wamp.error.no_such_realm"


@pytest.mark.parametrize("call, uri, words", [
    (lambda t: t.create("Bad Name"), "wamp.error.invalid_argument", "must be 1-64 of a-z"),
    (lambda t: t.create("x", "nope"), "relayrouter.error.no_such_template", "no realm template 'nope'"),
    (lambda t: t.create("mgmt"), "relayrouter.error.realm_exists", "exists already"),
    (lambda t: t.delete("nobody"), "wamp.error.no_such_realm", "no tenant named 'nobody'"),
    (lambda t: t.delete("mgmt"), "wamp.error.no_such_realm", "no tenant named 'mgmt'"),
])
def test_refusals(call, uri, words):
    router, _, tenancy = setup()
    with pytest.raises(ProcedureError) as caught:
        call(tenancy)
    assert caught.value.uri == uri and words in caught.value.message
    assert tenancy.seq == 0


def test_restore_from_store_keeps_sequence():
    store = MemoryTenantStore()
    _, _, first = setup(store)
    first.create("acme")
    first.create("globex")
    first.delete("acme")
    router, builder, again = setup(store)
    again.restore()
    assert again.list()["tenants"] == ["globex"] and again.seq == 3
    assert "globex" in router.realms
    assert again.create("initech")["seq"] == 4


def test_restore_refuses_a_missing_template():
    store = MemoryTenantStore()
    store.put("acme", "gone", 1.0, 1)
    _, _, tenancy = setup(store)
    with pytest.raises(ValueError, match="template 'gone'"):
        tenancy.restore()


def test_store_failure_changes_nothing():
    class Broken(MemoryTenantStore):
        def put(self, *a):
            raise OSError("disk full")
    router, builder, tenancy = setup(Broken())
    with pytest.raises(ProcedureError) as caught:
        tenancy.create("acme")
    assert caught.value.uri == "relayrouter.error.store_failed"
    assert "acme" not in router.realms and tenancy.seq == 0 and not builder.built


def test_procedures_are_admin_only():
    router = make_router("mgmt")
    tenancy = Tenancy(router, {"t": "T"}, MemoryTenantStore(), Builder(router), AdminPolicy(frozenset({"admin"})),
                      "t", ("mgmt",))
    tenancy.add_procedures(router.realms["mgmt"].procedures)
    peer = join(router, "mgmt")
    peer.receive([48, 1, {}, "relayrouter.realm.create", ["acme"]])
    [error] = peer.take()
    assert isinstance(error, m.Error) and error.error == "wamp.error.not_authorized"
    assert "may not administer tenants" in error.args[0]
    peer.receive([48, 2, {}, LIST])  # the list is for components too: the realm's rules decide
    [listed] = peer.take()
    assert isinstance(listed, m.Result) and listed.args[0]["tenants"] == []


def test_procedures_over_wamp():
    router, _, tenancy = setup()
    peer = join(router, "mgmt")
    peer.receive([48, 1, {}, "relayrouter.realm.create", ["acme"]])
    peer.receive([48, 2, {}, "relayrouter.realm.list"])
    peer.receive([48, 3, {}, "relayrouter.realm.delete", [], {"name": "acme", "reason": "done"}])
    created, listed, deleted = peer.take()
    assert created.args == [{"tenant": "acme", "template": "tenant", "seq": 1}]
    assert listed.args[0]["tenants"] == ["acme"] and listed.args[0]["seq"] == 1
    assert deleted.args[0] == {"tenant": "acme", "seq": 2, "sessions_closed": 0}


def test_listeners_hear_each_change_and_a_check_refuses_changes_with_its_reason():
    router, builder, tenancy = setup()
    heard = []
    tenancy.listeners.append(lambda kind, name, template: heard.append((kind, name, template)))
    tenancy.create("acme")
    tenancy.delete("acme")
    assert heard == [("CREATE", "acme", "tenant"), ("DELETE", "acme", None)]
    tenancy.create("globex")
    tenancy.check = lambda: "not in sync with the cluster"
    for change in (lambda: tenancy.create("initech"), lambda: tenancy.delete("globex")):
        with pytest.raises(ProcedureError) as refused:
            change()
        assert (refused.value.uri, refused.value.message) == ("wamp.error.unavailable", "not in sync with the cluster")
    assert list(tenancy.tenants) == ["globex"] and "initech" not in router.realms
    assert heard[-1] == ("CREATE", "globex", "tenant")
