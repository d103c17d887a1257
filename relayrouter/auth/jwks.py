"""Fetching a JWKS over HTTP(S) with treq, for :class:`.jwt.FetchedKeys`.

This is the only auth module that does I/O.  ``jwks_fetcher(url)`` returns the
zero-argument ``fetch`` that ``FetchedKeys`` calls; it never blocks the
reactor, logs what went wrong (naming the URL, never a token) and hands the
failure on so the key source can count it.
"""

import json
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import treq
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .jwt import JwtKey, keys_from_jwks

log = Logger()


class JwksFetchError(Exception):
    """The JWKS URL did not give us a JWKS."""


def jwks_fetcher(url: str, *, http: Any = treq, timeout: float = 10.0) -> Callable[[], Deferred]:
    """``fetch()`` for ``FetchedKeys``; ``http`` is treq or a ``treq.testing.StubTreq``."""
    if urlsplit(url).scheme not in ("https", "http"):
        raise ValueError(f"JWKS URL '{url}' must be http:// or https://")

    def fetch() -> Deferred:
        d = http.get(url, timeout=timeout, headers={"Accept": ["application/json"]})
        d.addCallback(_json_body, url, http)
        d.addErrback(_log_failure, url)
        return d

    return fetch


def _json_body(response, url: str, http) -> Deferred:
    if response.code != 200:
        raise JwksFetchError(f"JWKS URL {url} answered HTTP {response.code}")
    return http.json_content(response)


def _log_failure(failure, url: str):
    log.warn("could not fetch the JWKS from {url}: {error}", url=url, error=failure.getErrorMessage())
    return failure


def read_jwks_file(path: str | Path) -> tuple[JwtKey, ...]:
    """The keys of a JWKS file, for ``StaticKeys``."""
    try:
        document = json.loads(Path(path).read_text("utf8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read JWKS file '{path}': {e}") from None
    keys = keys_from_jwks(document)
    if not keys:
        raise ValueError(f"JWKS file '{path}' holds no usable signing key")
    return keys
