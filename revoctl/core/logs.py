"""Structured logging: JSON lines off a TTY (or when asked), text on a TTY, always redacted.

The handler and its formats are `revoctl.core.log_handler` (no pydantic, so a probe
command configures logging without building a model); this module adds ``[logging]``.
"""

from __future__ import annotations

from typing import Literal

from revoctl.core._settings import Section
from revoctl.core.log_handler import JsonFormatter, LogFormat, configure_logging

__all__ = ["JsonFormatter", "LogFormat", "LoggingConfig", "configure_logging"]


class LoggingConfig(Section):
    """``[logging]``: revoctl's own level, and the format of its lines."""

    level: Literal["debug", "info", "warning", "error"] = "warning"
    format: LogFormat = "auto"
