"""What the router persists, behind narrow interfaces: an in-memory version
for tests and SQLite (stdlib ``sqlite3``) as the embedded default.

Stores are read once at start and written on administrative changes only;
nothing here runs on the publish/call path.
"""
