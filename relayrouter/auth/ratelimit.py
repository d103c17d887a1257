"""Failed authentication attempts, rate-limited per client address.

Each address has a token bucket of ``burst`` failures refilled at ``per_minute``
per minute.  A failure takes a token; with none left, the address is refused
before its credentials are even looked at, until a token has grown back.  A
success costs nothing.  Buckets that are full again are forgotten, so memory
stays bounded by the addresses failing right now (and by ``max_addresses``).
"""

from dataclasses import dataclass
from typing import Any, Callable

from ..core.auth import Deny, JoinRequest


@dataclass(frozen=True, slots=True)
class FailureLimits:
    burst: int = 10
    per_minute: float = 10.0
    max_addresses: int = 100_000


class FailureLimiter:
    def __init__(self, clock: Callable[[], float], limits: FailureLimits = FailureLimits()) -> None:
        self.clock = clock
        self.limits = limits
        self.buckets_by_address: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)
        self.refused = 0

    def retry_after(self, address: str) -> float | None:
        """Seconds until ``address`` may try again, or None if it may now."""
        tokens = self._tokens(address)
        if tokens >= 1:
            return None
        self.refused += 1
        return (1 - tokens) * 60.0 / self.limits.per_minute

    def failed(self, address: str) -> None:
        tokens = self._tokens(address) - 1
        if len(self.buckets_by_address) >= self.limits.max_addresses:
            self._forget_full()
        self.buckets_by_address[address] = (max(tokens, 0.0), self.clock())

    def _tokens(self, address: str) -> float:
        entry = self.buckets_by_address.get(address)
        if entry is None:
            return float(self.limits.burst)
        tokens, at = entry
        tokens = min(self.limits.burst, tokens + (self.clock() - at) * self.limits.per_minute / 60.0)
        if tokens >= self.limits.burst:
            del self.buckets_by_address[address]
        return tokens

    def _forget_full(self) -> None:
        for address in list(self.buckets_by_address):
            self._tokens(address)


def address_of(peer: str) -> str:
    """'tcp4:127.0.0.1:53120' -> 'tcp4:127.0.0.1' (the port changes per connection)."""
    if peer.startswith(("tcp4:", "tcp6:")):
        return peer.rsplit(":", 1)[0]
    return peer


class RateLimited:
    """Wraps an authenticator: refuses limited addresses, counts its denials."""

    def __init__(self, inner, limiter: FailureLimiter) -> None:
        self.inner = inner
        self.limiter = limiter
        self.authmethod = inner.authmethod

    def hello(self, request: JoinRequest) -> Any:
        address = address_of(request.transport.peer)
        wait = self.limiter.retry_after(address)
        if wait is not None:
            return Deny(f"too many failed authentication attempts from your address; "
                        f"try again in {max(1, round(wait))} s")
        return self._counted(address, self.inner.hello(request))

    def authenticate(self, request: JoinRequest, state, signature: str, extra: dict) -> Any:
        return self._counted(address_of(request.transport.peer),
                             self.inner.authenticate(request, state, signature, extra))

    def _counted(self, address: str, decision: Any) -> Any:
        if hasattr(decision, "addBoth"):
            return decision.addBoth(lambda d: self._counted(address, d))
        if isinstance(decision, Deny):
            self.limiter.failed(address)
        return decision
