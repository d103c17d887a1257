"""The OpenAPI documents held to the truth.

* :func:`validate_document`: a valid OpenAPI 3.1 document
  (openapi-spec-validator: the document's own schema, and what a schema
  cannot say, such as every path parameter declared).
* :class:`Spec.check`: a real answer (status, Content-Type, body) to a request
  is one the document lists for that operation, its JSON body valid against
  the documented schema (JSON Schema 2020-12, ``$ref`` resolved in the
  document).  An answer not documented fails.
* :func:`sweep`: each path a site serves (every resource of its tree, and the
  sub-paths the fuzz net reaches below leaves that read ``postpath``) with
  each method: an answer other than 404 or 405 is a served operation, which
  the document must list, and its answer is checked as above.  HEAD is
  checked as the GET it stands for (RFC 9110: the same status, no body).
"""

import json
import re

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as _validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from . import fuzz_net

METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS")
NOT_SERVED = (404, 405)


def validate_document(document: dict) -> None:
    _validate_spec(document)


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


class Answer:
    def __init__(self, status: int, headers: dict, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def media(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"{self.status} {self.media or '-'} {self.body[:300]!r}"


def parse(raw: bytes) -> Answer:
    """A raw HTTP/1.1 answer (as fuzz_net.send returns it), chunked bodies joined."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        joined, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            joined, rest = joined + rest[:size], rest[size + 2:]
        body = joined
    return Answer(status, headers, body)


class Spec:
    """A document, and what it says of an answer."""

    def __init__(self, document: dict) -> None:
        validate_document(document)
        self.document = document
        self.registry = Registry().with_resource(
            "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012))
        self.templates = [(path, re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$"))
                          for path in document["paths"]]

    def template(self, path: str) -> str | None:
        """The documented path ``path`` (no query) is an instance of: an exact one first."""
        path = path.split("?", 1)[0]
        if path in self.document["paths"]:
            return path
        found = [template for template, pattern in self.templates
                 if pattern.match(path) and self._fits(template, path)]
        # The most literal template wins (/bids/deny over /{prefix}/{topic}).
        return max(found, key=lambda t: len(re.sub(r"\{[^/]+\}", "", t)), default=None)

    def _fits(self, template: str, path: str) -> bool:
        """A parameter does not take a segment that is a literal of a documented path at the
        same place under the same parent: /openapi.json/x is not /{prefix}/{topic}."""
        segments = path.split("/")
        for i, part in enumerate(template.split("/")):
            if part.startswith("{") and segments[i] in self._literals(segments[:i]):
                return False
        return True

    def _literals(self, parent: list) -> set:
        depth = len(parent)
        return {p.split("/")[depth] for p in self.document["paths"]
                if p.split("/")[:depth] == parent and len(p.split("/")) > depth}

    def operation(self, method: str, path: str):
        """(template, operation); HEAD is GET's, without the body (RFC 9110, 9.3.2)."""
        template = self.template(path)
        if template is None:
            return None, None
        item = self.document["paths"][template]
        return template, item.get(method.lower(), item.get("get") if method.upper() == "HEAD" else None)

    def check(self, method: str, path: str, answer: Answer) -> None:
        """AssertionError unless ``answer`` is what the document says ``method path`` answers."""
        what = f"{method} {path}"
        template, op = self.operation(method, path)
        assert op is not None, f"{what} answered {answer!r}, but the document lists no such operation"
        code = str(answer.status)
        responses = op["responses"]
        assert code in responses, (f"{what} ({template}) answered {answer!r}; the document lists "
                                   f"{sorted(responses)}")
        content = responses[code].get("content")
        if method.upper() == "HEAD":
            assert not answer.body, f"{what}: a body for HEAD {answer!r}"
            return
        if answer.status == 204 or not content:
            assert answer.status != 204 or not answer.body, f"{what}: 204 with a body {answer!r}"
            return
        if "application/json" in content and (answer.media == "application/json" or len(content) == 1):
            assert answer.media == "application/json", f"{what}: documented JSON, answered {answer!r}"
            try:
                body = answer.json()
            except ValueError:
                raise AssertionError(f"{what}: not JSON: {answer!r}") from None
            pointer = _pointer("paths", template, method.lower(), "responses", code, "content",
                               "application/json", "schema")
            validator = Draft202012Validator({"$ref": "urn:openapi#" + pointer}, registry=self.registry)
            errors = sorted(validator.iter_errors(body), key=str)
            assert not errors, f"{what} ({template}) {code}: the body does not match its schema: " + "; ".join(
                f"{'/'.join(map(str, e.absolute_path)) or 'body'}: {e.message}" for e in errors[:5]) + f"\n{answer!r}"
            return
        media = [m for m in content if m == "*/*" or m == answer.media]
        assert media, f"{what}: answered {answer.media!r}, the document lists {sorted(content)}: {answer!r}"


def request(port: int, method: bytes, path: str, headers: list = (), body: bytes = b"") -> Answer:
    status, raw = fuzz_net.send(port, method, path.encode(), list(headers), body)
    assert status, f"{method!r} {path}: no answer {raw[:200]!r}"
    return parse(raw)


def sweep(spec: Spec, port: int, paths, credentials: list, documented_only: bool = False) -> int:
    """Each path with each method (with ``credentials``); what is served must be documented
    and answer as documented.  The number of requests checked against an operation.
    ``documented_only``: only the documented operations (without a credential, a guard
    answers 401 before it knows whether a method is served)."""
    checked = 0
    for path in sorted(set(paths)):
        for method in METHODS:
            headers = list(credentials)
            body = b""
            if documented_only and spec.operation(method.decode(), path)[1] is None:
                continue
            if method in (b"POST", b"PUT", b"PATCH"):
                headers.append((b"Content-Type", b"application/json"))
                body = b"{}"
            answer = request(port, method, path, headers, body)
            _, op = spec.operation(method.decode(), path)
            if op is None:
                assert answer.status in NOT_SERVED, (
                    f"{method.decode()} {path} is served ({answer!r}) but not in the document")
                continue
            spec.check(method.decode(), path, answer)
            checked += 1
    return checked
