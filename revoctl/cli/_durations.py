"""Durations as the CLI takes them: ``90d``, ``12h``, ``30m``, ``1w2d`` (``secrets list
--older-than``, ``db prune --older-than``)."""

from __future__ import annotations

import re
from datetime import timedelta

from revoctl.core.errors import UsageError

_DURATION = re.compile(r"(\d+)([wdhms])")
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``1w2d`` ... as a timedelta.

    :raises UsageError: not a duration, or too long.
    """
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.strip().lower():
        raise UsageError(f"invalid duration {text!r}: use e.g. 90d, 12h, 30m or 1w2d")
    try:
        return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))
    except OverflowError:
        raise UsageError(f"invalid duration {text!r}: too long") from None
