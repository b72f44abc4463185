"""Who changed which secret when: the audit events the manager emits, and where they go.

A change is recorded in two steps: its intent before the store is written, and its
completion (the new version) after. A process killed between the two leaves an intent
marked incomplete, so no acknowledged change ever lacks its record.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol

AuditAction = Literal["set", "rotate"]


@dataclass(frozen=True)
class AuditEvent:
    """One change to a secret; never its value. ``version`` is None until it is written."""

    secret_name: str
    action: AuditAction
    version: str | None
    previous_version: str | None
    provider: str
    actor: str
    occurred_at: datetime

    def written(self, version: str, previous_version: str | None) -> AuditEvent:
        return replace(self, version=version, previous_version=previous_version)


class AuditSink(Protocol):
    """Where `SecretManager` records changes; a failing sink never fails the change."""

    async def begin(self, event: AuditEvent) -> Any:
        """Record the intent of ``event`` (no version yet); returns what `complete` needs."""
        ...

    async def complete(self, intent: Any, event: AuditEvent) -> None:
        """Mark the intent done with ``event``'s version."""
        ...
