"""The DIDComm messages the proxy sends and reads, free of I/O.

Theory of operation
-------------------
Two connections, each made with the Connections protocol (Aries RFC 0160)
or DID Exchange 1.0 (RFC 0023; a legacy DID and its document attached and
signed, as ACA-Py makes them for 1.0), whichever the out-of-band invitation
(RFC 0434) offers first:

* **to the external mediator**: we are the invitee.  From its invitation
  (``c_i=`` or ``oob=``) we learn its key and endpoint, send a connection
  (or DID Exchange) request carrying our DID document
  (``~transport.return_route = all``, so the answers come back in the HTTP
  response: the proxy needs no endpoint the mediator can reach), verify the
  signed response (and send DID Exchange's ``complete``), then ask for
  mediation (``mediate-request`` -> ``mediate-grant``: the mediator's
  endpoint and routing keys) and register our key (``keylist-update``).
* **from the agent**: we are the inviter.  Our out-of-band invitation names
  an invitation key and our ``ENDPOINT`` and offers DID Exchange first,
  then Connections; the agent's request arrives on ``POST /``, we answer
  with a response signed by the invitation key.  The agent's
  ``mediate-request`` is granted with the mediator's endpoint and routing
  keys ``[our key as did:key, *mediator's keys]``; its ``keylist-update``s
  are kept, and a forward is delivered only for a key the agent registered
  (or its connection key).

Message types are read under both prefixes (``https://didcomm.org/`` and
the older ``did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/``) and sent under the
first.
"""

import base64
import json
import struct
import time
import uuid
from urllib.parse import parse_qs, urlparse

from relayrouter.api import httpinput

from . import envelope

PREFIX = "https://didcomm.org/"
OLD_PREFIX = "did:sov:BzCbsNYhMrjHiqZDTUASHg;spec/"
CONNECTIONS = "connections/1.0"
DIDEXCHANGE = "didexchange/1.0"
OOB = "out-of-band/1.1"
MEDIATION = "coordinate-mediation/1.0"
PICKUP = "messagepickup/2.0"
DISCOVER = "discover-features/1.0"
SIGNATURE = "signature/1.0/ed25519Sha512_single"


class ProtocolError(ValueError):
    """A message we cannot act on; ``code`` is the problem report's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def type_of(message: dict) -> str:
    """``connections/1.0/request`` for either prefix; '' when there is none."""
    kind = message.get("@type")
    if not isinstance(kind, str):
        return ""
    for prefix in (PREFIX, OLD_PREFIX):
        if kind.startswith(prefix):
            return kind[len(prefix):]
    return kind


def new_message(kind: str, **fields) -> dict:
    return {"@type": PREFIX + kind, "@id": str(uuid.uuid4()), **fields}


def reply(kind: str, to: dict, **fields) -> dict:
    message = new_message(kind, **fields)
    message["~thread"] = {"thid": (to.get("~thread") or {}).get("thid") or to.get("@id")}
    return message


def problem_report(code: str, explanation: str, to: dict) -> dict:
    return reply("report-problem/1.0/problem-report", to, description={"code": code, "en": explanation})


def with_return_route(message: dict) -> dict:
    return dict(message, **{"~transport": {"return_route": "all"}})


def trust_ping() -> dict:
    """The poll: no answer wanted, but everything queued for us returned on the socket."""
    return with_return_route(new_message("trust_ping/1.0/ping", response_requested=False))


# ---------------------------------------------------------------- DID docs


def peer_did(verkey: str) -> str:
    """The unqualified DID of the Connections protocol: base58 of the verkey's first 16 bytes."""
    return envelope.b58encode(envelope.b58decode(verkey)[:16])


