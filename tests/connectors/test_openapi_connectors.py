"""Each connector's OpenAPI document (``GET /openapi.json``) against its real
process, as the fuzz net runs it (tests/connectors/test_fuzz_net.py): a valid
OpenAPI 3.1 document naming no configured value; every path of the site's
tree (and the fuzz net's sub-paths) with every method answers 404/405 or is a
documented operation answering as documented, with and without the
credential; documented operations driven with real requests, their answers
matching the documented schemas."""

import json
import time

import pytest

from .. import fuzz_net, openapi_check
from .test_fuzz_net import (decrypt_search, didcomm_proxy, iot_agent, mediator_proxy,  # noqa: F401 (fixtures)
                             pairing_agents)

pytestmark = pytest.mark.timeout(300)


def document_of(component, credentials=()) -> openapi_check.Spec:
    answer = openapi_check.request(component.port, b"GET", "/openapi.json", list(credentials))
    assert answer.status == 200, answer
    spec = openapi_check.Spec(answer.json())
    spec.check("GET", "/openapi.json", answer)
    return spec


def swept(component, spec) -> None:
    """The sweep with the component's credential; without it, the documented paths (each
    answers a documented refusal)."""
    paths = {t.path for t in component.targets} | {"/openapi.json"}
    assert openapi_check.sweep(spec, component.port, paths, component.credentials) >= 5
    if component.credentials:
        documented = {p for p in paths if spec.template(p) is not None}
        openapi_check.sweep(spec, component.port, documented, [], documented_only=True)
    fuzz_net.still_serves(component.port, component.alive)
    assert not component.errors(), "\n\n".join(component.errors())


def driven(component, spec, calls) -> set:
    """Each (method, path, headers, body, status): the answer has that status and is as documented."""
    seen = set()
    for method, path, headers, body, status in calls:
        answer = openapi_check.request(component.port, method.encode(), path, list(headers), body)
        assert answer.status == status, (method, path, answer)
        spec.check(method, path, answer)
        seen.add((method.lower(), spec.template(path)))
    return seen


def operations(spec) -> set:
    return {(method, path) for path, item in spec.document["paths"].items() for method in item
            if method in ("get", "post", "put", "patch", "delete")}


def no_configured_values(spec, values) -> None:
    text = json.dumps(spec.document)
    for value in values:
        assert value not in text, value


# ------------------------------------------------------------ decrypt-search


def test_decrypt_search(decrypt_search):  # noqa: F811
    component = decrypt_search
    spec = document_of(component)
    no_configured_values(spec, ["acme", "com.orders", "com.notes", "com.acme.records", "ship.city"])
    from connectors.decrypt_search.http import reference_document

    assert spec.document == reference_document()  # what the docs render
    swept(component, spec)
    auth = component.credentials
    json_type = [(b"Content-Type", b"application/json")]
    published = openapi_check.request(component.port, b"POST", "/publish", auth + json_type,
                                      json.dumps({"topic": "com.notes", "document": {"text": "openapi"}}).encode())
    assert published.status == 200, published
    spec.check("POST", "/publish", published)
    deadline = time.monotonic() + 30
    while not (found := openapi_check.request(component.port, b"GET", "/search?q=openapi", auth)).json()["records"]:
        assert time.monotonic() < deadline, found
        time.sleep(0.1)  # the record comes back from the router and is committed: poll until it is
    record = found.json()["records"][0]["id"]
    seen = driven(component, spec, [
        ("GET", "/search?q=openapi&limit=5", auth, b"", 200), ("GET", "/search?limit=x", auth, b"", 400),
        ("GET", f"/records/{record}", auth, b"", 200), ("GET", "/records/999999", auth, b"", 404),
        ("GET", "/analytics?by=amount&bucket=day", auth, b"", 200),
        ("GET", "/reports/nope", auth, b"", 404),
        ("GET", "/quarantine?limit=5", auth, b"", 200), ("GET", "/status", auth, b"", 200),
        ("GET", "/status", [], b"", 401), ("POST", "/publish", auth, b"{}", 415),
        ("POST", "/publish", auth + json_type, b'{"topic": "com.notes"}', 400),
        ("GET", "/feed?after=x", auth, b"", 400), ("GET", "/openapi.json", [], b"", 200),
    ])
    assert operations(spec) - seen <= {("get", "/feed")}, operations(spec) - seen  # the stream: the sweep's


