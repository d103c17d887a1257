"""relayrouter's benchmark suite (see README.md). Not part of the installed package."""
