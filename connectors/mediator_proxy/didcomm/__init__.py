"""The DIDComm mode of the mediator proxy (``twistd mediator-proxy didcomm``).

A drop-in for Indicio's proxy-mediator: the proxy connects to an external
DIDComm mediator from its invitation, offers its own invitation to the
agent, grants the agent's mediation with the mediator's endpoint and routing
keys, and retrieves what waits at the mediator over a WebSocket, posting each
forwarded message to the agent -- spooled on disk first, retried with
backoff, acknowledged to nobody until the agent took it.

* :mod:`.envelope`: DIDComm v1 pack and unpack (aries-askar), keys, did:key.
* :mod:`.messages`: the protocol messages we send and read, free of I/O.
* :mod:`.service`: the process: HTTP surface, set-up, the trust-ping socket, delivery.
* :mod:`.pickup`: Message Pickup 2.0 where the mediator offers it, else the trust-ping socket.
* :mod:`.seedstore`: the proxy-mediator's Askar store, read once (``ENABLE_STORE``).
"""
