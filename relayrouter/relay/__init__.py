"""The remote-lab relay: practable-compatible access to raw WebSocket streams
that share the router's topics with WAMP clients.

* ``config.py``   the ``[relay]`` table of the configuration file
* ``frames.py``   raw frame <-> WAMP event conversion (no I/O)
* ``raw.py``      the raw WebSocket endpoint and its bounded send queue
* ``access.py``   ``POST /{prefix}/{topic}``, ``/bids/*``, ``/status``
* ``stats.py``    traffic counters, reports, the ``relayrouter.stats`` topic
* ``hub.py``      the :class:`Relay` that ties them to a running router
"""
