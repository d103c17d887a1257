"""``{openapi} module:function``: an HTTP API's operations, read from its OpenAPI document.

``function()`` returns the OpenAPI 3.1 document (the one the component serves
at ``GET /openapi.json``, with every optional part on).  The directive renders
a table of its operations (method and path, what it does, the credential, the
statuses it answers) and a link to the document itself, which the build
writes as ``openapi/<file>`` (option ``:file:``) beside the pages: the
reference cannot drift from what the code serves (the tests hold the served
documents to the running processes).
"""

import json
from importlib import import_module
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


def load(spec: str) -> dict:
    module, _, name = spec.partition(":")
    return getattr(import_module(module), name)()


def rows(document: dict) -> list[tuple[str, str, str, str]]:
    """(method and path, summary, credential, statuses) of every operation, in path order."""
    schemes = document.get("components", {}).get("securitySchemes", {})
    found = []
    for path, item in document["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            found.append((f"{method.upper()} {path}", op.get("summary", ""), _credential(op, schemes),
                          ", ".join(sorted(op["responses"]))))
    return found


def _credential(op: dict, schemes: dict) -> str:
    names = []
    for requirement in op.get("security", []):
        names.append(" + ".join(requirement) if requirement else "none")
    return " or ".join(names) if names else "none"


class OpenApi(SphinxDirective):
    required_arguments = 1
    option_spec = {"file": directives.unchanged_required}

    def run(self):
        document = load(self.arguments[0])
        file_name = self.options.get("file") or self.arguments[0].rpartition(":")[2] + ".json"
        if not hasattr(self.env, "openapi_specs"):
            self.env.openapi_specs = {}
        self.env.openapi_specs[file_name] = self.arguments[0]  # kept with the environment: written at the end
        link = "../" * self.env.docname.count("/") + "openapi/" + file_name
        paragraph = nodes.paragraph()
        paragraph += nodes.Text("The OpenAPI 3.1 document: ")
        paragraph += nodes.reference(file_name, file_name, refuri=link)
        paragraph += nodes.Text(" (what GET /openapi.json serves, with every optional part on).")
        header = ("operation", "what", "credential", "answers")
        return [paragraph, _table(header, rows(document), (30, 40, 12, 18))]


def _table(header: tuple, body: list, widths: tuple):
    """A docutils table (built as nodes: the page may be Markdown or reStructuredText)."""
    group = nodes.tgroup(cols=len(header))
    for width in widths:
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += _row(header, literal_first=False)
    group += head
    rows_node = nodes.tbody()
    for cells in body:
        rows_node += _row(cells, literal_first=True)
    group += rows_node
    table = nodes.table()
    table += group
    return table


def _row(cells, literal_first: bool):
    row = nodes.row()
    for i, text in enumerate(cells):
        entry = nodes.entry()
        paragraph = nodes.paragraph()
        paragraph += nodes.literal(text, text) if literal_first and i == 0 else nodes.Text(text)
        entry += paragraph
        row += entry
    return row


def write_documents(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    folder = Path(app.outdir) / "openapi"
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, spec in getattr(app.env, "openapi_specs", {}).items():
        (folder / file_name).write_text(json.dumps(load(spec), indent=1) + "\n")


def setup(app):
    app.add_directive("openapi", OpenApi)
    app.connect("build-finished", write_documents)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