def did_doc(did: str, verkey: str, endpoint: str, routing_keys=()) -> dict:
    return {
        "@context": "https://w3id.org/did/v1",
        "id": did,
        "publicKey": [{"id": f"{did}#1", "type": "Ed25519VerificationKey2018", "controller": did,
                       "publicKeyBase58": verkey}],
        "authentication": [{"type": "Ed25519SignatureAuthentication2018", "publicKey": f"{did}#1"}],
        "service": [{"id": f"{did};indy", "type": "IndyAgent", "priority": 0, "recipientKeys": [verkey],
                     "routingKeys": list(routing_keys), "serviceEndpoint": endpoint}],
    }


def target_of(doc: dict) -> dict:
    """What a DID document says about reaching its subject: ``{"verkey", "endpoints", "routing_keys"}``."""
    services = [s for s in doc.get("service") or [] if isinstance(s, dict) and s.get("serviceEndpoint")]
    if not services:
        raise ProtocolError("invalid-did-doc", "the DID document names no service endpoint")
    keys = services[0].get("recipientKeys") or [k.get("publicKeyBase58") for k in doc.get("publicKey") or []]
    if not keys or not isinstance(keys[0], str):
        raise ProtocolError("invalid-did-doc", "the DID document names no recipient key")
    return {"verkey": _key_of(doc, keys[0]), "endpoints": [s["serviceEndpoint"] for s in services],
            "routing_keys": [_key_of(doc, k) for k in services[0].get("routingKeys") or []]}


def _key_of(doc: dict, reference: str) -> str:
    """A key named by value, by did:key, or by reference to the document's publicKey list."""
    if "#" in reference and not reference.startswith("did:key:"):
        for entry in doc.get("publicKey") or []:
            if entry.get("id") == reference or reference.endswith(str(entry.get("id", "")).split("#")[-1]):
                return entry["publicKeyBase58"]
    return envelope.verkey_of(reference)


# ------------------------------------------------------------- invitations


def parse_invitation(url: str) -> dict:
    """``c_i=`` (Connections) or ``oob=`` (out-of-band, Connections or DID Exchange 1.0 handshake, the
    first the invitation offers) -> ``{"kind": "connections" | "didexchange", "verkey", "endpoint",
    "routing_keys", "label", "id"}``."""
    query = parse_qs(urlparse(url).query)
    if "c_i" in query:
        invitation = _decode_invitation(query["c_i"][0])
        keys = invitation.get("recipientKeys") or []
        endpoint = invitation.get("serviceEndpoint")
        routing = invitation.get("routingKeys") or []
        kind = "connections"
    elif "oob" in query:
        invitation = _decode_invitation(query["oob"][0])
        handshakes = [type_of({"@type": h}) for h in invitation.get("handshake_protocols") or []
                      if isinstance(h, str)]
        spoken = [h for h in handshakes if h in (CONNECTIONS, DIDEXCHANGE, "didexchange/1.1")]
        if not spoken:
            raise ProtocolError("unsupported-handshake", "the out-of-band invitation offers no handshake this"
                                f" proxy speaks (connections/1.0, didexchange/1.0); it offers {handshakes[:5]}")
        services = [s for s in invitation.get("services") or [] if isinstance(s, dict)]
        if not services:
            raise ProtocolError("invalid-invitation", "the out-of-band invitation has no inline service"
                                " (a public DID service is not resolved by this proxy)")
        keys, endpoint = services[0].get("recipientKeys") or [], services[0].get("serviceEndpoint")
        routing = services[0].get("routingKeys") or []
        kind = "connections" if spoken[0] == CONNECTIONS else "didexchange"
    else:
        raise ProtocolError("invalid-invitation", "an invitation URL carries c_i= or oob=")
    if not keys or not isinstance(endpoint, str):
        raise ProtocolError("invalid-invitation", "the invitation names no recipient key or endpoint")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys + routing):
        raise ProtocolError("invalid-invitation", "the invitation's keys are not strings")
    try:
        verkey, routing = envelope.verkey_of(keys[0]), [envelope.verkey_of(k) for k in routing]
    except ValueError as e:
        raise ProtocolError("invalid-invitation", str(e)) from None
    return {"kind": kind, "verkey": verkey, "endpoint": endpoint, "routing_keys": routing,
            "label": invitation.get("label"), "id": invitation.get("@id")}


