"""The usage rows against real databases (issue 15, item 5): a row PostgreSQL cannot store is
dropped alone, logged with its request id, and the rows beside and behind it are written; a
batch written twice (its COMMIT's answer lost) is stored once; the rate-limit event log, on
the same writer, isolates a refused event the same way."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from revoctl.core._batch import BatchWriter
from revoctl.core.db import DatabaseConfig, DatabaseManager, upgrade
from revoctl.core.limits import RateLimitEvent, RateLimitLogWriter, SqlRateLimitLogSink
from revoctl.runtime.usage import ModelCall, RequestRecord, UsageSink

TOO_LONG = "u" * 100_000


def record(request_id: str, user: str = "alice") -> RequestRecord:
    return RequestRecord(
        ts=datetime.now(UTC),
        method="POST",
        path="/v1/chat/completions",
        status_code=200,
        duration_ms=1.5,
        user_id=user,
        key_name="team-a",
        client_ip="127.0.0.1",
        request_id=request_id,
        call=ModelCall("llm", "gpt", 3, 5, Decimal("0.000012")),
    )


def usage_writer(db: DatabaseManager) -> BatchWriter[RequestRecord]:
    """The gateway's writer over the gateway's sink, with no background wait."""
    return BatchWriter(
        UsageSink(lambda: db), what="usage rows", describe=RequestRecord.describe, interval=60
    )


async def stored(db: DatabaseManager) -> tuple[list[str], list[str]]:
    """The request ids of ``request_logs`` and of ``model_usage``, sorted."""
    requests, usage = await db.read(
        "SELECT request_id FROM request_logs", "SELECT request_id FROM model_usage"
    )
    return sorted(r["request_id"] for r in requests), sorted(r["request_id"] for r in usage)


@pytest.fixture
async def postgres(postgres_url: str) -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(DatabaseConfig(url=postgres_url)) as db:
        await upgrade(db)
        yield db


@pytest.fixture(params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def any_url(request: pytest.FixtureRequest, revoctl_home: Path) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite+aiosqlite:///{revoctl_home / 'revoctl.db'}"


@pytest.fixture
async def any_db(any_url: str) -> AsyncIterator[DatabaseManager]:
    async with DatabaseManager(DatabaseConfig(url=any_url)) as db:
        await upgrade(db)
        yield db


@pytest.mark.postgres
async def test_a_row_postgresql_cannot_store_is_dropped_alone_and_later_batches_are_written(
    postgres: DatabaseManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="revoctl")
    writer = usage_writer(postgres)
    for i in range(10):
        writer.add(record(f"req-{i}", TOO_LONG if i == 4 else "alice"))  # past the edge check
    assert await writer.flush()
    kept = sorted(f"req-{i}" for i in range(10) if i != 4)
    assert await stored(postgres) == (kept, kept)
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1
    assert "the row of request req-4 refused by the database and dropped" in refused[0]
    assert "value too long" in refused[0] and TOO_LONG not in caplog.text
    for i in range(10, 15):
        writer.add(record(f"req-{i}"))
    assert await writer.flush()
    later = sorted([*kept, *(f"req-{i}" for i in range(10, 15))])
    assert await stored(postgres) == (later, later)
    stats = writer.stats()
    assert (stats["written"], stats["drops"]["rejected"], stats["buffered"]) == (14, 1, 0)


@pytest.mark.postgres
async def test_the_rate_limit_event_log_drops_a_refused_event_alone(
    postgres: DatabaseManager,
) -> None:
    log = RateLimitLogWriter(SqlRateLimitLogSink(lambda: postgres), interval=60)
    for i in range(6):
        rule = "r" * 200 if i == 2 else "api"  # the rule column holds 128
        log.add(RateLimitEvent(rule, f"k{i}", False, 0, 1, "denied", None, datetime.now(UTC)))
    assert await log.flush()
    (rows,) = await postgres.read("SELECT key FROM rate_limit_logs ORDER BY key")
    assert [r["key"] for r in rows] == ["k0", "k1", "k3", "k4", "k5"]
    assert log.stats()["drops"]["rejected"] == 1


async def test_a_batch_written_again_is_stored_once(any_db: DatabaseManager) -> None:
    """What a retry does after a COMMIT that reached the server but whose answer was lost."""
    sink = UsageSink(lambda: any_db)
    batch = [record(f"req-{i}") for i in range(5)]
    await sink(batch)
    await sink([*batch, record("req-5")])
    ids = [f"req-{i}" for i in range(6)]
    assert await stored(any_db) == (ids, ids)
