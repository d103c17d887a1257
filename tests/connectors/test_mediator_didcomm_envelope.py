"""DIDComm v1 envelopes and the DIDComm mode's options, against ACA-Py's own packer.

The interop cases run ACA-Py 0.12.8's ``aries_cloudagent.askar.didcomm.v1``
in its own virtualenv: what it packs we open, and what we pack it opens,
Authcrypt (the sender's key recovered) and Anoncrypt.
"""

import base64
import json
import os
import subprocess

import pytest

from connectors.mediator_proxy.didcomm import envelope, messages

from .processes import Child, twistd
from .test_mediator_proxy_acapy import ACAPY

ACAPY_PYTHON = os.path.join(os.path.dirname(ACAPY), "python")

ACAPY_SIDE = r"""
import asyncio, json, sys
from aries_askar import Key, KeyAlg, Store
from aries_cloudagent.askar.didcomm.v1 import pack_message, unpack_message
from aries_cloudagent.wallet.util import bytes_to_b58

async def main():
    given = json.loads(sys.stdin.read())
    theirs = Key.from_secret_bytes(KeyAlg.ED25519, bytes.fromhex(given["secret"]))
    their_vk = bytes_to_b58(theirs.get_public_bytes())
    packed = pack_message([given["ours"]], theirs if given["auth"] else None, b'{"from": "aca-py"}')
    store = await Store.provision("sqlite://:memory:", "raw", Store.generate_raw_key(), recreate=True)
    async with store.session() as session:
        await session.insert_key(their_vk, theirs)
        message, recipient, sender = await unpack_message(session, given["envelope"].encode())
    print(json.dumps({"packed": packed.decode(), "their_vk": their_vk, "opened": json.loads(message),
                      "recipient": recipient, "sender": sender}))

asyncio.run(main())
"""


@pytest.mark.parametrize("authcrypt", [True, False])
def test_envelopes_interoperate_with_acapy(authcrypt):
    if not os.access(ACAPY_PYTHON, os.X_OK):
        message = f"ACA-Py's virtualenv not found ({ACAPY_PYTHON}; scripts/test.sh makes it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: a missing install is an error)", pytrace=False)
        pytest.skip(message)
    ours, theirs = envelope.new_key(), envelope.new_key()
    their_vk = envelope.verkey(theirs)
    sent = envelope.pack({"from": "relayrouter"}, [their_vk], ours if authcrypt else None)
    given = {"secret": theirs.get_secret_bytes().hex(), "ours": envelope.verkey(ours), "auth": authcrypt,
             "envelope": sent.decode()}
    result = subprocess.run([ACAPY_PYTHON, "-c", ACAPY_SIDE], input=json.dumps(given), capture_output=True,
                            text=True, timeout=120, env={"PATH": os.environ.get("PATH", "")})
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert answer["opened"] == {"from": "relayrouter"} and answer["recipient"] == their_vk
    assert answer["sender"] == (envelope.verkey(ours) if authcrypt else None)
    opened = envelope.unpack(answer["packed"].encode(), {envelope.verkey(ours): ours})
    assert opened.message == {"from": "aca-py"} and opened.recipient == envelope.verkey(ours)
    assert opened.sender == (their_vk if authcrypt else None)


def test_a_tampered_or_foreign_envelope_is_refused_by_name():
    ours, stranger = envelope.new_key(), envelope.new_key()
    packed = json.loads(envelope.pack({"a": 1}, [envelope.verkey(ours)], stranger))
    packed["ciphertext"] = envelope.b64url(b"x" + envelope.from_b64url(packed["ciphertext"])[1:])
    cases = {b"not json": "not a DIDComm v1 envelope",
             json.dumps(packed).encode(): "cannot open the envelope",
             envelope.pack({"a": 1}, [envelope.verkey(stranger)]): "packed for none of our keys"}
    for body, message in cases.items():
        with pytest.raises(envelope.EnvelopeError, match=message):
            envelope.unpack(body, {envelope.verkey(ours): ours})


def test_did_key_and_base58_round_trip():
    key = envelope.new_key()
    verkey = envelope.verkey(key)
    assert envelope.did_key(verkey).startswith("did:key:z6Mk")
    assert envelope.verkey_of(envelope.did_key(verkey)) == verkey == envelope.verkey_of(verkey)
    assert envelope.b58decode(envelope.b58encode(b"\0\0abc")) == b"\0\0abc"
    with pytest.raises(ValueError):
        envelope.verkey_of("did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc")  # an X25519 did:key


