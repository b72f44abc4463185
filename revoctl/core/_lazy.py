"""Lazy re-exports (PEP 562): a package names its public API without importing it.

The CLI's start-up depends on this: importing `revoctl.core` must not import
SQLAlchemy, the Azure SDK or Alembic until a name that needs them is used.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for ``package``; ``exports`` maps each
    public name -> the module that defines it, so a name is listed once (mypy reads the
    package's ``TYPE_CHECKING`` imports, written ``import X as X``).

    A resolved name is stored in the package's namespace, so each is imported once.
    """

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)
