"""relayrouter: a WAMP v2 router on Twisted and Autobahn."""

__version__ = "0.1.0"
