"""A package whose parts load on first use (PEP 562), so that importing one
part does not import them all: ``relayrouter.config`` and ``relayrouter.service``."""

import importlib
import sys


def lazy_package(name: str, parts: frozenset, main: str):
    """``__getattr__`` and ``__dir__`` for the package ``name``: one of its ``parts``
    is imported when first asked for, and every other name is its ``main`` part's."""

    def __getattr__(attr: str):  # noqa: N807 - the module hook's name
        if attr in parts:
            return importlib.import_module(f"{name}.{attr}")
        if attr.startswith("__"):
            raise AttributeError(attr)
        try:
            return getattr(importlib.import_module(f"{name}.{main}"), attr)
        except AttributeError:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(vars(sys.modules[name])) | parts | set(dir(importlib.import_module(f"{name}.{main}"))))

    return __getattr__, __dir__
