"""decrypt-search's store written by the previous release's code opens with this one, everything kept and usable.

fixtures/make_store_v1.py runs with the previous release's tree (tests/previous_release.py) first on the
path: 0.1.0's own store, ingest and envelope code write its six orders, a quarantined envelope and the
subscription cursor. This release's store then migrates it in place (schema 1 -> 2 -> 3), and every record,
the quarantine entry and the cursor are there; searches, a record by id and analytics answer from it,
and a new record is written beside the old ones.
"""

import json
import subprocess
import sys
from pathlib import Path

from connectors.decrypt_search import query
from connectors.decrypt_search.ingest import Ingestor
from connectors.decrypt_search.store import SCHEMA_VERSION, sqlite_store
from relayrouter import e2e

from ...previous_release import previous_tree  # noqa: F401 (a fixture)
from .test_migration import orders, version
from .test_store import CONFIG, KEYS

SCRIPT = Path(__file__).parent / "fixtures" / "make_store_v1.py"


def test_a_store_the_previous_release_wrote_is_migrated_and_kept(tmp_path, previous_tree):
    path = tmp_path / "records.sqlite3"
    written = subprocess.run([sys.executable, str(SCRIPT), str(path)], cwd=previous_tree, capture_output=True,
                             text=True, timeout=120, env={"PYTHONPATH": str(previous_tree), "PATH": "/usr/bin:/bin"})
    assert written.returncode == 0, written.stderr
    assert json.loads(written.stdout) == {"version": "0.1.0", "stored": 6, "quarantined": ["bad_signature"]}

    store = sqlite_store(CONFIG, str(path))
    conn = store.connect()
    steps = store.create_schema(conn)
    assert [step[:13] for step in steps] == ["schema 1 -> 2", "schema 2 -> 3", "schema 3 -> 4"], steps
    assert version(conn) == str(SCHEMA_VERSION)
    reader = store.connect(reader=True)
    assert store.counts(reader) == {"records": 6, "quarantine": {"bad_signature": 1}}
    assert store.cursors(reader) == {"prefix:com.orders.": 107}
    assert orders(store, reader, order="placed") == [1, 2, 3, 4, 6, 5]
    assert orders(store, reader, q="blue", **{"amount.gte": "10"}, order="-amount") == [5, 3, 6]
    first = store.search(reader, query.parse_search({"order": "placed"}, CONFIG))["records"][0]
    assert store.get(reader, first["id"])["document"]["note"] == "blue vase, fragile"
    (entry,) = store.quarantine(reader, "bad_signature", 10, None)["entries"]
    assert entry["publication"] == 107
    # Written to by this release: a new order beside the old ones.
    envelope = e2e.seal({"order": 8, "amount": 40.0, "status": "paid", "note": "blue lamp"}, "com.orders.eu",
                        KEYS["globex"], [KEYS["acme"].public])
    record = Ingestor(CONFIG, KEYS["acme"], clock=lambda: 2_000_100.0).process(108, "com.orders.eu", [envelope])
    assert len(store.write(conn, [record], {"prefix:com.orders.": 108}, now=2.0).stored) == 1
    assert orders(store, reader, q="blue", **{"amount.gte": "10"}, order="-amount") == [5, 8, 3, 6]
    assert store.cursors(reader) == {"prefix:com.orders.": 108}
    reader.close()
    conn.close()
