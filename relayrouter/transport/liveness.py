"""Dead-peer detection below WAMP: TCP keepalive tuned to the heartbeat.

WebSocket pings (Autobahn's auto-ping) and RawSocket PINGs (rawsocket.py)
find a peer that stopped answering; a stalled send queue (connection.py)
finds one that stopped reading.  TCP keepalive adds what neither sees on an
idle connection whose peer host vanished (power loss, a NAT that forgot the
flow): the kernel probes after ``interval`` seconds of silence and gives up
after ``timeout`` more.
"""

import socket

from twisted.logger import Logger

log = Logger()

_PROBES = 4


def enable_tcp_keepalive(transport, interval: float, timeout: float) -> None:
    """Best effort: only TCP sockets have it, and the tuning is Linux's."""
    handle = _socket_of(transport)
    if handle is None or interval <= 0:
        return
    try:
        handle.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(interval)))
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(timeout / _PROBES)))
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, _PROBES)
    except OSError as e:
        log.debug("TCP keepalive not set: {error}", error=e)


def _socket_of(transport):
    # A TLS connection's transport wraps the TCP one.
    for _ in range(3):
        if transport is None:
            return None
        get_handle = getattr(transport, "getHandle", None)
        if get_handle is not None:
            handle = get_handle()
            if isinstance(handle, socket.socket) and handle.family in (socket.AF_INET, socket.AF_INET6):
                return handle
            if isinstance(handle, socket.socket):
                return None
        transport = getattr(transport, "transport", None)
    return None
