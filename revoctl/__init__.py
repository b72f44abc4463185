"""revoctl: one set of operations services for the platform runtime and its operators."""

from __future__ import annotations

__version__ = "0.1.0"
