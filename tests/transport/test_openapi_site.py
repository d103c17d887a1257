"""relayrouter.openapi in memory: a site's paths are what its tree mounts, where it
mounts them; a configured segment becomes a parameter; a guard's tree is walked;
the document is served as JSON, a path below it is a JSON 404."""

import json

from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from relayrouter import openapi
from tests.openapi_check import validate_document

ITEM = {"get": openapi.operation("x", {"200": openapi.response("ok", openapi.obj({}))}, security=[])}


class Leaf(Resource):
    isLeaf = True
    openapi = {"": ITEM, "/{name}": {**ITEM, "parameters": [openapi.path_param("name", "a name")]}}


class Named(Resource):
    openapi = {"/{topic}": {**ITEM, "parameters": [openapi.path_param("prefix", "p"),
                                                   openapi.path_param("topic", "t")]}}
    openapi_segment = "{prefix}"


class Guard(Resource):
    def __init__(self, root) -> None:
        super().__init__()
        self.root = root


def tree():
    inner = Resource()
    inner.putChild(b"leaf", Leaf())
    deeper = Resource()
    deeper.putChild(b"leaf", Leaf())
    inner.putChild(b"a", deeper)
    inner.putChild(b"session", Named())
    inner.putChild(b"plain", Resource())  # a container serving nothing: not in the document
    return inner


def test_paths_are_where_the_tree_mounts_them():
    paths = openapi.site_paths(tree())
    assert sorted(paths) == ["/a/leaf", "/a/leaf/{name}", "/leaf", "/leaf/{name}", "/{prefix}/{topic}"]


def test_a_guards_tree_is_walked_and_the_document_says_it_is_guarded():
    inner = tree()
    resource = openapi.mount(inner, "t", "d", {"token": {"type": "http", "scheme": "bearer"}}, guarded_by="token")
    document = openapi.document("t", "1", "d", openapi.site_paths(Guard(inner)),
                                {"token": {"type": "http", "scheme": "bearer"}})
    validate_document(document)
    get = document["paths"]["/openapi.json"]["get"]
    assert get["security"] == [{"token": []}] and "401" in get["responses"]
    assert resource.document()["paths"] == document["paths"]


def test_the_document_is_json_and_nothing_is_below_it():
    inner = tree()
    resource = openapi.mount(inner, "t", "d")
    request = DummyRequest([])
    body = json.loads(resource.render_GET(request))
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]
    validate_document(body)
    assert body["info"]["title"] == "t" and "/openapi.json" in body["paths"]
    below = DummyRequest([b"x"])
    refused = json.loads(resource.render_GET(below))
    assert below.responseCode == 404 and refused["error"] == "not_found"
