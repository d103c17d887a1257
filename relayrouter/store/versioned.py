"""The schema version of a small SQLite file in a state directory, in ``PRAGMA user_version``.

Version 1 is the schema these files have had since 0.1.0, which recorded no
version (0): such a file is the same schema and is marked 1 in place. A
later change of schema adds a step here and a higher version; a file marked
with a version newer than this relayrouter knows is refused, naming it,
rather than written in a form the newer release would not expect.
"""

import sqlite3

from ..core.records import StoreError


def upgrade(db: sqlite3.Connection, path, current: int) -> None:
    """Bring ``db`` (the file at ``path``) to schema version ``current``, recording it."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > current:
        raise StoreError(f"{path}: schema version {found} is newer than this relayrouter knows ({current}): "
                         "run a newer relayrouter")
    if found < current:
        db.execute(f"PRAGMA user_version = {int(current)}")
        if db.in_transaction:
            db.commit()
