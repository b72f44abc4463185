"""Usage rows through a running gateway (``revoctl serve`` on PostgreSQL and Redis, real
processes): a ``user`` too long to store is refused at the edge and the rows of the requests
after it are all written; rows that cannot reach their table wait in the buffer, and the
runtime's ``/health`` says so (``degraded``, with the buffer's size) once the oldest has
waited `STALE_BUFFER_SECONDS`, and is ``healthy`` again once they are written.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from revoctl.runtime.usage import STALE_BUFFER_SECONDS
from tests.support.fleet import Fleet, build_fleet
from tests.support.llm_standin import LLMStandIn
from tests.support.request_logs import WRITE_SECONDS, ask, sql, wait_for_rows

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


def start_fleet(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    upstreams: tuple[LLMStandIn, LLMStandIn],
    workers: int,
) -> Fleet:
    openai, claude = upstreams
    fleet = build_fleet(
        tmp_path,
        postgres_url=postgres_url,
        redis_url=redis_url,
        prefix=redis_prefix,
        openai=openai,
        anthropic=claude,
        workers=workers,
    )
    fleet.start()
    return fleet


def test_a_100kb_user_is_a_400_and_every_request_after_it_has_its_row(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    upstreams: tuple[LLMStandIn, LLMStandIn],
) -> None:
    fleet = start_fleet(tmp_path, postgres_url, redis_url, redis_prefix, upstreams, workers=2)
    try:
        key = fleet.new_key("edge")
        run = uuid.uuid4().hex[:8]
        with fleet.client(key) as client:
            refused = ask(client, f"huge-{run}", user="u" * 100_000)
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert "'user'" in error["message"] and error["code"] == "user_too_long"
            after = [f"after-{run}-{i}" for i in range(20)]
            for request_id in after:
                answered = ask(client, request_id, user="alice")
                assert answered.status_code == 200, answered.text
        assert wait_for_rows(postgres_url, after, WRITE_SECONDS) == dict.fromkeys(after, 1)
    finally:
        stderr = fleet.stop()
    assert "dropped" not in stderr and "Traceback" not in stderr, stderr[-3000:]


def health(fleet: Fleet) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{fleet.url}/health", timeout=30)
    return response.status_code, response.json()


def metric(fleet: Fleet, name: str) -> float:
    text = httpx.get(f"{fleet.url}/metrics", timeout=30).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not in /metrics"
    return float(found.group(1))


def test_health_is_degraded_with_the_buffer_while_rows_wait_and_healthy_once_written(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    upstreams: tuple[LLMStandIn, LLMStandIn],
) -> None:
    # One worker: the buffer /health reports is the one the requests filled.
    fleet = start_fleet(tmp_path, postgres_url, redis_url, redis_prefix, upstreams, workers=1)
    try:
        key = fleet.new_key("buffer")
        run = uuid.uuid4().hex[:8]
        with fleet.client(key) as client:
            assert ask(client, f"first-{run}").status_code == 200
            assert wait_for_rows(postgres_url, [f"first-{run}"], WRITE_SECONDS)
            assert health(fleet)[1]["services"]["database"]["status"] == "healthy"
            # The database answers, but the rows cannot reach their table.
            sql(postgres_url, "ALTER TABLE request_logs RENAME TO request_logs_away")
            waiting = [f"waiting-{run}-{i}" for i in range(3)]
            sent = time.monotonic()
            for request_id in waiting:
                assert ask(client, request_id).status_code == 200
        status, report = health(fleet)
        database = report["services"]["database"]
        if time.monotonic() - sent < STALE_BUFFER_SECONDS:
            assert database["status"] == "healthy", database
        assert database["usage_buffer"]["buffered"] == 3

        deadline = sent + STALE_BUFFER_SECONDS + WRITE_SECONDS
        while database["status"] != "degraded" and time.monotonic() < deadline:
            time.sleep(0.5)
            status, report = health(fleet)
            database = report["services"]["database"]
        assert time.monotonic() - sent > STALE_BUFFER_SECONDS
        assert (status, report["status"], database["status"]) == (200, "degraded", "degraded")
        assert database["usage_buffer"]["buffered"] == 3
        assert database["usage_buffer"]["oldest_seconds"] > STALE_BUFFER_SECONDS
        assert "3 usage rows not written" in database["reason"]
        assert metric(fleet, "revoctl_usage_rows_buffered") == 3
        assert metric(fleet, "revoctl_usage_oldest_buffered_seconds") > STALE_BUFFER_SECONDS

        sql(postgres_url, "ALTER TABLE request_logs_away RENAME TO request_logs")
        assert wait_for_rows(postgres_url, waiting, WRITE_SECONDS) == dict.fromkeys(waiting, 1)
        deadline = time.monotonic() + WRITE_SECONDS
        while database["status"] != "healthy" and time.monotonic() < deadline:
            time.sleep(0.2)
            status, report = health(fleet)
            database = report["services"]["database"]
        assert (status, database["status"]) == (200, "healthy")
        assert database["usage_buffer"] == {"buffered": 0, "oldest_seconds": None, "dropped": 0}
        assert metric(fleet, "revoctl_usage_rows_buffered") == 0
        dropped = 'revoctl_usage_rows_dropped_total{reason="buffer_full"}'
        assert metric(fleet, re.escape(dropped)) == 0
    finally:
        fleet.stop()
