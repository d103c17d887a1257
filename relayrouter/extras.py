"""Optional features and the extra that installs each.

A plugin or a configured feature whose extra is missing stops the start
with one line naming the extra and the command that installs it, e.g.
``the iot-agent needs the 'iot' extra: pip install 'relayrouter[iot]'``,
and exit status 1 (``SystemExit``; no traceback).  ``relayrouter[all]``
installs every extra below.
"""

import importlib.util

# extra -> the top-level modules it installs (what the code imports)
EXTRAS = {
    "iot": ("paho",),
    "decrypt-search": ("jsonschema",),
    "cluster": ("nats", "nkeys"),
    "postgresql": ("psycopg",),
    "didcomm": ("aries_askar",),
}


def is_installed(extra: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in EXTRAS[extra])


def message(who: str, extra: str) -> str:
    return f"{who} needs the '{extra}' extra: pip install 'relayrouter[{extra}]'"


def require(who: str, extra: str) -> None:
    """Exit with one line unless ``extra`` is installed; ``who`` is what needs it."""
    if not is_installed(extra):
        raise SystemExit(message(who, extra))
