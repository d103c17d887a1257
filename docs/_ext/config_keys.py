"""``{config-keys} <component>``: every key of a configuration file, read from the code that checks it.

The keys, their types and defaults come from the checks themselves
(:func:`relayrouter.config.check.recording`): every TOML example of these
pages is passed through the component's checker (as tests/docs does), and
what the checks were asked -- the keys each table accepts, the type and
default each key is read with -- is the table this directive prints.

What each key means stays hand-written, in the ``| key | default | meaning |``
tables of the reference pages, next to its feature. The build fails (a
warning, an error under ``-W``) when

* a key the checker accepts is described in none of those tables,
* a table names a key the checker does not accept,
* a table's check in the code was reached by no example (a new section
  needs an example, so that its keys are known),
* a page's default for a key is a plain value (`` `drop-oldest` ``,
  ``10000``, ``30 s``) other than the one the checker reads the key with.
"""

import ast
import json
import os
import re
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
logger = logging.getLogger(__name__)

# Where each component's file is checked: (module, names of its key checks, the function that
# calls them for another), and the reference pages whose tables describe its keys.
COMPONENTS = {
    "router": {
        "modules": ["relayrouter/config/router.py", "relayrouter/config/auth.py", "relayrouter/config/durable.py",
                    "relayrouter/config/tenants.py", "relayrouter/config/ops.py", "relayrouter/config/bridge.py",
                    "relayrouter/config/cluster.py", "relayrouter/config/pairs.py", "relayrouter/relay/config.py"],
        "checks": {"_only"},
        "pages": ["router", "security", "durable-storage", "tenants", "relay", "pairs", "operations", "cluster"],
    },
    "decrypt-search": {
        "modules": ["connectors/decrypt_search/config.py"],
        "checks": {"_known", "_table"},
        "pages": ["decrypt-search"],
    },
}
# A realm template is a realm: its keys are described with the realms' (docs/reference/tenants.md).
ALIASES = {"realm_templates": "realms"}
# Defaults the code computes from other values.
COMPUTED = {("cluster", "node"): "`<hostname>-<pid>`", ("http_bridge.keys[]", "authid"): "`http-bridge:<key>`"}

TYPE_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}


@dataclass(frozen=True)
class Key:
    table: str  # generic: realms[].limits
    name: str
    kind: str
    default: str
    environment: str

    @property
    def path(self) -> str:
        return f"{self.table}.{self.name}" if self.table else self.name


# ------------------------------------------------------------------ what the code asks


def toml_examples(component: str) -> list[tuple[str, str]]:
    """(where, source) of every TOML block of README.md and docs/ that configures ``component``."""
    sys.path.insert(0, str(ROOT))
    from tests.docs.sandbox import file_name, is_decrypt_search
    from tests.docs.tutorial import FENCE

    found = []
    for page in [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)]:
        for match in FENCE.finditer(page.read_text()):
            if match["info"].strip() != "toml":
                continue
            source = match["body"]
            is_search = is_decrypt_search(file_name(source))
            if is_search == (component == "decrypt-search"):
                found.append((str(page.relative_to(ROOT)), source))
    return found


_RECORDED: dict = {}


def recorded(component: str):
    """What the checks were asked while every example of ``component`` was checked (once per build)."""
    if component in _RECORDED:
        return _RECORDED[component]
    from relayrouter.config import check as configcheck
    from tests.docs.sandbox import check_config, make_sandbox

    environ, cwd, path = dict(os.environ), os.getcwd(), list(sys.path)
    with tempfile.TemporaryDirectory() as home:
        sandbox = make_sandbox(Path(home))
        os.chdir(sandbox)
        try:
            first_given = {}  # (path, name) -> the first example that gives it
            with configcheck.recording() as recorder:
                for where, source in toml_examples(component):
                    try:
                        check_config(source, sandbox)
                    except Exception as e:  # tests/docs/test_examples.py reports it; here it only hides keys
                        logger.warning(f"config-keys: an example of {where} does not check: {e}")
                    for given in recorder.given:
                        first_given.setdefault(given, source)
            recorder.required = set()
            for (table, name), asked in recorder.keys.items():
                if any(default is None for _, default in asked) and (table, name) in first_given:
                    # Read with no default: required, or only read when given? Check the example without it.
                    with configcheck.recording(drop=(table, name)):
                        try:
                            check_config(first_given[(table, name)], sandbox)
                        except Exception as e:  # the router's ConfigError or a connector's
                            if str(e).endswith(f"{name}: required"):
                                recorder.required.add((table, name))
        finally:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(environ)
            sys.path[:] = path
    _RECORDED[component] = recorder
    return recorder


