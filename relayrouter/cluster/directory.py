"""The cluster's registration directory: one JetStream key-value bucket.

One key per registration ``(realm, procedure, match)``; its value is the
whole registration as the cluster knows it, every callee on every node in
registration order.  Every change is a compare-and-set on the key's
revision (create when absent, update or delete at the revision read), so
two nodes changing one registration at once cannot both win: the loser
reads again and decides again (a ``single`` registration taken meanwhile
is then refused).  Each node keeps the whole bucket in memory through a KV
watch, so a CALL never waits on NATS for its lookup.

Bucket ``<prefix with . as _>_reg`` (history 1, file storage).  Key
``<realm>.<m>.<procedure>`` with realm and procedure in URL-safe base64
without padding, each behind a ``k``, and ``<m>`` the match policy's first
letter (``e``, ``p``, ``w``); a key that would be longer than 400
characters uses ``h`` and the SHA-256 of the name instead.  Value (msgpack):
``[1, realm, procedure, match, registration_id, invoke, created, callees]``
with ``callees`` a list of ``[node, session_id, authid, authrole, flags]``
(flags: 1 payload passthru, 2 call canceling, as the callee announced).

Plain data and coroutines run on the NATS loop thread (through
:meth:`NatsBridge.run`); nothing here touches the reactor's state.
"""

import asyncio
import base64
import hashlib

import msgpack
from nats.js import errors as js_errors

from ..core.dealer import SINGLE
from ..core.ids import global_id

WIRE_VERSION = 1
PPT = 1
CANCELING = 2
MAX_KEY = 400
MAX_ATTEMPTS = 64  # CAS rounds before a change gives up (contention on one key)


class Refused(Exception):
    """The directory cannot take the change as asked (``single`` taken, policies mixed, ...)."""


class NoJetStream(Exception):
    """The NATS server has no JetStream: there is no directory to keep."""


class Contended(Exception):
    """Other nodes kept changing the key: the change was not made."""


class Unchanged:
    """What a change function returns when the value is already as wanted."""


UNCHANGED = Unchanged()


def _token(text: str) -> str:
    return "k" + base64.urlsafe_b64encode(text.encode("utf8")).decode("ascii").rstrip("=")


def key(realm: str, procedure: str, match: str) -> str:
    name = f"{_token(realm)}.{match[0]}.{_token(procedure)}"
    if len(name) <= MAX_KEY:
        return name
    digest = hashlib.sha256(f"{realm}\0{match}\0{procedure}".encode("utf8")).hexdigest()
    return f"h{digest}"