def _decode_invitation(value: str) -> dict:
    try:
        invitation = httpinput.json_value(envelope.from_b64url(value.replace("+", "-").replace("/", "_")),
                                          field="the invitation")  # BadInput is a ValueError
    except ValueError:
        raise ProtocolError("invalid-invitation", "the invitation is not base64 JSON") from None
    if not isinstance(invitation, dict):
        raise ProtocolError("invalid-invitation", "the invitation is not a JSON object")
    return invitation


def oob_invitation(invitation_key: str, endpoint: str, label: str = "proxy-mediator") -> tuple[dict, str]:
    """Our invitation for the agent and its URL ``ENDPOINT?oob=...``: DID Exchange 1.0 first (the
    seed's handshake), Connections 1.0 for an agent that asks for it."""
    invitation = new_message(f"{OOB}/invitation", label=label,
                             handshake_protocols=[PREFIX + DIDEXCHANGE, PREFIX + CONNECTIONS],
                             services=[{"id": "#inline", "type": "did-communication",
                                        "recipientKeys": [envelope.did_key(invitation_key)],
                                        "serviceEndpoint": endpoint, "routingKeys": []}])
    return invitation, f"{endpoint}?oob={envelope.b64url(json.dumps(invitation).encode())}"


# -------------------------------------------------------------- connections


def connection_request(label: str, verkey: str, endpoint: str) -> dict:
    did = peer_did(verkey)
    return with_return_route(new_message(f"{CONNECTIONS}/request", label=label,
                                         connection={"DID": did, "DIDDoc": did_doc(did, verkey, endpoint)}))


def connection_response(request: dict, signer, verkey: str, endpoint: str) -> dict:
    """Our answer to the agent's request, the connection signed by the invitation key ``signer``."""
    did = peer_did(verkey)
    connection = {"DID": did, "DIDDoc": did_doc(did, verkey, endpoint)}
    data = struct.pack(">Q", int(time.time())) + json.dumps(connection).encode()
    signature = {"@type": PREFIX + SIGNATURE, "signature": envelope.b64url(envelope.sign(signer, data)),
                 "sig_data": envelope.b64url(data), "signer": envelope.verkey(signer)}
    return reply(f"{CONNECTIONS}/response", request, **{"connection~sig": signature})


def their_connection(request_or_response: dict, invitation_key: str | None = None) -> dict:
    """The other side's target from its request, or from its response (signed by ``invitation_key``)."""
    if type_of(request_or_response).endswith("/request"):
        connection = request_or_response.get("connection")
    else:
        signed = request_or_response.get("connection~sig") or {}
        try:
            data = envelope.from_b64url(signed["sig_data"])
            good = signed.get("signer") == invitation_key and envelope.verify(
                invitation_key, data, envelope.from_b64url(signed["signature"]))
        except (KeyError, TypeError, ValueError):
            good = False
        if not good:
            raise ProtocolError("invalid-signature", "the connection response is not signed by the invitation key")
        connection = json.loads(data[8:])
    if not isinstance(connection, dict) or not isinstance(connection.get("DIDDoc"), dict):
        raise ProtocolError("invalid-connection", "the message carries no connection with a DID document")
    return target_of(connection["DIDDoc"])


# ------------------------------------------------------------- DID Exchange


def signed_attachment(document: dict, signer) -> dict:
    """``did_doc~attach``: the document as base64, signed (a JWS over it, as ACA-Py makes and checks
    them: EdDSA, the signing key in the protected header's ``jwk`` and ``kid``)."""
    raw = json.dumps(document).encode()
    key = envelope.verkey(signer)
    protected = envelope.b64url(json.dumps({"alg": "EdDSA", "jwk": {
        "kty": "OKP", "crv": "Ed25519", "x": envelope.b64url(envelope.b58decode(key)),
        "kid": envelope.did_key(key)}}).encode())
    signature = envelope.sign(signer, f"{protected}.{envelope.b64url(raw)}".encode("ascii"))
    return {"@id": str(uuid.uuid4()), "mime-type": "application/json",
            "data": {"base64": base64.b64encode(raw).decode("ascii"),
                     "jws": {"header": {"kid": envelope.did_key(key)}, "protected": protected,
                             "signature": envelope.b64url(signature)}}}


