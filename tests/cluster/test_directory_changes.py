"""The registration directory's change functions, which decide every
compare-and-set: plain functions of the value read, checked directly."""

import pytest

from relayrouter.cluster import directory
from relayrouter.cluster.directory import UNCHANGED, Refused, Value, fixing, joining, without_node


def value(invoke="roundrobin", callees=(), reg_id=7):
    return Value("realm1", "com.x", "exact", reg_id, invoke, 1.0, callees)


def entry(node, session):
    return (node, session, "anon", "anonymous", directory.CANCELING)


def test_joining_creates_appends_and_refuses_as_wamp_says():
    template = value("roundrobin", reg_id=None)
    created, _ = joining(template, entry("a", 1))(None)
    assert created.callees == (entry("a", 1),) and 1 <= created.id <= 2 ** 53
    joined, _ = joining(template, entry("b", 2))(created)
    assert joined.callees == (entry("a", 1), entry("b", 2)) and joined.id == created.id
    with pytest.raises(Refused, match="already registered 'com.x'"):
        joining(template, entry("a", 1))(joined)
    with pytest.raises(Refused, match="invoke policy 'roundrobin', not 'first'"):
        joining(value("first", reg_id=None), entry("c", 3))(joined)
    single = value("single", [entry("b", 2)])
    with pytest.raises(Refused, match="already registered by another callee \\(on node b\\)"):
        joining(value("single", reg_id=None), entry("c", 3))(single)
    with pytest.raises(Refused, match="already registered by another callee"):
        joining(value("single", reg_id=None), entry("c", 3))(joined)


def test_fixing_keeps_other_nodes_and_registrations_on_the_way():
    current = value(callees=[entry("a", 1), entry("b", 2), entry("a", 3), entry("a", 4)])
    # Node a holds 1 and 5 now; 4 is a REGISTER the directory has not answered yet.
    new, rejected = fixing("a", value(), [entry("a", 1), entry("a", 5)], {4})(current)
    assert new.callees == (entry("a", 1), entry("b", 2), entry("a", 4), entry("a", 5)) and not rejected
    same, _ = fixing("a", value(), [entry("a", 1), entry("a", 4), entry("a", 5)], set())(new)
    assert same is UNCHANGED
    gone, _ = fixing("a", value(), [], set())(value(callees=[entry("a", 1)]))
    assert gone is None


def test_fixing_puts_back_what_the_directory_lost_unless_another_took_it():
    mine = value("single")
    back, rejected = fixing("a", mine, [entry("a", 1)], set())(None)
    assert back.callees == (entry("a", 1),) and back.id == mine.id and not rejected
    taken = value("single", [entry("b", 2)], reg_id=99)
    kept, rejected = fixing("a", mine, [entry("a", 1)], set())(taken)
    assert kept is UNCHANGED and rejected == {1}
    shared = value("roundrobin", [entry("b", 2)])
    joined, rejected = fixing("a", value("roundrobin"), [entry("a", 1)], set())(shared)
    assert joined.callees == (entry("b", 2), entry("a", 1)) and not rejected


def test_without_node_removes_a_gone_nodes_entries_once():
    current = value(callees=[entry("a", 1), entry("c", 2)])
    left, _ = without_node("c")(current)
    assert left.callees == (entry("a", 1),)
    assert without_node("c")(left)[0] is UNCHANGED  # a second survivor finds nothing to do
    assert without_node("a")(left)[0] is None


def test_keys_are_valid_kv_keys_and_long_names_are_hashed():
    key = directory.key("realm.one", "com.x", "prefix")
    assert key.count(".") == 2 and key.split(".")[1] == "p"
    assert all(c.isalnum() or c in "-_=." for c in key)
    assert directory.key("realm1", "", "prefix") != directory.key("realm1", "", "wildcard")
    long = directory.key("realm1", "com." + "x" * 1000, "exact")
    assert long.startswith("h") and len(long) == 65
    roundtrip = Value.decode(value(callees=[entry("a", 1)]).encode())
    assert (roundtrip.uri, roundtrip.id, roundtrip.callees) == ("com.x", 7, (entry("a", 1),))
