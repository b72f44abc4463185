"""Who changed which secret when: the audit events the manager emits, and where they go."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

AuditAction = Literal["set", "rotate"]


@dataclass(frozen=True)
class AuditEvent:
    """One change to a secret; never its value."""

    secret_name: str
    action: AuditAction
    version: str
    previous_version: str | None
    provider: str
    actor: str
    occurred_at: datetime


class AuditSink(Protocol):
    """Where `SecretManager` records changes; a failing sink never fails the change."""

    async def record(self, event: AuditEvent) -> None: ...


def default_actor() -> str:
    """``user@host`` of this process, for audit records."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