def attached_document(attachment, signer: str | None = None) -> dict:
    """The DID document of a ``did_doc~attach``; its signature checked when it has one, and required
    to be ``signer``'s (a verkey) when ``signer`` is given."""
    try:
        data = attachment["data"]
        raw = envelope.from_b64url(data["base64"].replace("+", "-").replace("/", "_").rstrip("="))
        jws = data.get("jws")
        if jws is not None:
            header = httpinput.json_value(envelope.from_b64url(jws["protected"]), field="the JWS header")
            key = envelope.b58encode(envelope.from_b64url(header["jwk"]["x"]))
            kid = header["jwk"].get("kid")
            good = (kid is None or envelope.verkey_of(kid) == key) and envelope.verify(
                key, f"{jws['protected']}.{envelope.b64url(raw)}".encode("ascii"),
                envelope.from_b64url(jws["signature"]))
        else:
            key, good = None, True
        document = httpinput.json_value(raw, field="the DID document")
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ProtocolError("invalid-did-doc", "the DID document attachment cannot be read") from None
    if not good or (signer is not None and key != signer):
        raise ProtocolError("invalid-signature", "the DID document is not signed by the invitation key")
    if not isinstance(document, dict):
        raise ProtocolError("invalid-did-doc", "the attached DID document is not a JSON object")
    return document


def didexchange_request(label: str, verkey: str, endpoint: str, invitation_id, signer) -> dict:
    """Our request on an out-of-band invitation (``pthid``): a legacy DID and its signed document."""
    did = peer_did(verkey)
    request = new_message(f"{DIDEXCHANGE}/request", label=label, did=did,
                          **{"did_doc~attach": signed_attachment(did_doc(f"did:sov:{did}", verkey, endpoint),
                                                                 signer)})
    request["~thread"] = {"thid": request["@id"], "pthid": invitation_id}
    return with_return_route(request)


def didexchange_response(request: dict, signer, verkey: str, endpoint: str) -> dict:
    """Our answer to the agent's request, the document signed by the invitation key ``signer``."""
    did = peer_did(verkey)
    response = reply(f"{DIDEXCHANGE}/response", request, did=did,
                     **{"did_doc~attach": signed_attachment(did_doc(f"did:sov:{did}", verkey, endpoint), signer)})
    pthid = (request.get("~thread") or {}).get("pthid")
    if isinstance(pthid, str):
        response["~thread"]["pthid"] = pthid  # the requester's complete names it again, as ACA-Py requires
    return response


def didexchange_complete(request: dict) -> dict:
    message = new_message(f"{DIDEXCHANGE}/complete")
    message["~thread"] = dict(request["~thread"])
    return message


def their_didexchange(message: dict, invitation_key: str | None = None) -> dict:
    """The other side's target from its DID Exchange request (any signature) or response (signed by
    ``invitation_key``): only a DID with its attached document, as ACA-Py sends for 1.0."""
    if "did_doc~attach" not in message:
        raise ProtocolError("unsupported-did", "a DID Exchange message without an attached DID document"
                            " (a resolvable DID) is not supported")
    return target_of(attached_document(message["did_doc~attach"], invitation_key))


# ----------------------------------------------------------------- mediation


def mediate_request() -> dict:
    return with_return_route(new_message(f"{MEDIATION}/mediate-request"))


def keylist_update(verkey: str, action: str = "add") -> dict:
    return with_return_route(new_message(f"{MEDIATION}/keylist-update",
                                         updates=[{"recipient_key": verkey, "action": action}]))


