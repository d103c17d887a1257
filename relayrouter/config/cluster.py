"""``[cluster]``: several router nodes joined by NATS (see docs/reference/cluster.md).

Called from :mod:`relayrouter.config`; errors name the key.  Without the
section the router runs alone and nothing of the NATS client is imported.
"""

import base64
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from .check import ConfigError
from .check import OPTIONAL, note_key  # what the reader asks, for the configuration reference
from .check import get as _get, key_name as _name, only as _only  # the shared checks
from .check import seconds as _seconds, table as _table

TOP_LEVEL_KEYS = {"cluster"}
_KEYS = {"nats", "node", "subject_prefix", "user", "password_env", "password_file",
         "token_env", "token_file", "tls", "reconnect_wait", "connect_timeout", "max_pending_bytes",
         "heartbeat_interval", "heartbeat_ttl", "loop", "nkey_seed_env", "nkey_seed_file",
         "credentials_file", "replicas", "prefer_local_callees", "resume_window", "resume_limit"}
_TLS_KEYS = {"ca", "certificate", "key", "hostname"}
# A NATS subject token we put names into unescaped: no ".", "*", ">" or spaces.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SCHEMES = ("nats://", "tls://")
# Where nats-py runs: a loop thread of its own, or the asyncio reactor's loop (twistd --reactor=asyncio).
LOOPS = ("thread", "reactor")
# A kept watch is asked for its consumer once a second (cluster/buckets.py RESUME_PROBE):
# a shorter limit could never see one answer.
MIN_RESUME_LIMIT = 1.0


@dataclass(frozen=True, slots=True)
class ClusterTls:
    ca: str | None = None
    certificate: str | None = None
    key: str | None = None
    hostname: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    servers: tuple[str, ...]
    node: str
    subject_prefix: str = "relayrouter"
    user: str | None = None
    password: str | None = None
    token: str | None = None
    # An nkey user's seed (SU...), or a creds file (user JWT + its seed) for NATS accounts with JWTs.
    nkey_seed: str | None = None
    credentials_file: str | None = None
    tls: ClusterTls | None = None
    reconnect_wait: float = 1.0
    connect_timeout: float = 2.0
    # What the client buffers while NATS is away; beyond it publications are dropped (counted).
    max_pending_bytes: int = 8 * 1024 * 1024
    # Each node announces itself (and its session counts) this often; one not
    # heard from for heartbeat_ttl is gone from the cluster view.
    heartbeat_interval: float = 1.0
    heartbeat_ttl: float = 3.0
    # "thread": nats-py on an asyncio loop of its own thread; "reactor": on the
    # reactor's own loop, which must then be Twisted's asyncio reactor.
    loop: str = "thread"
    # Replicas of every shared-state bucket in JetStream; None: as many as the
    # NATS servers the client knows, up to 3.
    replicas: int | None = None
    # roundrobin and random pick among the caller's node's callees when it has any.
    prefer_local_callees: bool = False
    # Back on NATS within resume_window seconds of losing it (a failover to another
    # server takes well under a second), the node keeps its key-value watches instead of
    # making them anew; a kept watch has resume_limit seconds to show a live consumer
    # (a bucket may be electing a leader after a server's death), else all are made anew.
    resume_window: float = 5.0
    resume_limit: float = 30.0

    def __repr__(self) -> str:  # never a password or token
        return (f"ClusterConfig(servers={self.servers}, node={self.node!r}, user={self.user!r}, "
                f"password={'set' if self.password else None}, token={'set' if self.token else None}, "
                f"nkey_seed={'set' if self.nkey_seed else None}, credentials_file={self.credentials_file!r}, "
                f"tls={self.tls})")


