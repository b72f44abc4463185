"""The ``revoctl`` command line: parse, call `revoctl.core`, render.

`main` gives ``db ping`` to `revoctl.cli._fast` first (no Typer, no pydantic) and every
other command line to the Typer app, which is imported only then.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from revoctl.cli._app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point.

    pydantic looks for plugins in every installed distribution's entry points when it
    first builds a model (15-20 ms); the CLI uses none, so it tells pydantic not to look.
    """
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from revoctl.cli._fast import run_fast

    code = run_fast(sys.argv[1:], os.environ)
    if code is not None:
        sys.exit(code)
    from revoctl.cli._app import run_typer

    run_typer()


def __getattr__(name: str) -> Any:
    if name == "app":  # the Typer app, built on first use: `main` may never need it
        from revoctl.cli._app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