def mediate_grant(request: dict, endpoint: str, routing_keys: list[str]) -> dict:
    return reply(f"{MEDIATION}/mediate-grant", request, endpoint=endpoint,
                 routing_keys=[envelope.did_key(k) for k in routing_keys])


def apply_keylist_update(keys: list[str], update: dict) -> tuple[list[str], dict]:
    """The agent's keys after ``update``, and our answer (each update's result)."""
    keys, results = list(keys), []
    for item in update.get("updates") or []:
        if not isinstance(item, dict):
            continue
        given, action = item.get("recipient_key"), item.get("action")
        try:
            key = envelope.verkey_of(given) if isinstance(given, str) else None
        except ValueError:
            key = None
        if key is None or action not in ("add", "remove"):
            result = "client_error"
        elif action == "add":
            result = "no_change" if key in keys else "success"
            keys += [] if key in keys else [key]
        else:
            result = "success" if key in keys else "no_change"
            keys = [k for k in keys if k != key]
        results.append({"recipient_key": given, "action": action, "result": result})
    return keys, reply(f"{MEDIATION}/keylist-update-response", update, updated=results)


def forward_target(message: dict) -> tuple[str, dict]:
    """``routing/1.0/forward`` -> (the verkey it is for, the packed message)."""
    to, inner = message.get("to"), message.get("msg")
    if not isinstance(to, str) or not isinstance(inner, dict):
        raise ProtocolError("invalid-forward", "a forward needs 'to' (a key) and 'msg' (a packed message)")
    try:
        return envelope.verkey_of(to), inner
    except ValueError:
        raise ProtocolError("invalid-forward", f"'to' is not a key: {to[:80]!r}") from None


# ----------------------------------------------------------------- pickup 2.0


def pickup_query() -> dict:
    """Does the mediator speak Message Pickup 2.0 (Aries RFC 0685)?  Asked with discover-features 1.0."""
    return with_return_route(new_message(f"{DISCOVER}/query", query=PREFIX + "messagepickup/*"))


def offers_pickup(disclose: dict) -> bool:
    """Whether a discover-features ``disclose`` lists ``messagepickup/2.0``."""
    if type_of(disclose) != f"{DISCOVER}/disclose" or not isinstance(disclose.get("protocols"), list):
        raise ProtocolError("no-disclose", f"the mediator answered the feature query with {type_of(disclose)!r}")
    pids = [p.get("pid") for p in disclose["protocols"] if isinstance(p, dict)]
    return any(isinstance(pid, str) and type_of({"@type": pid}) == PICKUP for pid in pids)


def status_request() -> dict:
    return with_return_route(new_message(f"{PICKUP}/status-request"))


def delivery_request(limit: int) -> dict:
    return with_return_route(new_message(f"{PICKUP}/delivery-request", limit=limit))


def messages_received(ids: list[str]) -> dict:
    return with_return_route(new_message(f"{PICKUP}/messages-received", message_id_list=ids))


def message_count(status: dict) -> int:
    """``status`` -> its ``message_count``."""
    count = status.get("message_count")
    if type_of(status) != f"{PICKUP}/status" or not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ProtocolError("invalid-status", f"expected a pickup status, got {type_of(status)!r}")
    return count


def delivered(delivery: dict) -> list[tuple[str, bytes | None]]:
    """A ``delivery``'s attachments -> ``[(id, packed message or None when unreadable)]``; ids that
    are not strings are left out (they cannot be acknowledged)."""
    out = []
    for attachment in delivery.get("~attach") or []:
        if not isinstance(attachment, dict) or not isinstance(attachment.get("@id"), str):
            continue
        out.append((attachment["@id"], _attachment_body(attachment.get("data"))))
    return out


def _attachment_body(data) -> bytes | None:
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("json"), dict):
        return json.dumps(data["json"]).encode()
    try:
        return base64.b64decode(data["base64"].replace("-", "+").replace("_", "/") + "==", validate=False)
    except (KeyError, AttributeError, ValueError):
        return None
