"""``{wamp-uris}``: every procedure the router registers and every topic it publishes.

The procedures are read from running code: a router with every feature that
adds procedures (:data:`EVERY_FEATURE`: meta API, history, mailboxes, deny
list, tenants, pairs, console, reload, relay, cluster) is built and each
realm's procedure registry listed. What each one means is written in the
directive's body, a Markdown table ``| URI | kind | what |`` whose first
cell names one or more URIs (``wamp.session.count``, ``list``: a later name
is relative to the first one's parent); a row of kind ``topic(s)`` names
topics the router publishes, ``{name}`` standing for a part that varies.

The build fails (a warning, an error under ``-W``) when the router registers
a procedure the body does not describe, or the body describes a procedure it
does not register. The topics are held to the running router by
tests/docs/test_wamp_reference.py, which also calls every procedure listed
here over WAMP.
"""

import os
import re
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
logger = logging.getLogger(__name__)

SECRET_ENV = "WAMP_REFERENCE_SECRET"
# A router with every feature that adds router procedures (state_dir is filled in).
EVERY_FEATURE = f"""
[revocation]
admin_roles = ["admin"]

[tenants]
admin_roles = ["admin"]
management_realms = ["realm1"]

[[realm_templates]]
name = "tenant"

[[realms]]
name = "realm1"
[realms.auth.anonymous]
role = "anonymous"
[realms.auth.jwt]
algorithms = ["HS256"]
authrole_claim = "role"
keys = [{{ secret_env = "{SECRET_ENV}" }}]
[[realms.history]]
uri = "com.example."
match = "prefix"
[[realms.mailboxes]]
uri = "com.example.inbox.{{authid}}"
token_secret_env = "{SECRET_ENV}"
[realms.pairing]
[[realms.roles]]                # the relay's realm: anonymous sessions only with rules of their own
name = "anonymous"
rules = [{{ uri = "", match = "prefix", allow = ["call", "register", "publish", "subscribe"] }}]

[relay]
realm = "realm1"

[cluster]
nats = ["nats://127.0.0.1:4222"]
"""


def every_feature(state_dir: str, cluster: bool = True) -> dict:
    """:data:`EVERY_FEATURE` as the TOML file would give it (``cluster``: with its [cluster] table)."""
    os.environ.setdefault(SECRET_ENV, "wamp-reference-" + "0" * 40)
    data = tomllib.loads(EVERY_FEATURE)
    data["state_dir"] = state_dir
    if not cluster:
        del data["cluster"]
    return data


def router_procedures() -> dict[str, list[str]]:
    """URI -> the realms that have it, in a router built (not started) with every feature."""
    sys.path.insert(0, str(ROOT))
    from twisted.internet import reactor

    from relayrouter import config as cfg
    from relayrouter.service import RouterService

    found: dict[str, list[str]] = {}
    # Two routers: every feature alone, and clustered without history and mailboxes (a clustered
    # node keeps them in PostgreSQL, which building the page must not need).
    for clustered in (False, True):
        with tempfile.TemporaryDirectory() as state:
            data = every_feature(state, cluster=clustered)
            if clustered:
                for realm in data["realms"]:
                    realm.pop("history"), realm.pop("mailboxes")
            config = cfg.parse(data).with_defaults()
            service = RouterService(config, reactor, reload_config=lambda: config)
            try:
                for name, realm in service.router.realms.items():
                    for uri in realm.procedures.uris():
                        if name not in found.setdefault(uri, []):
                            found[uri].append(name)
            finally:
                service.durable.stop()
    return found


def connector_uris() -> dict[tuple[str, str], str]:
    """(kind, URI) -> connector, for what the connectors register and publish under names of their own
    (read from their code: the names they register, the topics they publish on). What they publish on
    URIs the user configures (decrypt-search's [[topics]], the mediator proxy's mailboxes) is not here."""
    sys.path.insert(0, str(ROOT))
    from connectors.decrypt_search import service as search
    from connectors.iot_agent import ingest, service as iot
    from relayrouter.api import event_topic, rest_procedure

    found = {("procedure", f"iot_agent.{name}"): "iot-agent" for name in iot.PROCEDURES}
    found.update({("topic", ingest.DEVICE_DATA): "iot-agent", ("topic", iot.DEVICE_EVENTS): "iot-agent"})
    found.update({("procedure", "{procedures}." + name): "decrypt-search" for name in search.PROCEDURES})
    found[("procedure", rest_procedure("{subscriber}", "{box}", "{peer_class}"))] = "pairing-agent"
    found[("topic", event_topic("{subscriber}", "{box}", "{name}"))] = "pairing-agent"
    return found


