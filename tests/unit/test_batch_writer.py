"""The batch writer in one process, with sinks of the tests' own: a refused row is dropped
alone and the rows behind it are written; an outage keeps every row, in order; what waits
and for how long is told. (The same with a real PostgreSQL sink: ``tests/integration/
test_usage_rows.py``.)"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

import pytest

from revoctl.core._batch import BatchWriter, RowsRejected
from revoctl.core.db._errors import is_data_error
from revoctl.core.db.models import ModelUsage, RequestLog
from revoctl.runtime.usage import MAX_USER_LENGTH, STALE_BUFFER_SECONDS, with_usage_buffer


class Sink:
    """Stores rows; refuses any row in ``refuse``; fails as a whole while ``down``."""

    def __init__(self, refuse: Sequence[str] = ()) -> None:
        self.stored: list[str] = []
        self.calls = 0
        self.refuse = set(refuse)
        self.down = False
        self.gate: asyncio.Event | None = None

    async def __call__(self, rows: Sequence[str]) -> None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise OSError("database down")
        if self.refuse & set(rows):
            raise RowsRejected("value too long for type character varying(255)")
        self.stored.extend(rows)


def writer(sink: Sink, **options: object) -> BatchWriter[str]:
    return BatchWriter(sink, what="test rows", describe=lambda row: f"row {row}", **options)  # type: ignore[arg-type]


async def test_a_refused_row_is_logged_and_dropped_alone_and_later_batches_are_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink(refuse=["r3"])
    batches = writer(sink, batch_size=10, interval=60)
    for i in range(8):
        batches.add(f"r{i}")
    assert await batches.flush()
    assert sink.stored == ["r0", "r1", "r2", "r4", "r5", "r6", "r7"]
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == [
        "test rows: row r3 refused by the database and dropped "
        "(value too long for type character varying(255))"
    ]
    for i in range(8, 12):
        batches.add(f"r{i}")
    assert await batches.flush()
    assert sink.stored[-4:] == ["r8", "r9", "r10", "r11"]
    stats = batches.stats()
    assert (stats["written"], stats["dropped"], stats["drops"]["rejected"]) == (11, 1, 1)
    assert stats["buffered"] == 0 and stats["oldest_seconds"] is None


async def test_an_outage_while_writing_row_by_row_keeps_the_unwritten_rows_in_order() -> None:
    sink = Sink(refuse=["r1"])
    batches = writer(sink, batch_size=10, interval=60)
    for i in range(5):
        batches.add(f"r{i}")
    original = sink.__call__

    async def goes_down_after_r2(rows: Sequence[str]) -> None:
        if sink.stored == ["r0", "r2"]:
            sink.down = True
        await original(rows)

    batches.sink = goes_down_after_r2
    assert not await batches.flush()
    assert sink.stored == ["r0", "r2"]
    assert batches.stats()["buffered"] == 2
    sink.down = False
    batches.sink = sink
    assert await batches.flush()
    assert sink.stored == ["r0", "r2", "r3", "r4"]
    assert batches.stats()["drops"] == {"buffer_full": 0, "rejected": 1, "shutdown": 0}


async def test_an_outage_keeps_every_row_and_a_full_buffer_drops_the_oldest() -> None:
    sink = Sink()
    sink.down = True
    batches = writer(sink, capacity=5, batch_size=3, interval=60)
    for i in range(7):
        batches.add(f"r{i}")
    assert not await batches.flush()
    assert batches.stats()["buffered"] == 5
    sink.down = False
    assert await batches.flush()
    assert sink.stored == ["r2", "r3", "r4", "r5", "r6"]
    assert batches.stats()["drops"]["buffer_full"] == 2


async def test_the_batch_being_written_counts_as_waiting_with_its_age() -> None:
    now = [100.0]
    sink = Sink()
    sink.gate = asyncio.Event()
    batches = writer(sink, batch_size=10, interval=60, clock=lambda: now[0])
    batches.add("r0")
    now[0] += 4
    batches.add("r1")
    now[0] += 8
    flushing = asyncio.create_task(batches.flush())
    while sink.calls == 0:
        await asyncio.sleep(0)
    assert batches.stats()["buffered"] == 2
    assert batches.stats()["oldest_seconds"] == 12.0
    sink.gate.set()
    assert await flushing
    assert batches.stats()["oldest_seconds"] is None


async def test_close_waits_for_the_batch_being_written_rather_than_cutting_it() -> None:
    sink = Sink()
    sink.gate = asyncio.Event()
    batches = writer(sink, batch_size=2, interval=60)
    batches.add("r0")
    batches.add("r1")  # a full batch wakes the writer, which waits on the gate
    while sink.calls == 0:
        await asyncio.sleep(0.01)
    batches.add("r2")
    closing = asyncio.create_task(batches.close(5))
    await asyncio.sleep(0.05)
    assert not closing.done()  # the write in flight is not cancelled...
    sink.gate.set()
    await closing  # ...it ends, and close writes the rest
    assert sink.stored == ["r0", "r1", "r2"]
    assert batches.stats()["dropped"] == 0


async def test_a_write_still_hanging_when_close_runs_out_of_time_is_counted_as_shutdown() -> None:
    sink = Sink()
    sink.gate = asyncio.Event()  # never opened
    batches = writer(sink, batch_size=2, interval=60)
    batches.add("r0")
    batches.add("r1")
    while sink.calls == 0:
        await asyncio.sleep(0.01)
    await batches.close(0.2)
    assert sink.stored == []
    assert batches.stats()["drops"] == {"buffer_full": 0, "rejected": 0, "shutdown": 2}


async def test_rows_still_waiting_when_close_runs_out_of_time_are_counted_as_shutdown() -> None:
    sink = Sink()
    sink.down = True
    batches = writer(sink, interval=60)
    batches.add("r0")
    await batches.close(0.2)
    assert batches.stats()["drops"] == {"buffer_full": 0, "rejected": 0, "shutdown": 1}


def report(database_status: str = "healthy") -> dict[str, object]:
    return {
        "status": database_status,
        "services": {"database": {"status": database_status}, "secrets": {"status": "healthy"}},
    }


def test_health_is_degraded_once_the_oldest_buffered_row_is_older_than_the_bound() -> None:
    waiting = {"buffered": 40, "oldest_seconds": STALE_BUFFER_SECONDS - 1, "dropped": 0}
    fresh = with_usage_buffer(report(), waiting)
    assert fresh["status"] == "healthy"
    assert fresh["services"]["database"]["usage_buffer"] == waiting  # type: ignore[index]
    stale = with_usage_buffer(report(), waiting | {"oldest_seconds": STALE_BUFFER_SECONDS + 1})
    database = stale["services"]["database"]  # type: ignore[index]
    assert stale["status"] == "degraded" and database["status"] == "degraded"
    assert database["reason"] == "40 usage rows not written, the oldest for 11s"
    down = with_usage_buffer(report("unhealthy"), waiting | {"oldest_seconds": 30})
    assert down["status"] == "unhealthy"  # worse stays worse
    idle = {"buffered": 0, "oldest_seconds": None, "dropped": 0}
    assert with_usage_buffer(report(), idle)["status"] == "healthy"


def test_the_longest_user_accepted_is_what_the_tables_hold() -> None:
    assert RequestLog.__table__.c.user_id.type.length == MAX_USER_LENGTH  # type: ignore[attr-defined]
    assert ModelUsage.__table__.c.user_id.type.length == MAX_USER_LENGTH  # type: ignore[attr-defined]


class PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "is_data"),
    [
        (PgError("22001"), True),  # value too long
        (PgError("22P02"), True),  # invalid text representation
        (PgError("23505"), True),  # unique violation
        (PgError("08006"), False),  # connection failure
        (PgError("57P01"), False),  # admin shutdown
        (PgError("42P01"), False),  # no such table: not migrated, the rows wait
        (sqlite3.IntegrityError("NOT NULL constraint failed"), True),
        (sqlite3.OperationalError("database is locked"), False),
        (OSError("connection refused"), False),
    ],
)
def test_data_errors_are_told_from_outages(error: BaseException, is_data: bool) -> None:
    assert is_data_error(error) is is_data
