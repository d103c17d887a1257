"""The configuration: plain data, read and checked at start, one module per part.

* :mod:`.router`: the router's file (listeners, realms, limits, state) and
  command-line options on top; its names (``parse``, ``load``, ``Config``,
  ``ConfigError``, ...) are also this package's: ``relayrouter.config.parse``;
* a module per section it reads: :mod:`.auth` (``[http]``, ``[revocation]``,
  ``[auth_limits]``, a realm's ``auth`` and ``roles``), :mod:`.durable`
  (``[storage]``, history and mailboxes), :mod:`.tenants`, :mod:`.pairs`,
  :mod:`.cluster`, :mod:`.bridge` (``[http_bridge]``), :mod:`.ops`
  (``[metrics]``, ``[console]``); the relay's section is read by
  ``relayrouter.relay.config``;
* :mod:`.limits`: the listeners' and outbound queues' records the transport
  takes (plain data, so the transport imports configuration, never the
  reverse);
* :mod:`.check`: the checks every reader shares (errors naming the key, the
  notes the configuration reference is made of).

Importing one part loads only what it needs: the router's file is read in
when one of its names is first used (the transport imports :mod:`.limits`
without the readers of every section).  Nothing here imports Twisted or the
transport (tests/test_import_rules.py, tests/test_config_is_plain_data.py).
"""


from ..lazy import lazy_package

__getattr__, __dir__ = lazy_package(__name__, frozenset({"router", "auth", "durable", "tenants", "pairs", "cluster", "bridge", "ops", "limits", "check"}), "router")
