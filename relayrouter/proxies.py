"""``http.trusted_proxies`` (and ``relay.trusted_proxies``): whose
``X-Forwarded-For`` names the client.

Behind a reverse proxy every connection comes from the proxy's address.
``X-Forwarded-For`` says who the client was, but anyone can send that
header, so it is read only when the TCP peer is one of the listed proxies;
its entries are then read from the right (the nearest hop first), skipping
listed proxies, and the first other address is the client.  No I/O here.
"""

import ipaddress
from typing import Iterable

from .config.check import ConfigError

Networks = tuple  # of ipaddress.IPv4Network / IPv6Network


def parse(values, key: str) -> Networks:
    """Addresses or networks (``10.0.0.1``, ``10.0.0.0/8``, ``::1``); errors name the entry."""
    if values is None:
        return ()
    if not isinstance(values, list):
        raise ConfigError(f"{key}: must be a list of addresses or networks, e.g. [\"127.0.0.1\", \"10.0.0.0/8\"]")
    networks = []
    for i, value in enumerate(values):
        try:
            if not isinstance(value, str):
                raise TypeError(value)
            networks.append(ipaddress.ip_network(value, strict=False))
        except (TypeError, ValueError):
            raise ConfigError(f"{key}[{i}]: {value!r} is not an IP address or network") from None
        if networks[-1].prefixlen == 0:
            # Every address a proxy: any client could name itself in X-Forwarded-For.
            raise ConfigError(f"{key}[{i}]: {value!r} would trust every address as a proxy; "
                              "list your reverse proxies' addresses")
    return tuple(networks)


def client_host(peer_host: str, forwarded_for: str | None, trusted: Networks) -> str:
    """The client's address: ``peer_host``, or from ``forwarded_for`` when the peer is trusted."""
    if not trusted or not forwarded_for or not _listed(peer_host, trusted):
        return peer_host
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _listed(hop, trusted):
            return hop if _address(hop) is not None else peer_host
    return hops[0] if hops and _address(hops[0]) is not None else peer_host


def _listed(host: str, trusted: Iterable) -> bool:
    address = _address(host)
    return address is not None and any(address in network for network in trusted)


def _address(host: str):
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class TrustedProxies:
    """The proxies in force (``http.trusted_proxies``): every listener's
    holder shares this object, a reload swaps ``networks``."""

    def __init__(self, networks: Networks = ()) -> None:
        self.networks = tuple(networks)

    def replace(self, networks: Networks) -> None:
        self.networks = tuple(networks)

    def client_peer(self, peer: str, forwarded_for: str | None) -> str:
        """A peer string (``tcp4:HOST:PORT``) for the client: ``peer`` itself, or
        ``tcp4:CLIENT:0`` / ``tcp6:CLIENT:0`` when a listed proxy forwarded it."""
        if not self.networks or not forwarded_for:
            return peer
        kind, _, rest = peer.partition(":")
        if kind not in ("tcp4", "tcp6"):
            return peer
        host = rest.rsplit(":", 1)[0]
        client = client_host(host, forwarded_for, self.networks)
        return peer if client == host else f"{'tcp6' if ':' in client else 'tcp4'}:{client}:0"
