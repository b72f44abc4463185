"""The usage rows against real databases (issue 15, item 5): a row PostgreSQL cannot store is
dropped alone, logged with its request id, and the rows beside and behind it are written; a
batch written twice (its COMMIT's answer lost) is stored once; the rate-limit event log, on
the same writer, isolates a refused event the same way. And at the gateway's edge: a
``user`` longer than its column is a 400 naming the field, never a 500."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url
from starlette.testclient import TestClient

from revoctl.config import load_config
from revoctl.core._batch import BatchWriter
from revoctl.core.db import DatabaseConfig, DatabaseManager, upgrade
from revoctl.core.limits import RateLimitEvent, RateLimitLogWriter, SqlRateLimitLogSink
from revoctl.runtime.app import create_app
from revoctl.runtime.usage import MAX_USER_LENGTH, ModelCall, RequestRecord, UsageSink
from tests.support.llm_standin import LLMStandIn
from tests.support.tcp_proxy import TcpProxy

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


@pytest.mark.postgres
async def test_a_batch_whose_commit_answer_was_lost_is_written_once(
    postgres: DatabaseManager, postgres_url: str
) -> None:
    """The server committed, the writer saw its connection drop: it retries the batch, which
    must add nothing the second time."""
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        async with DatabaseManager(DatabaseConfig(url=proxy.url_for(postgres_url))) as db:
            writer = usage_writer(db)
            for i in range(5):
                writer.add(record(f"req-{i}"))
            proxy.lose_next_commit = True
            assert not await writer.flush()  # a lost answer looks like an outage: rows wait
            assert proxy.commits_lost == 1 and writer.stats()["buffered"] == 5
            ids = [f"req-{i}" for i in range(5)]
            assert await stored(postgres) == (ids, ids)  # ...but they were committed
            assert await writer.flush()
            assert writer.stats()["dropped"] == 0  # skipped as written, not refused
    assert await stored(postgres) == (ids, ids)


CONFIG = """
[limits]
store = "memory"
[[limits.rules]]
name = "per-user"
requests = 100
window_seconds = 3600
algorithm = "fixed_window"
scope = "per_user"

[gateway]
auth = "none"
request_rule = "per-user"

[providers.llm]
kind = "openai"
base_url = "{openai}"
api_key = "sk-edge-test"
breaker = "openai_api"
timeout = 5

[models.gpt]
provider = "llm"
upstream = "gpt-4o-mini"
"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[TestClient]:
    with LLMStandIn(api_key="sk-edge-test") as llm:
        config = tmp_path / "revoctl.toml"
        config.write_text(CONFIG.format(openai=llm.openai_base_url))
        with TestClient(create_app(load_config(config))) as client:
            yield client


def ask(client: TestClient, user: str, route: str = "/v1/chat/completions") -> Any:
    body: dict[str, Any] = {"model": "gpt", "user": user, "max_tokens": 5}
    if route == "/generate":
        body["prompt"] = "hello"
    else:
        body["messages"] = [{"role": "user", "content": "hello"}]
    return client.post(route, json=body)


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/generate"])
def test_a_user_longer_than_its_column_is_a_400_naming_the_field(
    gateway: TestClient, route: str
) -> None:
    for user in (TOO_LONG, "u" * (MAX_USER_LENGTH + 1)):
        refused = ask(gateway, user, route)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert "'user'" in error["message"] and error["code"] == "user_too_long"
        assert TOO_LONG not in json.dumps(refused.json())
    # The longest a per_user rule keys on is served, not a 500 from the limiter.
    assert ask(gateway, "u" * MAX_USER_LENGTH, route).status_code == 200
