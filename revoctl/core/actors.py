"""Who did something: the ``user@host`` recorded with audit rows, keys and operator trips."""

from __future__ import annotations

import getpass
import socket


def default_actor() -> str:
    """``user@host`` of this process."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