def test_keylist_updates_are_kept_and_answered_per_key():
    """The seed answers every update "success" and keeps nothing
    (proxy_mediator/protocols/coordinate_mediation.py); here they are applied."""
    a, b = envelope.verkey(envelope.new_key()), envelope.verkey(envelope.new_key())
    update = {"@id": "u1", "updates": [{"recipient_key": envelope.did_key(a), "action": "add"},
                                       {"recipient_key": b, "action": "add"},
                                       {"recipient_key": "not a key", "action": "add"},
                                       {"recipient_key": a, "action": "add"}]}
    keys, answer = messages.apply_keylist_update([], update)
    assert keys == [a, b]
    assert [u["result"] for u in answer["updated"]] == ["success", "success", "client_error", "no_change"]
    keys, answer = messages.apply_keylist_update(keys, {"updates": [{"recipient_key": a, "action": "remove"}]})
    assert keys == [b] and answer["updated"][0]["result"] == "success"


@pytest.mark.parametrize("env, message", [
    ({}, "--port (PORT): required"),
    ({"PORT": "3000"}, "--endpoint (ENDPOINT): required"),
    ({"PORT": "3000", "ENDPOINT": "ftp://x"}, "--endpoint (ENDPOINT): 'ftp://x' is not an http"),
    ({"PORT": "3000", "ENDPOINT": "http://x", "ENABLE_STORE": "true"}, "--repo-uri (REPO_URI): required when"),
    ({"PORT": "3000", "ENDPOINT": "http://x", "ENABLE_STORE": "1", "REPO_URI": "sqlite://x"},
     "--repo-key (REPO_KEY): required when"),
    ({"PORT": "3000", "ENDPOINT": "http://x", "POLL_INTERVAL": "soon"}, "--poll-interval (POLL_INTERVAL): 'soon'"),
    ({"PORT": "99999", "ENDPOINT": "http://x"}, "--port (PORT): 99999 is not a port"),
])
def test_the_seeds_variables_are_read_and_bad_ones_named(tmp_path, env, message):
    """proxy_mediator/__main__.py config(): PORT and ENDPOINT required, REPO_URI and REPO_KEY with
    ENABLE_STORE, POLL_INTERVAL a float."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PORT", "ENDPOINT", "ENABLE_STORE", "REPO_URI",
                                                               "REPO_KEY", "POLL_INTERVAL", "MEDIATOR_INVITE")}
    child = Child("didcomm", twistd("mediator-proxy", "didcomm", "--state-dir", tmp_path / "s"),
                  env=env, cwd=tmp_path)
    child.env = dict(clean, **child.env)
    for name in ("PORT", "ENDPOINT", "ENABLE_STORE", "REPO_URI", "REPO_KEY", "POLL_INTERVAL"):
        if name not in env:
            child.env.pop(name, None)
    child.start()
    assert child.proc.wait(60) != 0
    assert "configuration error: " + message in child.output()


def test_with_a_token_the_admin_routes_ask_for_it_and_the_rest_stays_as_the_seeds(tmp_path):
    """The seed's admin routes are open (proxy_mediator/admin.py); given MEDIATOR_PROXY_API_TOKEN,
    /retrieve_agent_invitation and /receive_mediator_invitation ask for it, while POST / (agents
    and the mediator) and GET /status stay open."""
    from .processes import HTTP_LINE, http_json
    from .test_mediator_proxy_acapy import free_port

    port = free_port()
    token = "didcomm-admin-token-0123456789"
    child = Child("didcomm", twistd("mediator-proxy", "didcomm"), cwd=tmp_path, env={
        "PORT": f"tcp:{port}:interface=127.0.0.1", "ENDPOINT": f"http://127.0.0.1:{port}/",
        "MEDIATOR_PROXY_STATE_DIR": str(tmp_path / "s"), "MEDIATOR_PROXY_API_TOKEN": token})
    child.env.pop("MEDIATOR_INVITE", None)
    child.start()
    try:
        child.wait_for(HTTP_LINE)
        url = f"http://127.0.0.1:{port}"
        bearer = {"Authorization": f"Bearer {token}"}
        assert http_json("GET", url + "/retrieve_agent_invitation")[0] == 401
        assert http_json("POST", url + "/receive_mediator_invitation", b'{"invitation_url": "x"}')[0] == 401
        assert http_json("GET", url + "/retrieve_agent_invitation", headers=bearer)[:2] == (200, {"invitation_url": None})
        code, body, _ = http_json("POST", url + "/receive_mediator_invitation", b'{"invitation_url": "http://m/x"}',
                                  bearer)
        assert code == 400 and "c_i= or oob=" in body["message"]
        assert http_json("GET", url + "/status")[1]["status"] == "setup"
        assert http_json("POST", url + "/", b"not an envelope")[0] == 400
    finally:
        child.stop()
    assert token not in child.output()


def test_the_spool_is_bounded_and_the_mediator_keeps_what_does_not_fit(tmp_path):
    """Forwards on the mediator's connection are spooled up to --max-spooled; beyond, 503 with
    Retry-After (the mediator keeps the message) instead of a disk that fills while the agent is away."""
    import sqlite3
    import time

    from .processes import HTTP_LINE, http_json
    from .test_mediator_proxy_acapy import free_port

    port = free_port()
    child = Child("didcomm", twistd("mediator-proxy", "didcomm", "--state-dir", tmp_path / "s"), cwd=tmp_path,
                  env={"PORT": f"tcp:{port}:interface=127.0.0.1", "ENDPOINT": f"http://127.0.0.1:{port}/",
                       "MEDIATOR_PROXY_MAX_SPOOLED": "3"})
    child.env.pop("MEDIATOR_INVITE", None)
    child.start()
    try:
        child.wait_for(HTTP_LINE)
        deadline = time.monotonic() + 30
        while True:  # the keys are committed at start
            with sqlite3.connect(tmp_path / "s" / "state.sqlite3") as db:
                row = db.execute("SELECT value FROM kv WHERE key = 'didcomm.keys'").fetchone()
            if row or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        ours = envelope.verkey(envelope.key_from_secret(bytes.fromhex(json.loads(row[0])["mediator"])))
        agent_key = envelope.verkey(envelope.new_key())
        answers = []
        for i in range(4):
            forward = messages.new_message("routing/1.0/forward", to=agent_key, msg={"n": i})
            answers.append(http_json("POST", f"http://127.0.0.1:{port}/", envelope.pack(forward, [ours])))
        assert [a[0] for a in answers] == [202, 202, 202, 503]
        assert "--max-spooled" in answers[3][1]["message"] and answers[3][2]["Retry-After"] == "30"
        assert http_json("GET", f"http://127.0.0.1:{port}/status")[1]["spooled"] == 3
    finally:
        child.stop()


def _oob(handshakes) -> str:
    invitation = {"@type": "https://didcomm.org/out-of-band/1.1/invitation", "@id": "inv-1",
                  "handshake_protocols": handshakes,
                  "services": [{"recipientKeys": [envelope.did_key(envelope.verkey(envelope.new_key()))],
                                "serviceEndpoint": "http://m/"}]}
    return "http://m/?oob=" + envelope.b64url(json.dumps(invitation).encode())


def test_an_oob_invitation_is_taken_with_the_first_handshake_it_offers_that_the_proxy_speaks():
    didx, conn = "https://didcomm.org/didexchange/1.0", "https://didcomm.org/connections/1.0"
    assert messages.parse_invitation(_oob([didx]))["kind"] == "didexchange"
    assert messages.parse_invitation(_oob([didx]))["id"] == "inv-1"
    assert messages.parse_invitation(_oob([conn, didx]))["kind"] == "connections"
    assert messages.parse_invitation(_oob(["https://didcomm.org/didexchange/1.1", conn]))["kind"] == "didexchange"
    with pytest.raises(messages.ProtocolError, match="offers no handshake"):
        messages.parse_invitation(_oob(["https://didcomm.org/connections/2.0"]))


def test_a_did_exchange_document_is_taken_only_signed_by_the_invitation_key():
    inviter, stranger, me = envelope.new_key(), envelope.new_key(), envelope.new_key()
    request = messages.didexchange_request("agent", envelope.verkey(me), "http://agent/", "inv-1", me)
    assert request["~thread"]["pthid"] == "inv-1"
    assert messages.their_didexchange(request)["verkey"] == envelope.verkey(me)  # any signature on a request
    response = messages.didexchange_response(request, inviter, envelope.verkey(me), "http://proxy/")
    assert response["~thread"] == {"thid": request["@id"], "pthid": "inv-1"}
    target = messages.their_didexchange(response, envelope.verkey(inviter))
    assert target["endpoints"] == ["http://proxy/"]
    with pytest.raises(messages.ProtocolError, match="not signed by the invitation key"):
        messages.their_didexchange(response, envelope.verkey(stranger))
    tampered = json.loads(json.dumps(response))
    document = json.loads(base64.b64decode(tampered["did_doc~attach"]["data"]["base64"]))
    document["service"][0]["serviceEndpoint"] = "http://evil/"
    tampered["did_doc~attach"]["data"]["base64"] = base64.b64encode(json.dumps(document).encode()).decode()
    with pytest.raises(messages.ProtocolError, match="not signed"):
        messages.their_didexchange(tampered, envelope.verkey(inviter))
    for hostile in ({}, {"data": None}, {"data": {"base64": "!!"}}, {"data": {"base64": "e30=", "jws": 5}}):
        with pytest.raises(messages.ProtocolError):
            messages.their_didexchange(dict(response, **{"did_doc~attach": hostile}), envelope.verkey(inviter))
    with pytest.raises(messages.ProtocolError, match="resolvable DID"):
        messages.their_didexchange({"did": "did:peer:4zQm"})


def test_pickup_messages_are_read_strictly():
    status = {"@type": "https://didcomm.org/messagepickup/2.0/status", "message_count": 3}
    assert messages.message_count(status) == 3
    for bad in (dict(status, message_count=-1), dict(status, message_count=True), dict(status, message_count="3"),
                {"@type": "https://didcomm.org/trust_ping/1.0/ping"}):
        with pytest.raises(messages.ProtocolError):
            messages.message_count(bad)
    packed = envelope.pack({"x": 1}, [envelope.verkey(envelope.new_key())])
    delivery = {"~attach": [{"@id": "a", "data": {"base64": base64.b64encode(packed).decode()}},
                            {"@id": "b", "data": {"json": json.loads(packed)}},
                            {"@id": "c", "data": {"links": []}}, {"@id": 7, "data": {}}, "junk"]}
    assert messages.delivered(delivery) == [("a", packed), ("b", json.dumps(json.loads(packed)).encode()),
                                            ("c", None)]
    disclose = {"@type": "https://didcomm.org/discover-features/1.0/disclose",
                "protocols": [{"pid": "https://didcomm.org/messagepickup/2.0"}]}
    assert messages.offers_pickup(disclose) and not messages.offers_pickup(dict(disclose, protocols=[]))
    with pytest.raises(messages.ProtocolError):
        messages.offers_pickup({"@type": "https://didcomm.org/report-problem/1.0/problem-report"})


def test_the_seeds_store_entries_are_checked_and_its_uri_logged_without_credentials():
    from connectors.mediator_proxy.didcomm import seedstore

    assert seedstore.describe_uri("postgres://user:secret@db:5432/askar") == "postgres://db:5432/askar"
    ours, theirs, other = envelope.new_key(), envelope.verkey(envelope.new_key()), envelope.new_key()
    verkey = envelope.verkey(ours)

    def entry(sigkey: bytes, endpoint="http://m/") -> dict:
        return {"verkey": verkey, "sigkey": envelope.b58encode(sigkey), "diddoc": None,
                "target": {"recipients": [theirs], "endpoint": endpoint}}

    good = entry(ours.get_secret_bytes() + ours.get_public_bytes())
    state = seedstore.convert({verkey: good}, {"mediator": verkey})
    assert state["keys"] == {"mediator": ours.get_secret_bytes().hex()} and state["agent"] is None
    assert state["mediator"]["verkey"] == theirs and state["mediator"]["http"] == "http://m/"
    assert seedstore.convert({}, {}) is None  # the seed had not set up yet
    for bad in (entry(other.get_secret_bytes()), entry(b"short"), entry(ours.get_secret_bytes(), endpoint="")):
        with pytest.raises(ValueError):
            seedstore.convert({verkey: bad}, {"mediator": verkey})
    with pytest.raises(ValueError, match="no http"):
        seedstore.convert({verkey: entry(ours.get_secret_bytes(), endpoint="ws://m/")}, {"mediator": verkey})

