"""What a module imports, read from its source (ast): the walk behind the
tree's layering tests (tests/test_import_rules.py, tests/test_config_is_plain_data.py)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported(source: str, package: str) -> set[str]:
    """Every name ``source`` (a module of ``package``) imports, anywhere in it
    (lazy imports too), relative ones resolved: ``from a.b import c`` gives
    ``a.b`` and ``a.b.c``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1]) if node.level else ""
            base = ".".join(p for p in (base, node.module) if p)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def imports_of(module: Path) -> set[str]:
    """What the file ``module`` (under the repository's root) imports."""
    package = ".".join(module.relative_to(ROOT).with_suffix("").parts[:-1])  # e.g. relayrouter.relay
    return imported(module.read_text(), package)
