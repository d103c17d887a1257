from relayrouter.core.revocation import DenyEntry, DenyList
from relayrouter.store.denylist import MemoryDenyListStore, SqliteDenyListStore
from relayrouter.testing import FakeClock


def test_sqlite_store_survives_reopening_and_creates_its_directory(tmp_path):
    state = tmp_path / "deep" / "state"
    store = SqliteDenyListStore.in_state_dir(state)
    assert not state.exists()  # nothing touches the disk before open()
    store.open()
    store.put(DenyEntry("bid", "b-1", 2000.0, "refund"))
    store.put(DenyEntry("jti", "t-1", 500.0))
    store.put(DenyEntry("bid", "b-1", 3000.0, "again"))  # replaces
    store.close()
    reopened = SqliteDenyListStore.in_state_dir(state)
    reopened.open()
    assert reopened.load(1000.0) == [DenyEntry("bid", "b-1", 3000.0, "again")]
    reopened.delete("bid", "b-1")
    assert reopened.load(1000.0) == []
    reopened.close()


def test_deny_list_loads_and_writes_through():
    store = MemoryDenyListStore([DenyEntry("bid", "old", 900.0), DenyEntry("bid", "live", 2000.0)])
    denylist = DenyList(store, ("bid",), FakeClock(1000.0))
    denylist.load()
    assert [e.value for e in denylist.entries()] == ["live"]
    denylist.add("authid", "dev-1", 1500.0)
    assert ("authid", "dev-1") in store.entries_by_key
    assert denylist.match("dev-1", None).claim == "authid"
    assert denylist.match("x", {"bid": ["a", "live"]}).value == "live"
    assert denylist.remove("authid", "dev-1") and ("authid", "dev-1") not in store.entries_by_key