class Value:
    """One registration as the directory holds it (immutable once made)."""

    __slots__ = ("realm", "uri", "match", "id", "invoke", "created", "callees")

    def __init__(self, realm, uri, match, reg_id, invoke, created, callees) -> None:
        self.realm = realm
        self.uri = uri
        self.match = match
        self.id = reg_id
        self.invoke = invoke
        self.created = created
        self.callees = tuple(tuple(c) for c in callees)  # (node, session_id, authid, authrole, flags)

    def with_callees(self, callees) -> "Value":
        return Value(self.realm, self.uri, self.match, self.id, self.invoke, self.created, callees)

    def encode(self) -> bytes:
        return msgpack.packb([WIRE_VERSION, self.realm, self.uri, self.match, self.id, self.invoke,
                              self.created, [list(c) for c in self.callees]], use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> "Value":
        version, realm, uri, match, reg_id, invoke, created, callees = msgpack.unpackb(data, raw=False)[:8]
        return cls(realm, uri, match, reg_id, invoke, created, callees)


class Directory:
    """The bucket, seen from the loop thread.  Every method here is a coroutine
    function for :meth:`NatsBridge.run`: ``await method(nc, js, ...)``."""

    def __init__(self, bucket: str, buckets) -> None:
        self.bucket = bucket
        self.buckets = buckets  # cluster.buckets: made with the cluster's replicas
        self._kv = None  # the bucket handle, made once per NATS client
        self._kv_of = None
        self._watcher = None
        self._pumping = None  # the task that hands the watch's entries over

    async def _bucket(self, nc, js):
        if self._kv is None or self._kv_of is not nc:
            try:
                kv = await self.buckets.open(nc, js, self.bucket)
            except js_errors.ServiceUnavailableError:
                raise NoJetStream("the NATS server has no JetStream (nats-server -js)") from None
            self._kv, self._kv_of = kv, nc
        return self._kv

    async def change(self, nc, js, name: str, fn):
        """Compare-and-set ``name`` to ``fn(current)`` (a :class:`Value` or None
        when absent): ``fn`` returns ``(new, note)`` with ``new`` a Value, None
        (delete) or :data:`UNCHANGED`; it may raise :class:`Refused`.  Returns
        ``(revision, new value or None, note, created)``."""
        kv = await self._bucket(nc, js)
        for _ in range(MAX_ATTEMPTS):
            try:
                entry = await kv.get(name)
                revision, current = entry.revision, Value.decode(entry.value)
            except js_errors.KeyNotFoundError as e:
                # Deleted keys come as not found, with the tombstone's revision to update at.
                tombstone = getattr(e, "entry", None)
                revision, current = (tombstone.revision if tombstone is not None else 0), None
            new, note = fn(current)
            if new is UNCHANGED or (new is None and current is None):
                return revision, current, note, False
            try:
                if new is None:
                    await kv.delete(name, last=revision)
                    return revision, None, note, False
                revision = await kv.update(name, new.encode(), last=revision)
                return revision, new, note, current is None
            except js_errors.KeyWrongLastSequenceError:
                continue  # someone else changed it since we read: read again, decide again
            except js_errors.APIError as e:
                if getattr(e, "err_code", None) == 10071:  # wrong last sequence, as a plain API error
                    continue
                raise
        raise Contended(f"registration directory key changed {MAX_ATTEMPTS} times while being updated")

    async def watch(self, nc, js, deliver) -> None:
        """Start (or restart) the watch of the whole bucket: ``deliver(entry)`` is
        called on the loop thread with ``(key, revision, Value or None)`` per
        update, and with None once the values present at the start were given."""
        kv = await self._bucket(nc, js)
        if self._watcher is not None:
            old, self._watcher = self._watcher, None
            try:
                await old.stop()
            except Exception:  # its subscription went with the old connection: end its pump anyway
                try:
                    old._updates.put_nowait(old.STOP_ITER)
                except Exception:
                    pass
        watcher = await kv.watchall()
        self._watcher = watcher
        self._pumping = asyncio.ensure_future(self._pump(watcher, deliver))

    async def resume(self, nc, js, patience: float) -> bool:
        """True when the running watch is kept across a reconnection (:func:`.buckets.watch_resumes`);
        False when it is gone or cannot resume, and must be started again."""
        from .buckets import watch_resumes

        if self._watcher is None or self._pumping is None or self._pumping.done():
            return False
        return await watch_resumes(self._watcher, patience)

    async def stop_watch(self, nc, js) -> None:
        if self._watcher is not None:
            watcher, self._watcher = self._watcher, None
            await watcher.stop()

    async def _pump(self, watcher, deliver) -> None:
        async for entry in watcher:
            if entry is None:
                deliver(None)
                continue
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                deliver((entry.key, entry.revision, None))
                continue
            try:
                value = Value.decode(entry.value)
            except Exception:
                continue  # not ours: another version's or someone's by hand; never routed to
            deliver((entry.key, entry.revision, value))


# ------------------------------------------------------------------ changes
# What a node asks of one key, as functions of the value read: they run on the NATS
# loop thread on what they are given only, once per compare-and-set round.

def joining(template: Value, entry: tuple):
    """A session of this node joins the registration (``template``: uri, match, invoke, created)."""
    node, session_id = entry[0], entry[1]

    def change(current):
        if current is None:
            return Value(template.realm, template.uri, template.match, global_id(),
                         template.invoke, template.created, [entry]), None
        if any(c[0] == node and c[1] == session_id for c in current.callees):
            raise Refused(f"this session has already registered '{current.uri}'")
        if not current.callees:
            return current.with_callees([entry]), None
        if current.invoke == SINGLE or template.invoke == SINGLE:
            raise Refused(f"'{current.uri}' is already registered by another callee"
                          + ("" if current.callees[0][0] == node else f" (on node {current.callees[0][0]})"))
        if current.invoke != template.invoke:
            raise Refused(f"'{current.uri}' is registered with invoke policy '{current.invoke}', "
                          f"not '{template.invoke}'")
        return current.with_callees([*current.callees, entry]), None

    return change


def fixing(node: str, template: Value, wanted: list, keep: set):
    """This node's entries become ``wanted`` (those in ``keep``, REGISTERs on
    the way, stay as they are); entries of other nodes are untouched.  The
    note is the session IDs that could not be put back (another registration
    holds the procedure now)."""
    wanted_ids = {e[1] for e in wanted}

    def change(current):
        if current is None:
            if not wanted or template.id is None:
                return UNCHANGED, set()
            return template.with_callees(wanted), set()
        kept = [c for c in current.callees if c[0] != node or c[1] in wanted_ids or c[1] in keep]
        others = [c for c in kept if c[0] != node]
        present = {c[1] for c in kept if c[0] == node}
        missing = [e for e in wanted if e[1] not in present]
        rejected = set()
        if missing:
            if current.id != template.id:
                if kept:  # another registration of the procedure, with callees: it stays
                    rejected = {e[1] for e in missing}
                else:  # an empty one of an older life: ours again
                    return template.with_callees(wanted), rejected
            elif others and SINGLE in (current.invoke, template.invoke):
                rejected = {e[1] for e in missing}
            else:
                kept.extend(missing)
        if not kept:
            return None, rejected
        if tuple(tuple(c) for c in kept) == current.callees:
            return UNCHANGED, rejected
        return current.with_callees(kept), rejected

    return change


def without_node(node: str):
    def change(current):
        if current is None:
            return UNCHANGED, None
        callees = [c for c in current.callees if c[0] != node]
        if len(callees) == len(current.callees):
            return UNCHANGED, None
        return (current.with_callees(callees) if callees else None), None

    return change
