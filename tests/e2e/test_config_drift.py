"""Configuration drift across real gateway processes on one PostgreSQL and one Redis: two
workers of one deployment agree; a third instance started with a different limit is named
by ``revoctl db pool`` (``config_drift``, ``config_differs``) and ``revoctl health``
(``rate_limiter`` degraded, with the reason and the list), while the breakers, defined
alike everywhere, stay unflagged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from revoctl.core.db._probe import INSTANCE_STALE_SECONDS
from revoctl.runtime.instance import INSTANCE_REPORT_SECONDS
from tests.support.fleet import Fleet, build_fleet
from tests.support.llm_standin import LLMStandIn

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

REPORTED_WITHIN = 3 * INSTANCE_REPORT_SECONDS + 10
"""Three report periods, and start-up on a busy 2-core machine."""


def live_instances(fleet: Fleet, count: int) -> dict[str, Any]:
    """``db pool``'s report once ``count`` instances report (none stale)."""
    deadline = time.monotonic() + REPORTED_WITHIN
    while True:
        report: dict[str, Any] = fleet.cli_json("db", "pool")
        live = [i for i in report["instances"] if not i["stale"]]
        if len(live) >= count or time.monotonic() > deadline:
            assert len(live) == count, report["instances"]
            return report
        time.sleep(0.5)


def test_an_instance_with_a_different_limit_is_flagged_by_db_pool_and_health(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    redis_prefix: str,
    upstreams: tuple[LLMStandIn, LLMStandIn],
) -> None:
    openai, claude = upstreams

    def fleet(name: str, workers: int, rpm: int) -> Fleet:
        (tmp_path / name).mkdir()
        return build_fleet(
            tmp_path / name,
            postgres_url=postgres_url,
            redis_url=redis_url,
            prefix=redis_prefix,
            openai=openai,
            anthropic=claude,
            workers=workers,
            rpm=rpm,
        )

    agreeing, odd = fleet("a", 2, 1000), fleet("b", 1, 999)
    agreeing.start()
    try:
        alone = live_instances(agreeing, 2)
        assert alone["config_drift"] == []
        assert [i["config_differs"] for i in alone["instances"]] == [False, False]
        healthy = agreeing.cli_json("health")["services"]["rate_limiter"]
        assert "config_drift" not in healthy

        odd.start()
        try:
            assert odd.process is not None
            report = live_instances(agreeing, 3)
            by_pid = {i["details"]["pid"]: i for i in report["instances"]}
            odd_name = by_pid[odd.process.pid]["instance"]
            assert report["config_drift"] == [odd_name]
            assert [i["instance"] for i in report["instances"] if i["config_differs"]] == [odd_name]
            prints = {i["details"]["limits_fingerprint"] for i in report["instances"]}
            assert len(prints) == 2
            assert len({i["details"]["breakers_fingerprint"] for i in report["instances"]}) == 1

            health = odd.cli_json("health")
            limiter = health["services"]["rate_limiter"]
            assert limiter["status"] == "degraded", limiter
            assert limiter["config_drift"] == [odd_name] and odd_name in limiter["reason"]
            assert "config_drift" not in health["services"]["circuit_breakers"]
            assert health["status"] in ("degraded", "unhealthy")
            table = agreeing.cli("db", "pool")
            assert f"configuration drift: rules or breakers differ on {odd_name}" in table.stdout
        finally:
            odd.stop()
        # the odd one stopped: once its report is stale, the fleet agrees again
        time.sleep(INSTANCE_STALE_SECONDS + 1)
        assert agreeing.cli_json("db", "pool")["config_drift"] == []
    finally:
        agreeing.stop()
