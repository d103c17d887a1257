"""Sphinx configuration of the relayrouter documentation (MyST Markdown pages)."""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

from relayrouter import __version__  # noqa: E402

project = "relayrouter"
author = "The relayrouter authors"
copyright = "2026, The relayrouter authors"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = ["myst_parser", "sphinx.ext.graphviz", "twistd_options", "config_keys", "wamp_uris",
              "openapi_reference"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Every [text](page.md#heading) link must reach a heading: MyST makes anchors
# for headings down to level 4 and warns (an error with -W) on a missing one.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence", "deflist"]
nitpicky = True

graphviz_output_format = "svg"

html_theme = "furo"
html_title = f"relayrouter {release}"
html_static_path = []

# linkcheck: the pages link to other sites only as references; CI checks the
# internal links (-W with MyST's anchors) without the network.
linkcheck_ignore = [r"https?://"]
