"""The one error a connector raises for bad configuration.

It is the configuration readers' own :class:`~relayrouter.config.check.ConfigError`
(a ``ValueError`` whose message names the key or option), so a start-up that
catches one catches what either side raised.
"""

from ..config.check import ConfigError

__all__ = ["ConfigError"]
