"""The log handler: JSON lines off a TTY (or when asked), text on a TTY, always redacted.

``[logging]`` (`revoctl.core.logs.LoggingConfig`) chooses the level and format.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

from revoctl.core.redaction import RedactionFilter, install_log_redaction, redact

LogFormat = Literal["auto", "json", "text"]


_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with ANSI colour codes, for terminals
}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_text:
            entry["exception"] = record.exc_text
        return redact(json.dumps(entry, default=str))


def configure_logging(
    level: str = "warning", fmt: LogFormat = "auto", stream: IO[str] | None = None
) -> logging.Handler:
    """Install one redacting handler on the root logger, replacing any earlier one of ours.

    ``level`` applies to revoctl's loggers; other libraries log at warning and above,
    except at ``debug``, which shows everything.
    """
    install_log_redaction()
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.set_name("revoctl")
    handler.addFilter(RedactionFilter())
    handler.setFormatter(
        JsonFormatter() if use_json else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "revoctl"]:
        root.removeHandler(old)
    root.addHandler(handler)
    # revoctl's own loggers at ``level``; the libraries' (Alembic, azure, asyncio) stay at
    # warning unless debugging, so that -v shows what revoctl did, not their chatter.
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    logging.getLogger("revoctl").setLevel(numeric)
    return handler
