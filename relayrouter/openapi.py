"""OpenAPI 3.1 documents of the HTTP sites, served at ``GET /openapi.json``.

Theory of operation
-------------------
Each twisted.web resource class that serves requests says what it serves in
an ``openapi`` attribute: a dict from a sub-path (``""`` for the resource
itself, ``"/{name}"`` for what it reads from ``postpath``) to an OpenAPI
path item.  :func:`site_paths` walks a site's tree the way twisted.web
finds children (``putChild`` children, and the tree a guard wraps, its
``root``) and puts each declaration under the path it is mounted at.  So a
site's document lists what this configuration mounts, and nothing else:
the router without ``[http_bridge]`` has no ``/publish`` in its document.

The document never carries a configured value: names that come from the
configuration (a webhook's, a relay prefix, a mailbox's) are path
parameters, and no realm, key, token or URL is written in it.  It is
served to anyone: it says what the code is, which is public, not how it is
configured.

The tests hold the documents to the truth (tests/openapi_check.py): each is
a valid OpenAPI 3.1 document, every answer of a running process to a
documented operation matches its schema, and a path the site serves that the
document does not list fails.
"""

import json

from twisted.web.resource import IResource, Resource

OPENAPI_VERSION = "3.1.0"
ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string", "description": "a URI or slug naming the problem"},
                   "message": {"type": "string", "description": "what to do about it"}},
}
REASONS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad request",
           401: "No or a wrong credential", 403: "Not allowed", 404: "Not found",
           405: "Method not allowed (the Allow header lists those served)", 406: "Not acceptable",
           409: "Conflict",
           413: "The body is too large", 415: "Unsupported media type", 422: "Missing or invalid parameter",
           426: "Upgrade required", 429: "Too many requests", 500: "Internal error", 502: "Bad gateway",
           503: "Unavailable", 504: "Gateway timeout", 507: "Storage full"}


def json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def response(description: str, schema: dict | None = None, media: str = "application/json",
             headers: dict | None = None) -> dict:
    """A response object; ``schema`` None: no body."""
    answer: dict = {"description": description}
    if schema is not None:
        answer["content"] = {media: {"schema": schema}}
    if headers:
        answer["headers"] = headers
    return answer


def refusals(*codes: int, schema: dict = ERROR) -> dict:
    """``{"<code>": response}`` for each code, with the JSON error body ``schema``."""
    return {str(code): response(REASONS[code], schema) for code in codes}


def path_param(name: str, description: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def query_param(name: str, description: str, required: bool = False, schema: dict | None = None) -> dict:
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def operation(summary: str, responses: dict, *, description: str | None = None, parameters: list | None = None,
              body: dict | None = None, security: list | None = None, tags: list | None = None) -> dict:
    """An operation object; ``body``: a request body object, ``security``: scheme names, any one of
    which will do (``{}`` among them: none needed)."""
    op: dict = {"summary": summary, "responses": responses}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = body
    if security is not None:
        op["security"] = [name if isinstance(name, dict) else {name: []} for name in security]
    if tags:
        op["tags"] = tags
    return op


def request_body(schema: dict, media: str = "application/json", required: bool = True,
                 description: str | None = None) -> dict:
    body: dict = {"required": required, "content": {media: {"schema": schema}}}
    if description:
        body["description"] = description
    return body


def obj(properties: dict, required: tuple = (), extra: bool = True, description: str | None = None) -> dict:
    """A JSON object schema (``extra``: other properties allowed)."""
    schema: dict = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if not extra:
        schema["additionalProperties"] = False
    if description:
        schema["description"] = description
    return schema


# ------------------------------------------------------------ the site's paths


def declarations(resource) -> dict:
    """What ``resource`` serves (its ``openapi``: a dict, or a method returning one)."""
    declared = getattr(resource, "openapi", None)
    if callable(declared):
        declared = declared()
    return declared or {}


def mounted(root) -> list[tuple[str, object]]:
    """(path, resource) of every resource under ``root``, as twisted.web finds them."""
    found: list = []

    def walk(resource, path: str) -> None:
        found.append((path or "/", resource))
        wrapped = getattr(resource, "root", None)  # a guard handing its requests to the tree it wraps
        if IResource.providedBy(wrapped):
            walk(wrapped, path)
        for name, child in sorted(getattr(resource, "children", {}).items()):
            walk(child, f"{path}/{name.decode('latin-1')}")

    walk(root, "")
    return found


def site_paths(root) -> dict:
    """The OpenAPI ``paths`` of the tree under ``root``."""
    paths: dict = {}
    for path, resource in mounted(root):
        base = "" if path == "/" else path
        segment = getattr(resource, "openapi_segment", None)  # a configured name: a parameter
        if segment is not None:
            base = base.rsplit("/", 1)[0] + "/" + segment
        for sub, item in declarations(resource).items():
            paths.setdefault(base + sub or "/", {}).update(item)
    return dict(sorted(paths.items()))


def document(title: str, version: str, description: str, paths: dict, security_schemes: dict | None = None,
             schemas: dict | None = None) -> dict:
    components: dict = {"schemas": {"Error": ERROR_SCHEMA, **(schemas or {})}}
    if security_schemes:
        components["securitySchemes"] = security_schemes
    return {"openapi": OPENAPI_VERSION,
            "info": {"title": title, "version": version, "description": description,
                     "license": {"name": "MIT", "identifier": "MIT"}},
            "paths": paths, "components": components}


OPENAPI_PATH = {"": {"get": operation(
    "This document", {"200": response("The OpenAPI 3.1 document of what this site serves",
                                      {"type": "object", "required": ["openapi", "info", "paths"]})},
    description="Open to anyone: it describes the code, not the configuration (no configured name, "
                "address or secret is in it).", security=[], tags=["meta"])}}


class OpenApiResource(Resource):
    """``GET /openapi.json``: the document ``build()`` returns, built at the first request
    (the tree is complete by then) and kept."""

    isLeaf = True
    openapi = OPENAPI_PATH

    def __init__(self, build) -> None:
        super().__init__()
        self._build = build
        self._body: bytes | None = None

    def document(self) -> dict:
        return self._build()

    def render_GET(self, request) -> bytes:  # noqa: N802 - twisted.web's name
        if any(request.postpath):
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"application/json")
            return json.dumps({"error": getattr(request, "not_found", "not_found"),
                               "message": "the document is /openapi.json"}).encode()
        if self._body is None:
            self._body = json.dumps(self._build(), indent=1, sort_keys=False).encode() + b"\n"
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-cache")
        return self._body


def mount(root, title: str, description: str, security_schemes: dict | None = None,
          schemas: dict | None = None, guarded_by: str | None = None) -> OpenApiResource:
    """Put ``/openapi.json`` under ``root``: the document of the whole tree under it (a
    connector's, versioned as relayrouter).  ``guarded_by``: the security scheme of a guard
    in front of ``root`` (the document is then behind it too, and says so)."""
    from . import __version__

    resource = OpenApiResource(lambda: document(title, __version__, description, site_paths(root),
                                                security_schemes, schemas))
    if guarded_by is not None:
        get = OPENAPI_PATH[""]["get"]
        resource.openapi = {"": {"get": {
            **get, "description": "Behind the same credential as every other path of this site.",
            "security": [{guarded_by: []}], "responses": {**get["responses"], **refusals(401)}}}}
    root.putChild(b"openapi.json", resource)
    return resource
