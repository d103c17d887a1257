"""Phrases answered from the word pairs, prefixes from the prefix indexes: the same results as the
full-text index alone (what version 2 answered), on generated stores.

The reference is the same store searched with the pairs left out (``pairs_match`` giving None:
every phrase read from ``records_fts``, as before), for every plan the planner may pick (``RARE``
and ``COMMON_FACTOR`` varied so that the same words take the ids, the set and the per-row plan).
The pairs are exact only where our split into words is FTS5's: that is checked against FTS5's own
tokens for every ASCII character.
"""

import random
import sqlite3
import string

import pytest

from connectors.decrypt_search import query
from connectors.decrypt_search import store as store_module
from connectors.decrypt_search.ingest import Record
from connectors.decrypt_search.store import sqlite_store

from .support import make_config, org_keys

CONFIG = make_config("acme", org_keys())
WORDS = ["red", "blue", "vase", "chair", "lamp", "Vase", "BLUE", "a1", "b2", "x", "blueish", "chairs", "va"]
SEPARATORS = [" ", "  ", ", ", "-", "_", "'", ".", "\n", "\t", "/", "(", ")", "!", "@", "#", "0"]
T0 = 1_700_000_000


def note(rng, foreign: bool) -> str:
    words = rng.choices(WORDS, weights=[12, 10, 8, 6, 4, 2, 2, 1, 1, 1, 2, 2, 1], k=rng.randint(0, 14))
    text = "".join(w + rng.choice(SEPARATORS) for w in words)
    return text + (" crème brûlée" if foreign else "")


def generated(n: int, seed: int, foreign: int = 0):
    """n records; every ``foreign``-th of them with words beyond ASCII (0: none)."""
    rng = random.Random(seed)
    for i in range(1, n + 1):
        doc = {"order": i, "amount": float(rng.randint(1, 50)), "status": rng.choice(["new", "paid", "shipped"]),
               "note": note(rng, bool(foreign) and i % foreign == 0)}
        fields = {"amount": doc["amount"], "status": doc["status"]}
        yield Record(i, f"com.orders.r{i % 10}", f"{i:032x}", "globex", "kid", T0 + i, T0 + i, doc, fields,
                     doc["note"])


SEARCHES = [
    {"q": '"blue vase"'}, {"q": '"red blue"'}, {"q": '"vase chair"', "order": "amount"},
    {"q": '"blue vase" "red blue"'}, {"q": '"lamp lamp"'}, {"q": '"a1 b2"'}, {"q": '"x red"', "status": "paid"},
    {"q": '"blue vase"', "status.in": "new,paid", "order": "-amount"}, {"q": '"chair red"', "amount.gte": "20"},
    {"q": '"nothing here"'}, {"q": '"red blue lamp"'}, {"q": '"blue va"*'}, {"q": '"blue vase" chair'},
    {"q": "bl*"}, {"q": "va*", "order": "amount"}, {"q": "v*"}, {"q": "chai*", "status": "new"}, {"q": "blueis*"},
    {"q": "red"}, {"q": "red vase*"},
]


def pages(store, conn, params: dict) -> list:
    """Every record id the search returns, page by page (five at a time)."""
    ids, cursor = [], None
    while True:
        page = store.search(conn, query.parse_search({**params, "limit": "5", **({"cursor": cursor} if cursor
                                                                                   else {})}, CONFIG))
        ids += [r["id"] for r in page["records"]]
        cursor = page["next_cursor"]
        if not cursor:
            return ids


@pytest.mark.parametrize("foreign", [0, 7], ids=["ascii", "some records beyond ascii"])
def test_pairs_and_prefix_indexes_answer_as_the_full_text_index(tmp_path, monkeypatch, foreign):
    store = sqlite_store(CONFIG, str(tmp_path / "records.sqlite3"))
    conn = store.connect()
    store.create_schema(conn)
    store.write(conn, list(generated(1500, seed=foreign, foreign=foreign)), {}, now=1.0)
    store.maintain(conn, force=True)
    found = {}
    for rare, factor in [(3000, 50), (20, 50), (20, 0.01)]:  # ids drive; the set; checked per row
        monkeypatch.setattr(store_module, "RARE", rare)
        monkeypatch.setattr(store_module, "COMMON_FACTOR", factor)
        for params in SEARCHES:
            with_pairs = pages(store, conn, params)
            with monkeypatch.context() as m:
                m.setattr(store_module, "pairs_match", lambda terms: None)
                assert with_pairs == pages(store, conn, params), (params, rare, factor)
            found[str(params)] = len(with_pairs)
    assert found[str({"q": '"blue vase"'})] > 100 and found[str({"q": '"nothing here"'})] == 0
    assert sum(1 for n in found.values() if n) >= len(SEARCHES) - 2  # the searches find something
    conn.close()


def test_the_pairs_take_the_phrase_only_while_every_record_is_ascii(tmp_path):
    store = sqlite_store(CONFIG, str(tmp_path / "records.sqlite3"))
    conn = store.connect()
    store.create_schema(conn)
    terms = query.parse_q('"blue vase"')
    store.write(conn, list(generated(50, seed=1)), {}, now=1.0)
    assert store.dialect._text_index(terms, conn.cursor()) == ("records_pairs", '"blue_vase"')
    store.write(conn, list(generated(51, seed=1, foreign=51))[50:], {}, now=1.0)  # one record beyond ASCII
    assert store.dialect._text_index(terms, conn.cursor()) == ("records_fts", '"blue vase"')
    assert store.dialect._text_index(query.parse_q('"blue vase" red'), conn.cursor())[0] == "records_fts"
    conn.close()


def fts5_pairs(conn, text: str) -> str:
    """The adjacent token pairs of ``text`` as FTS5's tokenizer of records_fts splits it."""
    conn.execute("DELETE FROM t")
    conn.execute("INSERT INTO t (rowid, body) VALUES (1, ?)", (text,))
    tokens = [row[0] for row in conn.execute("SELECT term FROM v ORDER BY offset")]
    return " ".join(f"{a}_{b}" for a, b in zip(tokens, tokens[1:]))


def test_our_split_of_ascii_text_is_fts5s():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='unicode61 remove_diacritics 2')")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    rng = random.Random(3)
    texts = [f"ab{chr(c)}cd{chr(c)}{chr(c)}Ef" for c in range(128)]  # every ASCII character between words
    texts += ["".join(rng.choices(string.printable + "\x00\x01\x7f", k=80)) for _ in range(300)]
    for text in texts:
        assert query.word_pairs(text) == fts5_pairs(conn, text), repr(text)
    assert query.word_pairs("Blue  VASE, blue vase") == "blue_vase vase_blue blue_vase"
    assert query.word_pairs("crème brûlée") == query.UNSURE
    conn.close()


def test_pairs_match_is_only_for_phrases_of_two_ascii_words():
    def match(q):
        return query.pairs_match(query.parse_q(q))

    assert match('"Blue vase"') == '"blue_vase"'
    assert match('"blue vase" "red chair"') == '"blue_vase" AND "red_chair"'
    for q in ['"blue vase" red', '"red blue vase"', "blue", "bl*", '"crème brûlée"', '"a_b c"']:
        assert match(q) is None, q
