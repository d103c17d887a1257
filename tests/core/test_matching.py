import random

import pytest

from relayrouter.core.matching import EXACT, PREFIX, WILDCARD, UriIndex


class Entry:
    def __init__(self, uri, match):
        self.uri = uri
        self.match = match

    def __repr__(self):
        return f"{self.match}:{self.uri}"


def build(*specs):
    index = UriIndex()
    entries = {}
    for uri, match in specs:
        entries[(uri, match)] = entry = Entry(uri, match)
        index.add(uri, match, entry)
    return index, entries


def names(entries):
    return sorted(f"{e.match}:{e.uri}" for e in entries)


def test_exact_prefix_and_wildcard_all_match():
    index, _ = build(("a.b.c", EXACT), ("a.b", PREFIX), ("a.", PREFIX), ("a..c", WILDCARD),
                     (".b.", WILDCARD), ("a.b.d", EXACT), ("x", PREFIX), ("a..", WILDCARD),
                     ("a.b", WILDCARD))
    assert names(index.match("a.b.c")) == [
        "exact:a.b.c", "prefix:a.", "prefix:a.b", "wildcard:.b.", "wildcard:a..", "wildcard:a..c"]
    assert names(index.match("a.bc")) == ["prefix:a.", "prefix:a.b"]  # prefix is a string prefix
    assert names(index.match("q")) == []


def test_best_follows_spec_precedence():
    index, _ = build(("a.b.c", EXACT), ("a.", PREFIX), ("a.b.", PREFIX), ("a..c", WILDCARD),
                     ("..c", WILDCARD), (".b.c", WILDCARD))
    assert index.best("a.b.c").match == EXACT
    assert index.best("a.b.x").uri == "a.b."  # longest prefix
    index.remove("a.", PREFIX)
    index.remove("a.b.", PREFIX)
    # among wildcards, concrete components further left win
    assert index.best("a.z.c").uri == "a..c"
    assert index.best("z.b.c").uri == ".b.c"
    assert index.best("z.z.c").uri == "..c"
    assert index.best("z.z.z") is None


def test_get_by_key_and_len():
    index, entries = build(("a.b", EXACT), ("a.b", PREFIX), ("a.b", WILDCARD), ("a..b", WILDCARD))
    for (uri, match), entry in entries.items():
        assert index.get(uri, match) is entry
    assert index.get("a", PREFIX) is None
    assert index.get("a.", WILDCARD) is None
    assert len(index) == 4


@pytest.mark.parametrize("seed", range(5))
def test_add_and_remove_in_any_order_agrees_with_brute_force(seed):
    rng = random.Random(seed)
    parts = ["a", "b", "c", ""]
    specs = set()
    for _ in range(60):
        match = rng.choice([EXACT, PREFIX, WILDCARD])
        n = rng.randint(1, 3)
        comps = [rng.choice(parts[:3] if match == EXACT else parts) for _ in range(n)]
        uri = ".".join(comps)
        if match == EXACT and "" in comps or not uri.strip("."):
            continue
        specs.add((uri, match))
    specs = sorted(specs)
    index = UriIndex()
    live = {}
    order = specs[:]
    rng.shuffle(order)
    for spec in order:
        live[spec] = Entry(*spec)
        index.add(spec[0], spec[1], live[spec])
    removal = specs[:]
    rng.shuffle(removal)
    for step, spec in enumerate(removal):
        if step % 2:
            index.remove(*spec)
            del live[spec]
        for uri in ["a", "a.b", "a.b.c", "b.c", "c.c.c", "a.c"]:
            expected = [e for (u, m), e in live.items() if _brute(u, m, uri)]
            assert names(index.match(uri)) == names(expected)
    for spec in list(live):
        index.remove(*spec)
    assert len(index) == 0
    assert index.match("a.b") == []
    assert list(index.entries()) == []


def _brute(pattern, match, uri):
    if match == EXACT:
        return pattern == uri
    if match == PREFIX:
        return uri.startswith(pattern)
    p, u = pattern.split("."), uri.split(".")
    return len(p) == len(u) and all(a == "" or a == b for a, b in zip(p, u))


def test_many_prefixes_stay_cheap():
    index = UriIndex()
    for i in range(20_000):
        index.add(f"com.app.device{i}.", PREFIX, Entry(f"com.app.device{i}.", PREFIX))
    # Lookups slice the URI once per distinct prefix length, not once per prefix.
    assert len(index._lengths_sorted) < 10
    assert [e.uri for e in index.match("com.app.device123.temp")] == ["com.app.device123."]
