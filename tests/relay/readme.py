"""The README's relay section, read by the tests that hold it to its word:
its configuration (the compatibility suite runs against it)."""

import re
import tomllib
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "docs" / "reference" / "relay.md"  # moved from README.md


def section() -> str:
    return README.read_text()


def blocks(language: str = "") -> list[str]:
    """The fenced code blocks of the relay section, of one language (``""``: unmarked)."""
    return [m.group(2) for m in re.finditer(r"```(\w*)\n(.*?)```", section(), re.S) if m.group(1) == language]


def relay_config() -> dict:
    """The relay configuration the README shows (its first TOML block), as a dict."""
    return tomllib.loads(blocks("toml")[0])