# ------------------------------------------------------------------ what the page says


@dataclass(frozen=True)
class Row:
    uris: tuple[str, ...]
    kind: str  # "procedure" or "topic"
    what: str
    line: int


NAME = re.compile(r"`([\w.{}-]+)`")
CELL = re.compile(r"(?<!\\)\|")


def rows(lines: list[str], first_line: int = 0) -> list[Row]:
    """The table rows of a directive's body (the header and the rule skipped)."""
    found = []
    for number, line in enumerate(lines, first_line):
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| URI"):
            continue
        cells = [c.strip() for c in CELL.split(line.strip().strip("|"))]
        names = NAME.findall(cells[0])
        uris = [names[0]] + [f"{names[0].rpartition('.')[0]}.{n}" for n in names[1:]]
        kind = "topic" if cells[1].startswith("topic") else "procedure"
        found.append(Row(tuple(uris), kind, cells[-1], number))
    return found


def problems(described: list[Row], registered: dict) -> list[str]:
    documented = {uri for row in described if row.kind == "procedure" for uri in row.uris}
    found = [f"procedure {uri} is registered by the router (realms: {', '.join(realms)}) but not described"
             for uri, realms in sorted(registered.items()) if uri not in documented]
    found += [f"line {row.line}: procedure {uri} is described but the router registers none"
              for row in described if row.kind == "procedure" for uri in row.uris if uri not in registered]
    return found


def connector_problems(described: list[Row]) -> list[str]:
    documented = {(row.kind, uri) for row in described for uri in row.uris}
    code = connector_uris()
    found = [f"{kind} {uri} of the {who} is in its code but not described" for (kind, uri), who in sorted(code.items())
             if (kind, uri) not in documented]
    found += [f"line {row.line}: {row.kind} {uri} is described but no connector's code has it"
              for row in described for uri in row.uris if (row.kind, uri) not in code]
    return found


def page_rows(which: str = "router") -> list[Row]:
    """The rows of a ``{wamp-uris}`` block of docs/reference/wamp.md (for the tests)."""
    text = (ROOT / "docs" / "reference" / "wamp.md").read_text()
    body = text.split(f"```{{wamp-uris}} {which}\n", 1)[1].split("\n```", 1)[0]
    return rows(body.splitlines())


def topic_pattern(uri: str) -> re.Pattern:
    """A documented topic as a pattern: ``{name}`` stands for one or more URI components."""
    parts = [re.escape(p) if i % 2 == 0 else r"[^#\s]+" for i, p in enumerate(re.split(r"\{\w+\}", uri))]
    return re.compile("^" + "".join(parts) + "$")


# ------------------------------------------------------------------ the directive


class WampUris(SphinxDirective):
    """``{wamp-uris} router`` or ``{wamp-uris} connectors``."""

    has_content = True
    required_arguments = 1

    def run(self):
        described = rows(list(self.content), self.content_offset + 1)
        if self.arguments[0] == "connectors":
            for problem in connector_problems(described):
                logger.warning(f"wamp-uris: {problem}", location=self.get_location())
            lines = ["| URI | kind | connector: what |", "|---|---|---|"]
            code = connector_uris()
            lines += [f"| `{uri}` | {row.kind} | {code.get((row.kind, uri), '')}: {row.what} |"
                      for row in described for uri in row.uris]
            return self._parse(lines)
        registered = router_procedures()
        for problem in problems(described, registered):
            logger.warning(f"wamp-uris: {problem}", location=self.get_location())
        lines = ["| URI | kind | what |", "|---|---|---|"]
        meaning = {uri: row.what for row in described for uri in row.uris}
        for uri in sorted(registered):
            lines.append(f"| `{uri}` | procedure | {meaning.get(uri, '')} |")
        for row in described:
            if row.kind == "topic":
                lines += [f"| `{uri}` | topic | {row.what} |" for uri in row.uris]
        return self._parse(lines)

    def _parse(self, lines: list[str]) -> list:
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="wamp-uris"), self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("wamp-uris", WampUris)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
