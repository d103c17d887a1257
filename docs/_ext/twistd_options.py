"""``{twistd-options} <plugin>``: a twistd plugin's options, read from its Options class.

The table is what ``twistd <plugin> --help`` prints, so the reference cannot
drift from the code: each option, its environment variable where the plugin
has one, and its description.
"""

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins


def plugin_options(tapname: str):
    for maker in getPlugins(IServiceMaker):
        if maker.tapname == tapname:
            return maker.options()
    raise LookupError(f"no twistd plugin named {tapname!r}")


def rows(options) -> list[tuple[str, str]]:
    """(option, description) for every option, in --help's order."""
    flags = {long: short for long, short, _ in getattr(options, "optFlags", [])}
    found = []
    for long in sorted(set(options.longOpt)):
        name = long.rstrip("=")
        if name in ("help", "version"):
            continue
        short = options.synonyms and [s for s, l in options.synonyms.items() if l == name and len(s) == 1]
        spelled = f"--{name}" + ("" if name in flags else "=VALUE")
        if short:
            spelled = f"-{short[0]}, {spelled}"
        found.append((spelled, " ".join((options.docs.get(name) or "").split())))
    return found


class TwistdOptions(SphinxDirective):
    required_arguments = 1

    def run(self):
        options = plugin_options(self.arguments[0])
        # The page is MyST Markdown, and so is what a directive's content is parsed as.
        lines = ["| option | meaning |", "|---|---|"]
        for spelled, doc in rows(options):
            lines.append(f"| `{spelled}` | {_escape(doc)} |")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=self.arguments[0]), self.content_offset, container)
        return container.children


def _escape(text: str) -> str:
    for char in ("\\", "*", "`", "|", "_", "[", "<"):
        text = text.replace(char, "\\" + char)
    return text


def setup(app):
    app.add_directive("twistd-options", TwistdOptions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
