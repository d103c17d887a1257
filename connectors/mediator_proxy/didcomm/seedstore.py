"""The proxy-mediator's Askar store (``ENABLE_STORE``, ``REPO_URI``, ``REPO_KEY``), read once.

A deployment that swaps Indicio's proxy-mediator for this process keeps its
connections: at the first start (an empty state directory) with the store
enabled, the seed's store is opened read-only in spirit (nothing is written
to it) and what it holds becomes this proxy's state.

What the seed keeps there (facts from its ``proxy_mediator/store.py`` and
``connection.py``): the category ``connections``, one entry per connection
named by our verkey, JSON ``{"state", "multiuse", "invitation_key", "did",
"verkey", "sigkey" (base58 of the 64-byte Ed25519 signing key: seed then
public key), "diddoc" (theirs, or null), "target": {"recipients": [their
verkeys, base58], "endpoint"}}``; the category ``identifiers`` names the
mediator's and the agent's connection by our verkey (``mediator``,
``agent``).  The store's key is derived with Argon2i (``kdf:argon2i``).

What it does not keep, and so what an imported proxy does without: the
mediator's grant (endpoint and routing keys; the agent already has it, and a
new mediation request from the agent is refused until the proxy is set up
anew) and the agent's keylist (the seed never kept it: forwards for any key
are delivered, as the seed did, while the keys the agent registers from now
on are kept).
"""

import asyncio
import json
import os
from urllib.parse import urlparse

from . import envelope, messages
from .messages import ProtocolError


class SeedStoreError(Exception):
    """The seed's store cannot be read; the message names REPO_URI without its credentials."""


def describe_uri(uri: str) -> str:
    """REPO_URI fit for a log line: scheme, host and path, never a password."""
    parsed = urlparse(uri)
    host = parsed.hostname or ""
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


def read(uri: str, key: str) -> dict | None:
    """The seed's connections as this proxy's state (``{"keys", "mediator", "agent"}``), or None when
    there is no store (a SQLite file that does not exist: the seed would have made a new one)."""
    if uri.startswith("sqlite://") and uri != "sqlite://:memory:":
        path = uri[len("sqlite://"):].split("?", 1)[0]
        if not os.path.exists(path):
            return None
    try:
        entries, identifiers = asyncio.run(_fetch(uri, key))
    except Exception as e:  # noqa: BLE001 - askar's own errors: a wrong key, an unreachable database
        raise SeedStoreError(f"REPO_URI {describe_uri(uri)}: cannot open the proxy-mediator's store"
                             f" ({type(e).__name__})") from None
    try:
        return convert(entries, identifiers)
    except (KeyError, TypeError, ValueError) as e:
        raise SeedStoreError(f"REPO_URI {describe_uri(uri)}: the store's connections cannot be read"
                             f" ({type(e).__name__}: {e})") from None


async def _fetch(uri: str, key: str):
    from aries_askar import Store

    store = await Store.open(uri, "kdf:argon2i", key)
    try:
        async with store.session() as session:
            entries = {e.name: json.loads(e.value) for e in await session.fetch_all("connections")}
            identifiers = {e.name: bytes(e.value).decode() for e in await session.fetch_all("identifiers")}
    finally:
        await store.close()
    return entries, identifiers


def convert(entries: dict, identifiers: dict) -> dict | None:
    """The seed's entries -> ``{"keys": {role: secret hex}, "mediator": record, "agent": record | None}``;
    None when the seed had no mediator connection yet."""
    mediator = entries.get(identifiers.get("mediator"))
    if mediator is None:
        return None
    agent = entries.get(identifiers.get("agent"))
    keys = {"mediator": _secret(mediator)}
    record = dict(_target(mediator), keylist_updated=True, imported=True)
    http = [e for e in record["endpoints"] if e.startswith(("http://", "https://"))]
    if not http:
        raise ValueError("the mediator's connection names no http(s) endpoint")
    record["http"] = http[0]
    out = {"keys": keys, "mediator": record, "agent": None}
    if agent is not None:
        keys["agent"] = _secret(agent)
        out["agent"] = dict(_target(agent), keys=[], any_key=True)
    return out


def _secret(entry: dict) -> str:
    """The 32-byte Ed25519 secret (hex) of a connection, checked against its verkey."""
    sigkey = envelope.b58decode(entry["sigkey"])
    if len(sigkey) not in (32, 64):
        raise ValueError(f"the connection {entry['verkey']!r} has a signing key of {len(sigkey)} bytes")
    if envelope.verkey(envelope.key_from_secret(sigkey[:32])) != entry["verkey"]:
        raise ValueError(f"the connection {entry['verkey']!r} has a signing key of another verkey")
    return sigkey[:32].hex()


def _target(entry: dict) -> dict:
    """``{"verkey", "endpoints", "routing_keys"}`` of the other side: from its DID document when the
    seed kept one, else from the connection's target."""
    if isinstance(entry.get("diddoc"), dict):
        try:
            return messages.target_of(entry["diddoc"])
        except ProtocolError:
            pass
    target = entry["target"]
    recipients, endpoint = target["recipients"], target["endpoint"]
    if not recipients or not isinstance(endpoint, str) or not endpoint:
        raise ValueError(f"the connection {entry['verkey']!r} names no recipient or endpoint")
    return {"verkey": envelope.verkey_of(recipients[0]), "endpoints": [endpoint], "routing_keys": []}
