"""Lazy exports: a package's public names, imported from their modules on first use.

Importing an optix package must stay cheap and framework-free (``optix list``
imports every plugin), so each package's ``__init__`` only names what it
exports and where each name lives; ``lazy_exports`` gives it the module-level
``__getattr__`` and ``__dir__`` (PEP 562) that import a name the first time it
is asked for and keep it in the package's namespace afterwards.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``; ``exports`` maps each name to its
    module as ``importlib.import_module`` takes it with ``package``: ``".base"`` in
    the package, ``"optix_core.returns"`` elsewhere."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __getattr__, __dir__
