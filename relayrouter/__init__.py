"""relayrouter: a WAMP v2 router on Twisted and Autobahn."""

__version__ = "0.2.0.dev0"
