"""Which browser origins may use the router: WebSocket upgrades and the HTTP endpoints.

A browser sends ``Origin`` on WebSocket upgrades and cross-origin requests;
other clients send none and are not subject to this check (it protects
browsers' users, not the router).  Origins are compared as
``(scheme, host, port)`` with default ports filled in, so
``https://app.example.com`` also matches ``https://app.example.com:443``.
``"*"`` allows every origin.

A page opened from a file (``file://...``), a sandboxed frame or a privacy
redirect has an opaque origin, sent as ``Origin: null`` (some older browsers
sent ``file://`` itself).  ``"*"`` admits it like any other; an explicit list
admits it only when it names ``"null"``: any local file, or any page that
hides its origin, can send ``null``, so naming it is a deliberate choice.
"""

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _normal(origin: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(origin.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname or port is None:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


NULL_ORIGIN = "null"


def _is_opaque(origin: str) -> bool:
    """An Origin header for a page without a real origin: ``null`` or a file URL."""
    origin = origin.strip().lower()
    return origin == NULL_ORIGIN or origin.startswith("file:")


class OriginPolicy:
    def __init__(self, allowed: tuple[str, ...] | list[str] = ("*",)) -> None:
        self.replace(allowed)

    def replace(self, allowed: tuple[str, ...] | list[str]) -> None:
        """The allowed origins from now on (a configuration reload); every holder shares this object."""
        self.any = "*" in allowed
        self.null = NULL_ORIGIN in allowed
        self.allowed = frozenset(n for n in (_normal(o) for o in allowed if o not in ("*", NULL_ORIGIN)) if n)

    def allows(self, origin: str | None) -> bool:
        """Whether a request with this Origin header (None: no header) may proceed."""
        if origin is None or self.any:
            return True
        if _is_opaque(origin):
            return self.null
        normal = _normal(origin)
        return normal is not None and normal in self.allowed


def cors_headers(request, origin: str, methods: str) -> None:
    """The headers a browser needs to let a page at ``origin`` read our answer."""
    request.setHeader(b"access-control-allow-origin", origin.encode("ascii", "replace"))
    request.setHeader(b"vary", b"Origin")
    request.setHeader(b"access-control-allow-methods", methods.encode())
    request.setHeader(b"access-control-allow-headers", b"Authorization, Content-Type")
    request.setHeader(b"access-control-max-age", b"600")
