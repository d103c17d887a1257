"""The running node: the service and, one module a feature, the wiring of
that feature's core part, transport part and configuration.

* :mod:`.node`: :class:`RouterService` (listeners, logging, signals, shutdown)
  and what it puts together; its names are also this package's:
  ``from relayrouter.service import RouterService``;
* :mod:`.realms`: the realms of the file, and those tenants make;
* :mod:`.security`: authenticators, roles, the deny list, origins and trusted
  proxies, tickets;
* :mod:`.durable`: the store, event history and mailboxes;
* :mod:`.tenancy`: tenant realms made and removed at run time;
* :mod:`.pairing`: gateway/manager pairs and the Micronets endpoint;
* :mod:`.metrics`: ``/metrics``;
* :mod:`.reload`: what a SIGHUP (or ``relayrouter.config.reload``) applies live.

The cluster, the relay, the console and the HTTP bridge have packages of their
own (``relayrouter.cluster``, ``relay``, ``console``, ``transport.http_bridge``),
which :mod:`.node` wires in when configured.
"""

from ..lazy import lazy_package

__getattr__, __dir__ = lazy_package(__name__, frozenset({"node", "realms", "security", "durable", "tenancy", "pairing", "metrics", "reload"}), "node")
