"""The rate-limit event log: denials and store failures, written to ``rate_limit_logs``
in batches, off the decision path (a `BatchWriter`: a bounded buffer whose rows wait
while the database is away, and whose oldest rows are dropped and counted when it is
full, so an outage can neither slow the decisions nor fill memory; an event the database
refuses is logged and dropped alone, never holding up the others).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from revoctl.core._batch import BatchWriter

if TYPE_CHECKING:
    from revoctl.core.db import DatabaseManager

EventKind = Literal["denied", "store_failure"]


@dataclass(frozen=True, slots=True)
class RateLimitEvent:
    """One row of ``rate_limit_logs``."""

    rule: str
    key: str
    allowed: bool
    remaining: int
    weight: int
    event: EventKind
    reason: str | None
    ts: datetime


EventSink = Callable[[Sequence[RateLimitEvent]], Awaitable[None]]
"""Writes one batch of events (e.g. `SqlRateLimitLogSink`)."""


class RateLimitLogWriter(BatchWriter[RateLimitEvent]):
    """The bounded buffer of events and the task that drains it into ``sink``."""

    def __init__(
        self,
        sink: EventSink,
        *,
        capacity: int = 10_000,
        batch_size: int = 500,
        interval: float = 1.0,
    ) -> None:
        super().__init__(
            sink, what="rate-limit events", describe=_describe, capacity=capacity,
            batch_size=batch_size, interval=interval,
        )  # fmt: skip


def _describe(event: RateLimitEvent) -> str:
    return f"the {event.event} event of rule {event.rule[:128]!r} at {event.ts.isoformat()}"


class SqlRateLimitLogSink:
    """Inserts batches into ``rate_limit_logs`` through the database reached by ``db()``
    (called on first write, so a limiter that logs nothing never opens the database)."""

    def __init__(self, db: Callable[[], DatabaseManager]) -> None:
        self._db = db

    async def __call__(self, events: Sequence[RateLimitEvent]) -> None:
        from sqlalchemy import insert

        from revoctl.core.db._errors import refused_rows
        from revoctl.core.db.models import RateLimitLog

        rows: list[dict[str, Any]] = [
            {**asdict(event), "reason": event.reason[:255] if event.reason else None}
            for event in events
        ]
        with refused_rows():
            await self._db().transaction(
                lambda session: session.execute(insert(RateLimitLog), rows)
            )
