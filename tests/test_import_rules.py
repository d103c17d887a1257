"""Which way the imports point, checked by walking every module's imports
(top-level and lazy ones, relative ones resolved); with
tests/core/test_core_is_sans_io.py ("the core loads no Twisted") and
tests/test_config_is_plain_data.py, the tree's layering rules:

* the core owns its records and the store's interface: ``relayrouter/core``
  imports nothing from ``relayrouter.store`` (the store imports the core);
* the router is a library the connectors use, never the reverse:
  ``relayrouter`` imports nothing from ``connectors``;
* connectors import from ``relayrouter`` only its public surface,
  ``relayrouter.api`` (among themselves, ``connectors.common``);
* configuration is plain data: the configuration package
  (``relayrouter/config/``, and the relay's ``relay/config.py``) imports
  nothing from ``relayrouter.transport``.
"""

import functools
from pathlib import Path

from .imports import ROOT, imported, imports_of

PUBLIC_SURFACE = "relayrouter.api"


def _modules(*top: str) -> list[Path]:
    return sorted(p for t in top for p in (ROOT / t).rglob("*.py") if "static" not in p.parts)


@functools.cache
def _imports_of(path: Path) -> set[str]:
    return imports_of(path)


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _breaking(paths: list[Path], forbidden) -> list[str]:
    """``file: name`` for every import of ``paths`` that ``forbidden(name)`` refuses."""
    return [f"{p.relative_to(ROOT)}: {name}" for p in paths for name in sorted(_imports_of(p)) if forbidden(name)]


def _outside_public_surface(name: str) -> bool:
    return (_within(name, "relayrouter") and name != "relayrouter"
            and not _within(name, PUBLIC_SURFACE))


def _config_modules() -> list[Path]:
    return _modules("relayrouter/config") + [ROOT / "relayrouter/relay/config.py"]


def test_the_core_imports_nothing_from_the_store():
    core = _modules("relayrouter/core")
    assert ROOT / "relayrouter/core/records.py" in core
    assert _breaking(core, lambda name: _within(name, "relayrouter.store")) == []


def test_the_router_imports_nothing_from_the_connectors():
    assert _breaking(_modules("relayrouter"), lambda name: _within(name, "connectors")) == []


def test_connectors_import_only_the_public_surface():
    connectors = _modules("connectors")
    assert {p.parent.name for p in connectors} >= {"common", "iot_agent", "mediator_proxy", "pairing",
                                                   "decrypt_search"}
    assert _breaking(connectors, _outside_public_surface) == []


def test_configuration_imports_nothing_from_the_transport():
    config = _config_modules()
    assert {p.name for p in config} >= {"__init__.py", "auth.py", "cluster.py", "check.py", "limits.py", "config.py"}
    assert _breaking(config, lambda name: _within(name, "relayrouter.transport")) == []


def test_the_walk_sees_relative_lazy_and_aliased_imports():
    """The rules would catch what they are about, however it is written."""
    source = ("from ..store.records import StoredEvent\n"
              "def later():\n"
              "    import connectors.common as c\n"
              "    from relayrouter import httpinput, api\n")
    names = imported(source, "relayrouter.core")
    assert "relayrouter.store.records" in names and "connectors.common" in names
    assert _outside_public_surface("relayrouter.httpinput") and not _outside_public_surface("relayrouter.api")
    assert not _outside_public_surface("relayrouter.api.RouterConnection")
    assert _outside_public_surface("relayrouter.apis")
