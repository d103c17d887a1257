"""decrypt-search: the on-premises connector that holds an organisation's keys.

It subscribes to end-to-end encrypted topics on the router, decrypts what is
addressed to its organisation, verifies the sender, validates each document
against its topic's JSON Schema and replicates it into a local store with
full-text search, filters, ordering and analytics; input it cannot use is
quarantined with the reason.  ``twistd decrypt-search --help`` lists its
options; README's "decrypt-search connector" section documents the
configuration file, the HTTP API and the WAMP procedures.

Modules: ``config`` (the TOML file), ``ingest`` (event -> record or
quarantine, no I/O), ``query`` (search and analytics requests, no I/O),
``store`` (SQLite FTS5 / PostgreSQL), ``hooks`` (user functions per record),
``http`` (the HTTP API), ``service`` (the running connector), ``tap``.
"""