def check_sites(component: str) -> list[tuple[str, int]]:
    """(file, line) of every table check in the component's modules (a call of one of its checks)."""
    spec = COMPONENTS[component]
    sites = []
    for module in spec["modules"]:
        path = ROOT / module
        tree = ast.parse(path.read_text())
        found = len(sites)
        for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            if function.name in spec["checks"]:
                continue  # a check calling another
            for node in ast.walk(function):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) in spec["checks"]:
                    sites.append((str(path), node.lineno))
        if len(sites) == found:  # a module moved or renamed: its tables would go unchecked
            raise ValueError(f"{module} holds none of {component}'s table checks: is it the reader?")
    return sites


def keys_of(component: str) -> list[Key]:
    from relayrouter.config.check import OPTIONAL

    recorder = recorded(component)
    keys = []
    for table, names in recorder.tables.items():
        for name in names:
            path = f"{table}.{name}" if table else name
            if path in recorder.tables:
                kind, default = "table", "—"
            elif path + "[]" in recorder.tables:
                kind, default = "array of tables", "—"
            else:
                asked = recorder.keys.get((table, name), [])
                kinds = asked[0][0] if asked else tuple(recorder.values.get((table, name), ()))
                names = [TYPE_NAMES.get(k, k.__name__) for k in kinds if not (k is int and float in kinds)]
                kind = " or ".join(dict.fromkeys(names)) or "—"
                always = (table, name) in recorder.required
                defaults = [_default(d, always, OPTIONAL) for _, d in asked] or ["—"]
                default = COMPUTED.get((table, name)) or " or ".join(dict.fromkeys(defaults))
            environment = "the variable it names" if name.endswith("_env") else ""
            keys.append(Key(table, name, kind, default, environment))
    return sorted(keys, key=lambda k: _order(k.path))