# ------------------------------------------------------------ mediator proxy


def test_mediator_proxy(mediator_proxy):  # noqa: F811
    """The mailbox mode: every path, the document included, behind the local API token."""
    from connectors.mediator_proxy.service import reference_document

    component = mediator_proxy
    refused = openapi_check.request(component.port, b"GET", "/openapi.json")
    assert refused.status == 401, refused
    spec = document_of(component, component.credentials)
    spec.check("GET", "/openapi.json", refused)
    assert spec.document == reference_document()
    no_configured_values(spec, ["agentb", "mailbox.agentb", "/inbox", component.credentials[0][1].decode()[7:]])
    swept(component, spec)
    auth = component.credentials
    seen = driven(component, spec, [
        ("GET", "/status", auth, b"", 200), ("GET", "/status", [], b"", 401),
        ("GET", "/endpoint", auth, b"", 200),
        ("POST", "/outbound/mailbox.agenta", auth + [(b"Content-Type", b"text/plain")], b"hello", 202),
        ("POST", "/outbound/not%20a%20uri", auth, b"hello", 400),
        ("GET", "/dead-letters?body=1", auth, b"", 200),
        ("DELETE", "/dead-letters/inbound/99", auth, b"", 404),
        ("POST", "/dead-letters/outbound/99/retry", auth, b"", 404),
        ("POST", "/dead-letters/sideways/1/retry", auth, b"", 400),
    ])
    assert operations(spec) - seen <= {("get", "/openapi.json")}, operations(spec) - seen


def test_mediator_proxy_didcomm(didcomm_proxy):  # noqa: F811
    """The DIDComm mode: the seed's surface, its document open, the invitation routes behind the token."""
    from connectors.mediator_proxy.didcomm.service import reference_document

    component = didcomm_proxy
    spec = document_of(component)
    assert spec.document == reference_document()
    no_configured_values(spec, [component.credentials[0][1].decode()[7:], str(component.port)])
    swept(component, spec)
    auth = component.credentials
    json_type = [(b"Content-Type", b"application/json")]
    seen = driven(component, spec, [
        ("GET", "/status", [], b"", 200),
        ("GET", "/retrieve_agent_invitation", auth, b"", 200), ("GET", "/retrieve_agent_invitation", [], b"", 401),
        ("POST", "/receive_mediator_invitation", auth + json_type, b"{}", 400),
        ("POST", "/receive_mediator_invitation", [], b"{}", 401),
        ("POST", "/", [(b"Content-Type", b"application/didcomm-envelope-enc")], b'{"protected": "x"}', 400),
    ])
    assert operations(spec) - seen <= {("get", "/openapi.json")}, operations(spec) - seen


# ------------------------------------------------------------ pairing agent


def test_pairing_agent_control_port(pairing_agents):  # noqa: F811
    """The control port's document; the REST port has none (every path there is the other peer's)."""
    from connectors.pairing.service import reference_document

    rest_port, component = pairing_agents
    spec = document_of(component)
    assert spec.document == reference_document()
    no_configured_values(spec, [f":{rest_port.port}", '"gateway"', '"manager"', "/tmp"])
    swept(component, spec)
    seen = driven(component, spec, [
        ("GET", "/status", [], b"", 200),
        ("POST", "/events/DPP:Started", [(b"Content-Type", b"application/json")], b'{"a": 1}', 202),
        ("POST", "/events/bad.name", [], b"x", 404),
    ])
    assert operations(spec) - seen <= {("get", "/openapi.json")}, operations(spec) - seen
    # On the REST port, /openapi.json is the other peer's path like any other (its echo answers).
    proxied = openapi_check.request(rest_port.port, b"GET", "/openapi.json")
    assert proxied.status == 200 and proxied.json()["path"] == "/openapi.json", proxied


