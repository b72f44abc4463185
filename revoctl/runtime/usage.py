"""Request and model-usage rows (``request_logs``, ``model_usage``), written off the response path.

Each request adds one `RequestRecord` to a `BatchWriter`; a batch is one transaction.
While the database is away the rows wait in the bounded buffer (``gateway.usage_buffer``);
what overflows is counted (``revoctl_usage_rows_dropped_total``) and logged, and no
response ever waits for the database. Shutdown flushes what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from revoctl.core.db import DatabaseManager


@dataclass(frozen=True, slots=True)
class ModelCall:
    """Tokens a provider reported for one answer, and what they cost."""

    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the gateway answered, and the model call behind it, if any."""

    ts: datetime
    method: str
    path: str
    status_code: int
    duration_ms: float
    user_id: str | None
    key_name: str | None
    client_ip: str | None
    request_id: str
    call: ModelCall | None


def cost_of(
    prompt_tokens: int, completion_tokens: int, per_1k_in: float, per_1k_out: float
) -> Decimal:
    """The price of one answer from the configured per-1k-token prices, to the micro-dollar."""
    cost = Decimal(str(per_1k_in)) * prompt_tokens + Decimal(str(per_1k_out)) * completion_tokens
    return (cost / 1000).quantize(Decimal("0.000001"))


class UsageSink:
    """Writes a batch of records: request rows and usage rows, in one transaction."""

    def __init__(self, db: Callable[[], DatabaseManager]) -> None:
        self._db = db

    async def __call__(self, records: Sequence[RequestRecord]) -> None:
        from sqlalchemy import insert

        from revoctl.core.db.models import ModelUsage, RequestLog

        requests = [
            {
                "ts": r.ts,
                "method": r.method,
                "path": r.path[:2048],
                "status_code": r.status_code,
                "duration_ms": r.duration_ms,
                "user_id": r.user_id,
                "api_key_id": r.key_name,
                "client_ip": r.client_ip,
                "request_id": r.request_id,
            }
            for r in records
        ]
        usage = [
            {
                "ts": r.ts,
                "provider": r.call.provider,
                "model": r.call.model,
                "prompt_tokens": r.call.prompt_tokens,
                "completion_tokens": r.call.completion_tokens,
                "total_tokens": r.call.prompt_tokens + r.call.completion_tokens,
                "estimated_cost": r.call.cost,
                "request_id": r.request_id,
                "user_id": r.user_id,
            }
            for r in records
            if r.call is not None
        ]
        db = self._db()
        await db.ensure_schema()
        async with db.get_async_session() as session:
            await session.execute(insert(RequestLog), requests)
            if usage:
                await session.execute(insert(ModelUsage), usage)
