"""The sans-IO heart of the router.

Realms, broker, dealer, URI matching and the session state machine operate on
Autobahn's WAMP message objects and talk to peers through the tiny
:class:`relayrouter.core.peer.Peer` interface.  Nothing here imports Twisted,
touches a socket or reads a clock: time, when needed, is passed in.
"""
