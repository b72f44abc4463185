"""An operator's ``revoctl breakers trip database`` stops a serving gateway's use of the
database (its breakers' own store traffic goes on), ``/health`` shows it, and ``reset``
brings it back (issue 21: the `database` breaker guards revoctl's own calls)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.fleet import ANTHROPIC_KEY, OPENAI_KEY, Fleet, chat
from tests.support.guarded_fleet import build_guarded_fleet
from tests.support.llm_standin import LLMStandIn

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

POLL_INTERVAL = 0.25
"""The fleet's ``[breakers] poll_interval``: how soon a trip or a reset reaches a worker."""
REACH_SECONDS = 8 * POLL_INTERVAL + 2  # the poll, a refresh of the keys, and CI's load


def eventually(check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {timeout}s: {got!r}"
        time.sleep(0.05)


def database_health(fleet: Fleet) -> dict[str, Any]:
    entry: dict[str, Any] = httpx.get(f"{fleet.url}/health", timeout=30).json()["services"][
        "database"
    ]
    return entry


def test_a_trip_of_database_stops_the_gateways_database_use_until_reset(
    tmp_path: Path, postgres_url: str
) -> None:
    with LLMStandIn(api_key=OPENAI_KEY) as openai, LLMStandIn(api_key=ANTHROPIC_KEY) as claude:
        fleet = build_guarded_fleet(
            tmp_path, postgres_url=postgres_url, openai=openai, anthropic=claude, guard=True
        )
        fleet.start()
        try:
            known = fleet.new_key("known")
            with fleet.client(known) as http:
                assert chat(http).status_code == 200
            assert "guard" not in database_health(fleet)

            tripped = fleet.cli("breakers", "trip", "database", "--reason", "db maintenance")
            assert tripped.returncode == 0, tripped.stderr
            entry = eventually(
                lambda: (h := database_health(fleet)).get("guard") and h, REACH_SECONDS
            )
            assert entry["status"] == "degraded"
            assert entry["guard"]["state"] == "forced_open"
            assert "db maintenance" in entry["reason"]

            # A key made meanwhile (the CLI is not guarded) cannot be looked up by the
            # gateway: it does not ask the database. Known keys are checked in memory and
            # the limiter's failure_mode answers for its database store.
            fresh = fleet.new_key("fresh")
            with fleet.client(fresh) as http:
                assert chat(http).status_code == 401
            with fleet.client(known) as http:
                assert chat(http).status_code == 200

            reset = fleet.cli("breakers", "reset", "database")
            assert reset.returncode == 0, reset.stderr
            eventually(lambda: "guard" not in database_health(fleet), REACH_SECONDS)
            with fleet.client(fresh) as http:
                eventually(lambda: chat(http).status_code == 200, REACH_SECONDS)
        finally:
            stderr = fleet.stop()
    assert "Traceback" not in stderr, stderr[-3000:]