def _default(value, always: bool, optional) -> str:
    if value is None:
        return "required" if always else "none"
    if value is optional:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        value = value.replace(socket.gethostname(), "<hostname>")
        return f'`"{value}"`'
    if isinstance(value, list):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value!r}`"


def _order(path: str) -> tuple:
    return tuple(part for part in path.replace("[]", "").split("."))


# ------------------------------------------------------------------ what the pages say


KEY_TABLE = re.compile(r"^\| key(?: of `\[(?P<prefix>[\w.]+)\]`)? \|")
NAME = re.compile(r"`([\w.\[\]*]+)`")


def plain(path: str) -> str:
    """``realms[].auth.jwt`` -> ``realms.auth.jwt``; an alias to what it stands for."""
    path = path.replace("[]", "")
    head, _, rest = path.partition(".")
    return f"{ALIASES.get(head, head)}.{rest}" if rest else ALIASES.get(head, head)


def described(component: str) -> dict[str, tuple[str, int, str]]:
    """plain key path -> (page, line, meaning) from the reference pages' key tables."""
    return {path: (page, line, meaning) for path, (page, line, meaning, _) in described_rows(component).items()}


def described_rows(component: str) -> dict[str, tuple[str, int, str, str | None]]:
    """plain key path -> (page, line, meaning, the default the page gives it or None)."""
    tops = {plain(name) for name in recorded(component).tables.get("", ())} | set(ALIASES)
    code = {plain(k.path) for k in keys_of(component)}
    found = {}
    for page in COMPONENTS[component]["pages"]:
        lines = (DOCS / "reference" / f"{page}.md").read_text().splitlines()
        in_table, table_prefix, base = False, None, ""
        for number, line in enumerate(lines, 1):
            header = KEY_TABLE.match(line)
            if header:
                in_table, table_prefix = True, header["prefix"]
                base = table_prefix or ""
                continue
            if not in_table or line.startswith("|---"):
                continue
            if not line.startswith("|"):
                in_table = False
                continue
            cells = [c.strip() for c in CELL.split(line.strip().strip("|"))]
            names = NAME.findall(cells[0])
            defaults = [None] * len(names)
            if len(cells) >= 3:  # | key | default | meaning |: "a / b" defaults go with "a / b" keys
                given = [d.strip() for d in cells[1].split(" / ")]
                defaults = given if len(given) == len(names) else [cells[1]] * len(names)
            for name, default in zip(names, defaults):
                if table_prefix:
                    name = f"{table_prefix}.{name}"
                elif base and (plain(f"{base}.{name}") in code or re.split(r"[.\[]", name)[0] not in tops):
                    name = f"{base}.{name}"
                found[plain(name)] = (page, number, cells[-1], default)
                base = name.rpartition(".")[0]
    return found


CELL = re.compile(r"(?<!\\)\|")


SIMPLE_DEFAULT = re.compile(r"^(?:`(?P<literal>[^`]+)`|(?P<number>-?\d+(?:\.\d+)?)(?: s)?)$")


def wrong_defaults(component: str) -> list[str]:
    """A page's default that is a plain value (`` `drop-oldest` ``, ``10000``, ``30 s``) and not what the
    checker reads the key with; other defaults (``16 MiB``, prose) are the page's to explain."""
    recorder = recorded(component)
    asked = {plain(f"{t}.{n}" if t else n): [d for _, d in a] for (t, n), a in recorder.keys.items()}
    found = []
    for path, (page, line, _, cell) in sorted(described_rows(component).items()):
        match = SIMPLE_DEFAULT.match(cell or "")
        if match is None or path not in asked or (component, path) in COMPUTED_PLAIN:
            continue
        if not any(_same(match, d) for d in asked[path]):
            found.append(f"reference/{page}.md:{line}: {path}: the page's default {cell} is not the checker's "
                         f"({' or '.join(repr(d) for d in asked[path])})")
    return found


# Keys whose default the code computes (COMPUTED), by their plain path.
COMPUTED_PLAIN = {("router", "cluster.node"), ("router", "http_bridge.keys.authid")}


def _same(match, default) -> bool:
    if match["number"] is not None:
        return isinstance(default, (int, float)) and not isinstance(default, bool) \
            and float(default) == float(match["number"])
    literal = match["literal"]
    if isinstance(default, bool):
        return literal == str(default).lower()
    if isinstance(default, (int, float)):
        try:
            return float(literal) == float(default)
        except ValueError:
            return False
    if isinstance(default, list):
        try:
            return json.loads(literal) == default
        except ValueError:
            return False
    return isinstance(default, str) and literal.strip('"') == default


# ------------------------------------------------------------------ the directive


def problems(component: str) -> list[str]:
    keys = keys_of(component)
    meanings = described(component)
    code = {plain(k.path) for k in keys}
    containers = {plain(k.path) for k in keys if k.kind in ("table", "array of tables")}
    leaves = code - containers
    found = []
    for path in sorted(leaves - set(meanings)):
        found.append(f"{component}: key {path} is accepted by the code but described in no key table of "
                     f"{', '.join(COMPONENTS[component]['pages'])}")
    for path, (page, line, _) in sorted(meanings.items()):
        if path.endswith(".*"):
            head = path[:-2]
            if head not in code:
                found.append(f"reference/{page}.md:{line}: {path}: no table {head} in the code")
        elif path not in code:
            found.append(f"reference/{page}.md:{line}: key {path} is not accepted by the code")
    found += wrong_defaults(component)
    reached = recorded(component).sites
    for file, line in check_sites(component):
        if (file, line) not in reached:
            found.append(f"{Path(file).relative_to(ROOT)}:{line}: this table's keys were checked for no example "
                         "of the pages: add one, so that the reference knows its keys")
    return found


class ConfigKeys(SphinxDirective):
    required_arguments = 1

    def run(self):
        component = self.arguments[0]
        if component not in COMPONENTS:
            raise self.error(f"config-keys: no component {component!r} ({', '.join(COMPONENTS)})")
        for problem in problems(component):
            logger.warning(f"config-keys: {problem}", location=self.get_location())
        meanings = described(component)
        lines = ["| key | type | default | environment | meaning |", "|---|---|---|---|---|"]
        for key in keys_of(component):
            if key.table.split("[")[0].split(".")[0] in ALIASES:
                continue  # a realm template's keys are a realm's: one row says so
            page, _, meaning = meanings.get(plain(key.path), (None, 0, ""))
            if key.table == "" and key.name in ALIASES:
                meaning = f"each one a template: its keys are those of `{ALIASES[key.name]}[]` below"
            where = f" ({{doc}}`{page}`)" if page else ""
            cells = [f"`{key.path}`", key.kind, key.default, key.environment, meaning + where]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=f"config-keys {component}"), self.content_offset, container)
        return container.children


def _cell(markdown: str) -> str:
    """A table cell's Markdown: a ``|`` not already escaped is escaped, code spans included."""
    return re.sub(r"(?<!\\)\|", r"\\|", markdown)


def setup(app):
    app.add_directive("config-keys", ConfigKeys)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
