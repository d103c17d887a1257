"""Devices of every tenant: the registry through the store, an in-memory copy
for ingestion (no database read per message), and device credentials.

A device's secret is ``HMAC-SHA256(key, "<tenant>:<id>:<generation>")`` (32
hex characters) with the key in ``<state dir>/device-credentials.key``
(0600, made on first start): nothing secret is stored per device, the agent
can provision the broker again at any time, and rotating a credential is a
generation bump.  Checks are constant-time.
"""

import hashlib
import hmac
import os
import secrets
import stat

from twisted.internet import defer

from .registry import Tables, definitions

KEY_FILE = "device-credentials.key"


def load_key(state_dir: str) -> bytes:
    path = os.path.join(state_dir, KEY_FILE)
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise ValueError(f"{path} is readable by group or others (mode {mode:04o}); run chmod 600 {path}")
    with open(path, "rb") as f:
        key = f.read()
    if len(key) < 32:
        raise ValueError(f"{path} holds {len(key)} bytes; it needs 32 (delete it to make a new one, which "
                         "changes every device's credential)")
    return key


class DeviceDirectory:
    def __init__(self, store, key: bytes) -> None:
        self.store = store
        self._key = key
        self.devices: dict[tuple[str, str], dict] = {}  # (tenant, id) -> device
        self.types: dict[tuple[str, str], dict] = {}  # (tenant, id) -> {label: type}
        self.listeners: list = []  # fn(kind, device) after each committed change: create|update|remove
        self._secrets: dict[tuple[str, str], tuple[dict, int, str]] = {}  # (tenant, id) -> (record, generation, secret)

    @defer.inlineCallbacks
    def load(self):
        devices = yield self.store.run(Tables.list_devices, None)
        for device in devices:
            self._keep(device)
        return len(devices)

    # ------------------------------------------------------------ lookups

    def get(self, tenant: str, device_id: str) -> dict | None:
        return self.devices.get((tenant, device_id))

    def of_tenant(self, tenant: str) -> list[dict]:
        return sorted((d for (t, _), d in self.devices.items() if t == tenant), key=lambda d: d["id"])

    def secret(self, device: dict) -> str:
        """The device's credential secret, an HMAC of its name and generation;
        kept per device record (a change makes a new record, so a rotated
        credential is never answered from the cache)."""
        key = (device["tenant"], device["id"])
        cached = self._secrets.get(key)
        if cached is not None and cached[0] is device and cached[1] == device["generation"]:
            return cached[2]
        text = f"{device['tenant']}:{device['id']}:{device['generation']}".encode()
        secret = hmac.new(self._key, text, hashlib.sha256).hexdigest()[:32]
        if self.devices.get(key) is device:  # only the current record's: the cache holds one per device
            self._secrets[key] = (device, device["generation"], secret)
        return secret

    def check_secret(self, tenant: str, device_id: str, given: str) -> dict | None:
        device = self.get(tenant, device_id)
        expected = self.secret(device) if device is not None else "0" * 32
        ok = hmac.compare_digest(expected.encode(), given.encode("utf8", "replace"))
        return device if ok and device is not None else None

    def credentials(self, device: dict) -> dict:
        secret = self.secret(device)
        tenant, device_id = device["tenant"], device["id"]
        return {"mqtt": {"username": f"{tenant}:{device_id}", "password": secret,
                         "client_id": f"{tenant}:{device_id}"},
                "http": {"username": f"{tenant}@{device_id}", "password": secret,
                         "token": f"{tenant}@{device_id}:{secret}"}}

    # ------------------------------------------------------------ changes

    @defer.inlineCallbacks
    def create(self, tenant: str, spec):
        device = yield self.store.run(Tables.create_device, tenant, spec)
        self._keep(device)
        self._tell("create", device)
        return device

    @defer.inlineCallbacks
    def update(self, tenant: str, device_id: str, spec):
        device = yield self.store.run(Tables.update_device, tenant, device_id, spec)
        self._keep(device)
        self._tell("update", device)
        return device

    @defer.inlineCallbacks
    def rotate(self, tenant: str, device_id: str):
        device = yield self.store.run(Tables.rotate_credential, tenant, device_id)
        self._keep(device)
        self._tell("update", device)
        return device

    @defer.inlineCallbacks
    def delete(self, tenant: str, device_id: str):
        device = yield self.store.run(Tables.delete_device, tenant, device_id)
        self.devices.pop((tenant, device_id), None)
        self.types.pop((tenant, device_id), None)
        self._secrets.pop((tenant, device_id), None)
        self._tell("remove", device)
        return device

    def _keep(self, device: dict) -> None:
        key = (device["tenant"], device["id"])
        self.devices[key] = device
        self.types[key] = definitions(device)

    def _tell(self, kind: str, device: dict) -> None:
        for listener in self.listeners:
            listener(kind, device)