# ------------------------------------------------------------ IoT agent


def test_iot_agent(iot_agent):  # noqa: F811
    """dojot's APIs and the registry, each with its own error shape."""
    import base64

    from connectors.iot_agent.http_api import reference_document

    component = iot_agent
    spec = document_of(component)
    assert spec.document == reference_document()
    no_configured_values(spec, ['"acme"', "user-acme", "device-data"])
    swept(component, spec)
    auth = component.credentials
    json_type = [(b"Content-Type", b"application/json")]
    device = {"id": "oa1", "label": "oa1", "attrs": [{"label": "temperature", "type": "float"}]}
    made = openapi_check.request(component.port, b"POST", "/device", auth + json_type, json.dumps(device).encode())
    assert made.status == 200, made
    spec.check("POST", "/device", made)
    http_cred = made.json()["credentials"]["http"]
    basic = [(b"Authorization", b"Basic " + base64.b64encode(
        f"{http_cred['username']}:{http_cred['password']}".encode()))]
    reading = json.dumps({"ts": "2021-06-16T09:32:01.683000Z", "data": {"temperature": 25.5}}).encode()
    seen = driven(component, spec, [
        ("POST", "/http-agent/v1/incoming-messages", basic + json_type, reading, 204),
        ("POST", "/http-agent/v1/incoming-messages/create-many", basic + json_type, b"[" + reading + b"]", 204),
        ("POST", "/http-agent/v1/unsecure/incoming-messages", basic + json_type, reading, 204),
        ("POST", "/http-agent/v1/unsecure/incoming-messages/create-many", [], b"[]", 401),
        ("POST", "/http-agent/v1/incoming-messages", json_type, reading, 400),
        ("GET", "/device", auth, b"", 200), ("GET", "/device", [], b"", 401),
        ("GET", "/device/oa1", auth, b"", 200), ("GET", "/device/nobody", auth, b"", 404),
        ("POST", "/device", auth + json_type, json.dumps(device).encode(), 409),
        ("PUT", "/device/oa1", auth + json_type, json.dumps({**device, "label": "renamed"}).encode(), 200),
        ("POST", "/device/oa1/credentials", auth, b"", 200),
        ("PUT", "/device/oa1/actuate", auth + json_type, b'{"attrs": {"temperature": 1.5}}', 200),
        ("PUT", "/device/oa1/actuate", auth + json_type, b'{"nothing": 1}', 400),
        ("GET", "/history/device/oa1/history?attr=temperature&lastN=2", auth, b"", 200),
        ("GET", "/history/device/nobody/history?attr=temperature", auth, b"", 404),
        ("GET", "/tss/v1/devices/oa1/data", auth, b"", 200),
        ("GET", "/tss/v1/devices/oa1/data", auth + [(b"Accept", b"text/csv")], b"", 200),
        ("GET", "/tss/v1/devices/oa1/attrs/temperature/data?limit=5", auth, b"", 200),
        ("GET", "/tss/v1/devices/oa1/data?bogus=1", auth, b"", 400),
        ("GET", "/tss/v1/devices/oa1/data", auth + [(b"Accept", b"image/png")], b"", 406),
        ("GET", "/kafka-ws/v1/ticket", auth, b"", 200), ("GET", "/kafka-ws/v1/ticket", [], b"", 401),
        ("GET", "/kafka-ws/v1/topics/acme.device-data", [], b"", 426),
        ("GET", "/status", [], b"", 200),
        ("DELETE", "/device/oa1", auth, b"", 200),
    ])
    assert operations(spec) - seen <= {("get", "/openapi.json")}, operations(spec) - seen
