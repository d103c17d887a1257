"""What a process started by ``twistd <plugin>`` keeps in its working directory.

The router and every connector can be started from one directory side by
side, as the documentation does:

* twistd's pid file defaults to ``<plugin>.pid`` (twistd's own default,
  ``twistd.pid``, is shared by every plugin: the second process would stop
  with "Another twistd server is running"), its log file, when daemonized,
  to the pid file's name with ``.log`` (``<plugin>.log``, ``gw.log`` for
  ``--pidfile gw.pid``); ``--pidfile`` and ``--logfile`` still name others;
* a configuration error stops the start with one line on standard error
  naming the program and the key (:class:`ConfigurationRefused`), not after
  twistd's whole ``--help`` as a usage error would;
* each state directory defaults to a name of its own
  (``relayrouter-state``, ``iot-agent-state``, ...) and is locked while a
  process uses it, so a second process given the same one stops at start
  with a line naming the directory and the process holding it.
"""

import fcntl
import os

TWISTD_PIDFILE = "twistd.pid"  # twistd's default
LOCK_NAME = ".lock"

_held: dict[str, int] = {}  # state directory -> the locked file's descriptor, for this process's life


class ConfigurationRefused(SystemExit):
    """A configuration the process cannot start with: ``<program>: configuration
    error: <error>`` on standard error, exit status 1.  (A usage error would have
    twistd print its whole ``--help`` first: over a hundred lines above the one
    that matters.)  Unknown options are still usage errors."""

    def __init__(self, program: str, error) -> None:
        super().__init__(f"{program}: configuration error: {error}")


def own_twistd_files(server_options, plugin: str) -> None:
    """Give twistd's pid and log files the plugin's name unless the command line names them."""
    if server_options is None:
        return
    if server_options.get("pidfile") == TWISTD_PIDFILE:
        server_options["pidfile"] = f"{plugin}.pid"
    if not (server_options.get("logfile") or server_options.get("nodaemon") or server_options.get("syslog")):
        # Named after the pid file, so that a second process of a plugin given its own
        # pid file (gw.pid) logs on its own too (gw.log).
        pidfile = server_options.get("pidfile")
        server_options["logfile"] = (os.path.splitext(pidfile)[0] if pidfile else plugin) + ".log"


def lock_state_dir(path: str, option: str = "--state-dir") -> None:
    """Take the state directory for this process, or exit with one line naming who holds it.

    The directory is created 0700 if missing.  The lock (``flock`` on
    ``<dir>/.lock``, which holds the holder's pid) lasts as long as the
    process; taking it again in the same process is a no-op."""
    path = os.path.abspath(path)
    if path in _held:
        return
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise SystemExit(f"{option} {path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SystemExit(f"{option} {path} is in use by another process (pid {holder}); "
                         f"give each process its own {option}") from None
    _write_pid(fd)
    _held[path] = fd
    from twisted.internet import reactor

    # twistd daemonizes after making the service: the pid is the daemon's once the reactor runs.
    reactor.callWhenRunning(_write_pid, fd)


def _write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
