"""Loopback ports for what a test starts on a port it chooses itself (a NATS server and its
routes, Mosquitto, ACA-Py agents, sshd, a router restarted on the same port...).

A port found free by ``bind(0)`` is free only until something takes it: on Linux, ``bind(0)``
and the source port of every outgoing connection come from one range
(``net.ipv4.ip_local_port_range``), and with several workers running routers, brokers and
their clients side by side, a connection made between the pick and the server's start can
land on it (the server then exits: address already in use). So :func:`free_port` hands out
ports below that range, where neither reaches: each pytest-xdist worker from a block of its
own, each port checked free when handed out, none twice by one process until its block is used
up. Where the range cannot be read (not Linux) or leaves too little below it, ``bind(0)``.
"""

import itertools
import os
import socket

LOWEST = 10000  # clear of the well-known and registered ports the tests and docs use (8080, 8441...)
BLOCK_MIN = 500
_ports = None  # (this process's block, the ports in the order handed out)


def free_port() -> int:
    """A loopback TCP port nothing is bound to, from this worker's block (see the module's docstring)."""
    global _ports
    if _ports is None:
        block = worker_block()
        if block is None:
            return system_port()
        start = os.getpid() % len(block)  # two runs on one machine start far apart
        _ports = (block, itertools.cycle([*block[start:], *block[:start]]))
    block, ports = _ports
    for _ in range(len(block)):
        port = next(ports)
        if is_free(port):
            return port
    raise RuntimeError(f"no free loopback port in {block.start}-{block.stop - 1}")


def worker_block(worker: str | None = None, count: str | None = None) -> range | None:
    """The ports of this pytest-xdist worker (``PYTEST_XDIST_WORKER``, ``gwN``, of
    ``PYTEST_XDIST_WORKER_COUNT``), or of the one process; None where there is no room."""
    top = ephemeral_start()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0") if worker is None else worker
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") if count is None else count
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = (top - LOWEST) // max(int(count), index + 1, 1)
    if size < BLOCK_MIN:
        return None
    return range(LOWEST + index * size, LOWEST + (index + 1) * size)


def ephemeral_start() -> int:
    """The first port of the range the system picks from (0 if unknown)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def is_free(port: int) -> bool:
    """Nothing bound to ``port`` on loopback, listening or lingering (TIME_WAIT counts as taken)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def system_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
