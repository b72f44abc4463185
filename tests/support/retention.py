"""Rows of chosen ages in every table retention prunes, and a count of what is left."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select

from revoctl.core.db import DatabaseManager
from revoctl.core.db._sql import table
from revoctl.core.db.models import (
    ModelUsage,
    RateLimitLog,
    RequestLog,
    SecretAuditLog,
    SystemMetrics,
)

MODELS: dict[str, Any] = {
    "request_logs": RequestLog,
    "model_usage": ModelUsage,
    "rate_limit_logs": RateLimitLog,
    "secret_audit_log": SecretAuditLog,
    "system_metrics": SystemMetrics,
}

REQUIRED: dict[str, dict[str, Any]] = {
    "request_logs": {"method": "POST", "path": "/v1/chat", "status_code": 200, "duration_ms": 1.0},
    "model_usage": {"provider": "openai", "model": "gpt"},
    "rate_limit_logs": {"rule": "r", "key": "k", "allowed": False, "remaining": 0},
    "secret_audit_log": {"secret_name": "s", "action": "set", "provider": "local", "actor": "t"},
    "system_metrics": {"name": "process_cpu", "value": 0.5},
}


async def seed(
    db: DatabaseManager, ages_in_days: dict[float, int], tables: tuple[str, ...] = tuple(MODELS)
) -> None:
    """``count`` rows aged ``age`` days for each ``{age: count}``, in each of ``tables``."""
    now = datetime.now(UTC)
    for name in tables:
        rows = [
            {**REQUIRED[name], "ts": now - timedelta(days=age)}
            for age, count in ages_in_days.items()
            for _ in range(count)
        ]
        for start in range(0, len(rows), 20_000):
            chunk = rows[start : start + 20_000]
            await db.transaction(
                lambda s, chunk=chunk, name=name: s.execute(insert(table(MODELS[name])), chunk)
            )


async def ages(db: DatabaseManager, name: str) -> list[float]:
    """The age in days (rounded) of every row left in ``name``, youngest first."""
    rows = table(MODELS[name])
    now = datetime.now(UTC)

    async def read(session: Any) -> list[datetime]:
        return list((await session.scalars(select(rows.c.ts).order_by(rows.c.ts))).all())

    stamps = await db.transaction(read)
    return sorted(
        round((now - ts.replace(tzinfo=ts.tzinfo or UTC)).total_seconds() / 86400) for ts in stamps
    )


async def count(db: DatabaseManager, name: str) -> int:
    rows = table(MODELS[name])
    return int(
        await db.transaction(lambda s: s.scalar(select(func.count()).select_from(rows))) or 0
    )