def cluster(data: dict) -> ClusterConfig | None:
    if "cluster" not in data:
        return None
    item = data["cluster"]
    key = "cluster"
    _table(item, key)
    _only(item, key, _KEYS)
    note_key(key, "nats", list, None)
    note_key(key, "credentials_file", str, OPTIONAL)
    note_key(key, "replicas", int, OPTIONAL)
    servers = item.get("nats")
    if servers is None:
        raise ConfigError(f"{key}.nats: required (the NATS servers, e.g. [\"nats://127.0.0.1:4222\"])")
    if not isinstance(servers, list) or not servers or not all(isinstance(s, str) for s in servers):
        raise ConfigError(f"{key}.nats: must be a non-empty list of server URLs (nats://host:port or tls://host:port)")
    for i, url in enumerate(servers):
        if not url.startswith(_SCHEMES) or len(url) <= len("nats://"):
            raise ConfigError(f"{key}.nats[{i}]: {url!r} is not a NATS URL (nats://host:port or tls://host:port)")
    node = _get(item, "node", str, _default_node(), key)
    if not _TOKEN.fullmatch(node):
        raise ConfigError(f"{key}.node: {node!r} must be 1-64 of letters, digits, '_' and '-'")
    prefix = _get(item, "subject_prefix", str, "relayrouter", key)
    if not all(_TOKEN.fullmatch(part) for part in prefix.split(".")):
        raise ConfigError(f"{key}.subject_prefix: {prefix!r} must be dot-separated tokens of letters, digits, '_' and '-'")
    user = _get(item, "user", str, "", key) or None
    password = _secret(item, "password", key)
    token = _secret(item, "token", key)
    if password is not None and user is None:
        raise ConfigError(f"{key}.user: required with password_env/password_file")
    if user is not None and password is None:
        raise ConfigError(f"{key}.password_env: give password_env or password_file with user")
    if token is not None and user is not None:
        raise ConfigError(f"{key}.token_env: give either user/password or a token, not both")
    nkey_seed = _secret(item, "nkey_seed", key)
    if nkey_seed is not None:
        _check_seed(nkey_seed, _name(key, "nkey_seed_env" if "nkey_seed_env" in item else "nkey_seed_file"))
    credentials = _credentials(item, key) if "credentials_file" in item else None
    given = [what for what, value in (("user/password", user), ("token", token), ("nkey_seed", nkey_seed),
                                      ("credentials_file", credentials)) if value is not None]
    if len(given) > 1:
        raise ConfigError(f"{key}: give one way to authenticate to NATS, not {' and '.join(given)}")
    max_pending = _get(item, "max_pending_bytes", int, 8 * 1024 * 1024, key)
    if max_pending < 64 * 1024:
        raise ConfigError(f"{key}.max_pending_bytes: must be at least 65536")
    interval = _seconds(item, "heartbeat_interval", 1.0, key)
    ttl = _seconds(item, "heartbeat_ttl", 3.0, key)
    if ttl < 2 * interval:
        raise ConfigError(f"{key}.heartbeat_ttl: must be at least twice heartbeat_interval ({interval:g} s)")
    replicas = _replicas(item, key)
    resume_window = _seconds(item, "resume_window", 5.0, key)
    resume_limit = _seconds(item, "resume_limit", 30.0, key)
    if resume_limit < MIN_RESUME_LIMIT:
        raise ConfigError(f"{key}.resume_limit: must be at least {MIN_RESUME_LIMIT:g} s (a kept watch's consumer is "
                          "asked for once a second)")
    loop = _get(item, "loop", str, "thread", key)
    if loop not in LOOPS:
        raise ConfigError(f"{key}.loop: must be \"thread\" or \"reactor\" (with twistd --reactor=asyncio), not {loop!r}")
    return ClusterConfig(
        heartbeat_interval=interval, heartbeat_ttl=ttl, loop=loop, replicas=replicas,
        prefer_local_callees=_get(item, "prefer_local_callees", bool, False, key),
        servers=tuple(servers), node=node, subject_prefix=prefix, user=user, password=password, token=token,
        nkey_seed=nkey_seed, credentials_file=credentials,
        tls=_tls(item.get("tls"), f"{key}.tls", servers),
        reconnect_wait=_seconds(item, "reconnect_wait", 1.0, key),
        connect_timeout=_seconds(item, "connect_timeout", 2.0, key),
        max_pending_bytes=max_pending, resume_window=resume_window, resume_limit=resume_limit,
    )


def _default_node() -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:48] or "node"
    return f"{name}-{os.getpid()}"


