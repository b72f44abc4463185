"""Who changed which secret when: the audit events the manager emits, and where they go."""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from revoctl.core.errors import UsageError

if TYPE_CHECKING:
    from revoctl.core.db import DatabaseManager

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


class DatabaseAuditSink:
    """Appends each event to the ``secret_audit_log`` table (migration 0002).

    The database is initialized on first use, not before: its URL may reference a
    secret, and a failure there must fail only the audit record.
    """

    def __init__(self, db: DatabaseManager) -> None:
        self._db = db

    async def record(self, event: AuditEvent) -> None:
        """Append ``event``.

        :raises UsageError: the table is missing (the database is not migrated).
        :raises BackendUnavailableError: the database cannot be reached.
        """
        from sqlalchemy.exc import SQLAlchemyError

        from revoctl.core.db._errors import is_missing_table
        from revoctl.core.db.models import SecretAuditLog

        await self._db.initialize()
        try:
            async with self._db.get_async_session() as session:
                session.add(
                    SecretAuditLog(
                        secret_name=event.secret_name,
                        action=event.action,
                        version=event.version,
                        previous_version=event.previous_version,
                        provider=event.provider,
                        actor=event.actor,
                        ts=event.occurred_at,
                    )
                )
        except SQLAlchemyError as exc:
            if is_missing_table(exc):
                raise UsageError(
                    "the database is not migrated (run 'revoctl db migrate')"
                ) from None
            raise


def default_actor() -> str:
    """``user@host`` of this process, for audit records."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
