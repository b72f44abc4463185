"""Who this process is: its role and the one name every store and pool knows it by.

``revoctl:<host>:<pid>:<role>`` is the name PostgreSQL shows as ``application_name``,
the gateway reports as its instance and the breakers' fleet table keys its rows by, so
``revoctl db pool`` can put a connection, an instance and a breaker report side by side.
"""

from __future__ import annotations

import os
import socket
from enum import StrEnum

APPLICATION_NAME_MAX_BYTES = 63
"""PostgreSQL truncates ``application_name`` to NAMEDATALEN - 1 bytes."""


class Role(StrEnum):
    """What a process is for; a role changes behaviour (the CLI reads, the runtime writes)."""

    CLI = "cli"
    RUNTIME = "runtime"
    MIGRATE = "migrate"


def process_name(role: str) -> str:
    """``revoctl:<host>:<pid>:<role>``: the same for every part of one process."""
    return f"revoctl:{socket.gethostname()}:{os.getpid()}:{role}"


def application_name(role: str) -> str:
    """`process_name`, cut to the 63 bytes PostgreSQL keeps (on a character boundary)."""
    return process_name(role).encode()[:APPLICATION_NAME_MAX_BYTES].decode(errors="ignore")
