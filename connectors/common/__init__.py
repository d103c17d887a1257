"""What every connector shares: the way out to the router, the state dir,
the local HTTP helpers and the common options.

* :class:`RouterConnection` / :class:`RouterSettings`, :class:`Backoff`,
  :class:`Credentials`, :class:`TlsClient`, :class:`ConfigError`: the client
  kit, which lives on the library side (:mod:`relayrouter.client`, shared
  with the ``relayrouter`` command) and is re-exported here.
* :class:`StateStore` / :class:`Spool` (``state.py``): ``--state-dir``, 0700,
  SQLite key/value and durable FIFO spools written off the reactor thread.
* :class:`JsonResource`, :class:`StatusResource`, :func:`json_error`,
  :class:`HttpError`, :class:`HttpService`, :class:`TokenGuard` (``http.py``);
  :func:`load_api_token` (``api_token.py``): the local API's bearer token.
* :class:`ConnectorOptions` (``options.py``): the shared twistd options, each
  with an environment variable.
"""

from relayrouter.api import Backoff, ConfigError, Credentials, RouterConnection, RouterSettings, TlsClient

from .api_token import ApiToken, load_api_token
from .http import (HttpError, HttpService, JsonResource, JsonRoot, StatusResource, TokenGuard, json_error,
                   json_response, read_body)
from .options import ConnectorOptions
from .state import Spool, SpoolItem, StateStore, open_state_dir

__all__ = [
    "ApiToken", "Backoff", "ConfigError", "ConnectorOptions", "Credentials", "HttpError", "HttpService", "JsonResource",
    "JsonRoot", "RouterConnection", "RouterSettings", "Spool", "SpoolItem", "StateStore", "StatusResource",
    "TlsClient", "TokenGuard", "json_error", "load_api_token", "json_response", "open_state_dir", "read_body",
]
