"""Lazy re-exports (PEP 562): a package names its public API without importing it.

The CLI's start-up depends on this: importing `revoctl.core` must not import
SQLAlchemy, the Azure SDK or Alembic until a name that needs them is used.

A package lists each public name once, as an import under ``TYPE_CHECKING`` (what
mypy reads; the facades re-export them, see ``implicit_reexport`` in pyproject). At
run time those imports do not run: on the first lookup of a name the package's own
source is read for them, which gives the name's module and the package's ``__all__``.
"""

from __future__ import annotations

import ast
import functools
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def lazy_exports(package: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: its ``TYPE_CHECKING`` imports,
    each resolved on first use, plus ``__all__`` (sorted) and ``_EXPORTS`` (name ->
    module).

    A resolved name is stored in the package's namespace, so each is imported once.
    """

    @functools.cache
    def exports() -> dict[str, str]:
        return type_checking_imports(Path(str(sys.modules[package].__file__)).read_text())

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            value: Any = sorted(exports())
        elif name == "_EXPORTS":
            value = exports()
        elif name in exports():
            value = getattr(importlib.import_module(exports()[name]), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(exports())

    return __getattr__, __dir__


def type_checking_imports(source: str) -> dict[str, str]:
    """Name -> module of each ``from module import name`` under ``if TYPE_CHECKING:``."""
    found: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    for alias in statement.names:
                        found[alias.asname or alias.name] = statement.module
    return found
