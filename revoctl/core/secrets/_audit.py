"""Who changed which secret when: the audit events the manager emits, and where they go.

A change is recorded in two steps: its intent before the store is written, and its
completion (the new version) after. A process killed between the two leaves an intent
marked incomplete, so no acknowledged change ever lacks its record. A log that fails or
does not answer within the manager's ``timeout_seconds`` never fails the change: it is
a warning, and the change reports that it was not audited.

Reads, when ``[secrets] audit_reads`` asks, are rows of their own, one per read the
provider answers or fails, written in batches off the read path (`ReadAudit`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from revoctl.core._batch import BatchWriter
from revoctl.core.actors import default_actor

if TYPE_CHECKING:
    from revoctl.core.secrets.base import Secret
    from revoctl.core.secrets.settings import SecretProvider

T = TypeVar("T")
S = TypeVar("S", bound="Secret")

ReadOutcome = Literal["ok", "error"]

logger = logging.getLogger("revoctl.secrets")

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
    status: str = "done"
    """``done``, or why a change was not made (``hook_failed``: its ``on_rotate`` failed)."""

    def written(
        self, version: str | None, previous_version: str | None, status: str = "done"
    ) -> AuditEvent:
        return replace(self, version=version, previous_version=previous_version, status=status)


class AuditSink(Protocol):
    """Where `SecretManager` records changes; a failing sink never fails the change."""

    async def begin(self, event: AuditEvent) -> Any:
        """Record the intent of ``event`` (no version yet); returns what `complete` needs."""
        ...

    async def complete(self, intent: Any, event: AuditEvent) -> None:
        """Mark the intent done with ``event``'s version."""
        ...


_NOT_RECORDED = object()

Intent = tuple[AuditEvent, Any] | None
"""A recorded intent and the sink's handle on it; None when none was recorded."""


class AuditTrail:
    """The manager's two audit steps on ``sink`` (None: nothing is recorded), each bounded
    by ``timeout`` seconds."""

    def __init__(self, sink: AuditSink | None, timeout: float) -> None:
        self._sink = sink
        self._timeout = timeout

    async def begin(
        self, action: AuditAction, name: str, provider: SecretProvider, actor: str | None
    ) -> Intent:
        """Record the intent of a change before making it; None when it cannot be recorded
        (the change is still made, and says it was not audited)."""
        if self._sink is None:
            return None
        event = AuditEvent(
            secret_name=name,
            action=action,
            version=None,
            previous_version=None,
            provider=provider.value,
            actor=actor or default_actor(),
            occurred_at=datetime.now(UTC),
        )
        token = await self._bounded(event, self._sink.begin(event))
        return None if token is _NOT_RECORDED else (event, token)

    async def complete(
        self, intent: Intent, version: str | None, previous: str | None, status: str = "done"
    ) -> bool:
        """Complete a recorded intent with the version written (or, with another ``status``,
        none: the change was not made); whether the change is audited."""
        if intent is None or self._sink is None:
            return False
        event, token = intent
        done = event.written(version, previous, status)
        return await self._bounded(done, self._sink.complete(token, done)) is not _NOT_RECORDED

    async def _bounded(self, event: AuditEvent, step: Awaitable[T]) -> T | object:
        """``step`` within the timeout; any failure is a warning, never an error."""
        try:
            async with asyncio.timeout(self._timeout):
                return await step
        except Exception as exc:  # any failure of the log must leave the change standing
            reason = (
                f"the audit log did not answer within {self._timeout:g}s"
                if isinstance(exc, TimeoutError)
                else f"{type(exc).__name__}: {exc}"
            )
            logger.warning(
                "%s of secret %r (version %s) was not recorded in the audit log: %s",
                event.action,
                event.secret_name,
                event.version or "not yet written",
                reason,
            )
            return _NOT_RECORDED


@dataclass(frozen=True, slots=True)
class ReadEvent:
    """One read that reached the provider; never its value."""

    secret_name: str
    version: str | None
    provider: str
    actor: str
    status: ReadOutcome
    ts: datetime


ReadSink = Callable[[Sequence[ReadEvent]], Awaitable[None]]
"""Writes one batch of read events (e.g. `SqlReadAuditSink`)."""


class ReadAudit:
    """The manager's record of provider reads (``provider()`` names the store asked);
    records nothing when ``sink`` is None (``[secrets] audit_reads = false``)."""

    def __init__(
        self,
        sink: ReadSink | None,
        provider: Callable[[], SecretProvider],
        *,
        interval: float = 1.0,
    ) -> None:
        self._provider = provider
        self.writer: BatchWriter[ReadEvent] | None = None
        if sink is not None:
            self.writer = BatchWriter(
                sink, what="secret read audit rows", describe=_describe, interval=interval
            )

    async def record(self, key: tuple[str, str | None], read: Awaitable[S]) -> S:
        """``await read``, the provider's read of ``key`` (name, version), recording its
        outcome: the version read, or ``error`` (then the failure is raised as it was)."""
        if self.writer is None:
            return await read
        name, version = key
        try:
            secret = await read
        except Exception:
            self._add(name, version, "error")
            raise
        self._add(name, secret.version, "ok")
        return secret

    def _add(self, name: str, version: str | None, status: ReadOutcome) -> None:
        assert self.writer is not None
        provider, actor, now = self._provider().value, default_actor(), datetime.now(UTC)
        self.writer.add(ReadEvent(name, version, provider, actor, status, now))

    async def close(self, timeout: float) -> None:
        """Write the rows still buffered, for at most ``timeout`` seconds."""
        if self.writer is not None:
            await self.writer.close(timeout)


def _describe(event: ReadEvent) -> str:
    return f"the read of secret {event.secret_name!r} at {event.ts.isoformat()}"
