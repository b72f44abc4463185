"""The ``revoctl`` command line: parse, call `revoctl.core`, render."""

from __future__ import annotations

from revoctl.cli._app import app, main

__all__ = ["app", "main"]