def _secret(item: dict, what: str, key: str) -> str | None:
    env, file = f"{what}_env", f"{what}_file"
    note_key(key, env, str, OPTIONAL)
    note_key(key, file, str, OPTIONAL)
    if env in item and file in item:
        raise ConfigError(f"{_name(key, env)}: give {env} or {file}, not both")
    if env in item:
        var = _get(item, env, str, None, key)
        value = os.environ.get(var)
        if not value:
            raise ConfigError(f"{_name(key, env)}: environment variable {var} is not set or empty")
        return value
    if file in item:
        path = _private_file(item, file, key)
        value = path.read_text("utf8").rstrip("\r\n")
        if not value:
            raise ConfigError(f"{_name(key, file)}: the file is empty")
        return value
    return None


def _check_seed(seed: str, name: str) -> None:
    """An nkey user seed nats-py can sign with; the error never shows it."""
    try:
        import nkeys
    except ImportError:
        raise ConfigError(f"{name}: nkey authentication needs the nkeys package "
                          "(pip install 'relayrouter[cluster]')") from None
    if not seed.startswith("SU"):
        raise ConfigError(f"{name}: not an nkey user seed (one starts with 'SU'; "
                          "'nsc' or 'nk -gen user' makes them)")
    try:
        raw = base64.b32decode(seed + "=" * (-len(seed) % 8))
        nkeys.from_seed(bytearray(seed.encode("ascii")))
        valid = nkeys.crc16(raw[:-2]) == int.from_bytes(raw[-2:], "little")  # from_seed does not check it
    except Exception:
        valid = False
    if not valid:
        raise ConfigError(f"{name}: not a valid nkey seed (its checksum or encoding is wrong)")


_JWT_BLOCK = re.compile(r"-----BEGIN NATS USER JWT-----\s*\n\s*(\S+)\s*\n")
_SEED_BLOCK = re.compile(r"-----BEGIN USER NKEY SEED-----\s*\n\s*(\S+)\s*\n")


def _credentials(item: dict, key: str) -> str:
    """A NATS creds file: private, with a user JWT and the user's nkey seed."""
    name = _name(key, "credentials_file")
    path = _private_file(item, "credentials_file", key)
    try:
        text = path.read_text("ascii")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{name}: cannot read '{path}': {getattr(e, 'strerror', None) or e}") from None
    jwt = _JWT_BLOCK.search(text)
    seed = _SEED_BLOCK.search(text)
    if jwt is None or seed is None:
        raise ConfigError(f"{name}: '{path}' is not a NATS creds file (it needs a '-----BEGIN NATS USER "
                          "JWT-----' block and a '-----BEGIN USER NKEY SEED-----' block)")
    if jwt.group(1).count(".") != 2:
        raise ConfigError(f"{name}: the user JWT in '{path}' is not a JWT")
    _check_seed(seed.group(1), name)
    return str(path)


def _private_file(item: dict, name: str, key: str) -> Path:
    """A file holding a secret: readable, and by its owner only."""
    path = Path(_get(item, name, str, None, key))
    try:
        mode = path.stat().st_mode
        path.open("rb").close()
    except OSError as e:
        raise ConfigError(f"{_name(key, name)}: cannot read '{path}': {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{_name(key, name)}: '{path}' is readable by others (mode "
                          f"{stat.S_IMODE(mode):o}); chmod 600 it")
    return path


def _tls(item, key: str, servers: list) -> ClusterTls | None:
    if item is None:
        return None
    _table(item, key)
    _only(item, key, _TLS_KEYS)
    for name in ("ca", "certificate"):
        if name in item:
            path = _get(item, name, str, None, key)
            if not os.access(path, os.R_OK):
                raise ConfigError(f"{_name(key, name)}: cannot read '{path}'")
    if ("certificate" in item) != ("key" in item):
        raise ConfigError(f"{key}: give certificate and key together (the client certificate for NATS)")
    key_file = str(_private_file(item, "key", key)) if "key" in item else None
    return ClusterTls(ca=item.get("ca"), certificate=item.get("certificate"), key=key_file,
                      hostname=_get(item, "hostname", str, "", key) or None)


def _replicas(item: dict, key: str) -> int | None:
    """cluster.replicas: 1 to 5 (JetStream's own bound), or absent for the default."""
    if "replicas" not in item:
        return None
    value = item["replicas"]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise ConfigError(f"{key}.replicas: must be a whole number from 1 to 5 (JetStream's limit), "
                          f"not {value!r}")
    return value
