"""The documentation's text, for the tests that hold it to its word: README.md and the pages
of docs/ (where README's reference sections moved)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def page(relative: str) -> str:
    """A page of docs/, e.g. ``reference/relay.md``."""
    return (DOCS / relative).read_text()


def everything() -> str:
    """README.md and every page of docs/, one after the other."""
    pages = [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)]
    return "\n".join(p.read_text() for p in pages)
