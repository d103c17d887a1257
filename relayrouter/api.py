"""What a connector (ours or yours) may import from relayrouter: this module.

Stability: every name below, and the public names of the modules exported
whole (``e2e``, ``e2e_keys``, ``httpinput``, ``rest``, ``runfiles``,
``extras``, ``sqlite_schema``, ``configcheck``), keeps its meaning and signature across minor releases; a change
that breaks one is announced in CHANGELOG.md's upgrade notes one release
ahead.  Everything else under ``relayrouter`` (``core``, ``transport``,
``auth``, ``store``, ``cluster``...) may change in any release: import it
and you are on your own.  ``tests/test_import_rules.py`` keeps our own
connectors to this list.

The client kit (:mod:`relayrouter.client`): reach the router and stay there
  :class:`RouterConnection`, :class:`RouterSettings`, :class:`Backoff`,
  :class:`Credentials`, :class:`TlsClient`, :func:`check_private_file`,
  :func:`read_secret_file`, :func:`load_cryptosign_key`, :class:`ConfigError`.
Configuration: :mod:`configcheck` (``relayrouter.config.check``: the checks a TOML reader shares, and the
  notes that make the configuration reference from a connector's own checks).
Plugins: :mod:`runfiles` (pid and log files, the state directory's lock),
  :mod:`extras` (stop with one line when an extra is missing),
  :mod:`sqlite_schema` (a state file's schema version, recorded and checked).
HTTP: :mod:`httpinput` (bodies, headers and numbers read bounded, errors as
  :class:`httpinput.BadInput`), :class:`JsonMethodsRequest` and
  :func:`method_not_allowed` (405 with ``Allow`` and a JSON body);
  :mod:`openapi` (each resource's ``openapi`` path items, and ``GET
  /openapi.json``: the OpenAPI 3.1 document of the tree a site mounts).
Filters: :func:`compile_where`, :func:`compile_fields`, :func:`project`,
  :class:`FilterError` (the subscription filters' language).
End-to-end envelopes: :mod:`e2e` (seal, open, parse), :mod:`e2e_keys` (key
  files), :func:`publish_envelope`, :func:`enable_payload_passthru`.
REST over RPC: :mod:`rest` (requests and responses as WAMP values) and the
  pairs' URIs :func:`pair_prefix`, :func:`rest_procedure`,
  :func:`event_topic`, :func:`presence_topic`.
Token checking: :class:`JwtAuthenticator`, :class:`JwtPolicy`,
  :class:`JwtKey`, :class:`StaticKeys`, :class:`FetchedKeys`,
  :class:`CombinedKeys`, :func:`keys_from_jwks`, :func:`jwks_fetcher`, and
  the decisions :class:`Accept` / :class:`Deny`.
"""

from . import e2e, extras, httpinput, openapi, rest, runfiles
from .config import check as configcheck
from .store import versioned as sqlite_schema
from .auth.jwks import jwks_fetcher
from .auth.jwt import FetchedKeys, JwtAuthenticator, JwtKey, JwtPolicy, StaticKeys, keys_from_jwks
from .client import (Backoff, ConfigError, Credentials, RouterConnection, RouterSettings, TlsClient,
                     check_private_file, load_cryptosign_key, read_secret_file)
from .core.auth import Accept, Deny
from .core.filters import FilterError, compile_fields, compile_where, project
from .core.pairs import event_topic, pair_prefix, presence_topic, rest_procedure
from .e2e import keys as e2e_keys
from .e2e.wamp import enable_payload_passthru, publish_envelope
from .service.security import CombinedKeys
from .transport.http import JsonMethodsRequest, method_not_allowed

__all__ = [
    # the client kit
    "Backoff", "ConfigError", "Credentials", "RouterConnection", "RouterSettings", "TlsClient",
    "check_private_file", "load_cryptosign_key", "read_secret_file",
    # configuration
    "configcheck",
    # plugins
    "extras", "runfiles", "sqlite_schema",
    # HTTP
    "JsonMethodsRequest", "httpinput", "method_not_allowed", "openapi",
    # filters
    "FilterError", "compile_fields", "compile_where", "project",
    # end-to-end envelopes
    "e2e", "e2e_keys", "enable_payload_passthru", "publish_envelope",
    # REST over RPC and the pairs' URIs
    "event_topic", "pair_prefix", "presence_topic", "rest", "rest_procedure",
    # token checking
    "Accept", "CombinedKeys", "Deny", "FetchedKeys", "JwtAuthenticator", "JwtKey", "JwtPolicy", "StaticKeys",
    "jwks_fetcher", "keys_from_jwks",
]
