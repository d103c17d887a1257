"""The client kit: how a program other than the router reaches it.

Shared by the connectors and by the ``relayrouter`` command (``host``,
``tunnel``, ``file``):

* :class:`RouterConnection` / :class:`RouterSettings` (``router.py``): one
  session to the router, kept up forever with jittered backoff; a refused
  credential logged once and retried slowly.
* :class:`Backoff` (``backoff.py``): jittered exponential backoff as a value.
* :class:`Credentials`, :class:`TlsClient`, :func:`check_private_file`,
  :func:`read_secret_file`, :func:`load_cryptosign_key` (``credentials.py``):
  how a client proves who it is and checks the router; key files others can
  read are refused.
* :class:`ConfigError` (``errors.py``): bad configuration, naming the option.
"""

from .backoff import Backoff
from .credentials import Credentials, TlsClient, check_private_file, load_cryptosign_key, read_secret_file
from .errors import ConfigError
from .router import RouterConnection, RouterSettings

__all__ = [
    "Backoff", "ConfigError", "Credentials", "RouterConnection", "RouterSettings", "TlsClient",
    "check_private_file", "load_cryptosign_key", "read_secret_file",
]
