"""Drift read back from the reports in ``runtime_instances`` on SQLite (JSON as text there):
``revoctl health`` and ``revoctl db pool`` name the live instance whose rules differ, and
not a stale one, whatever it reported."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from revoctl.config import Settings
from revoctl.core.db import DatabaseConfig, DatabaseManager, upgrade
from revoctl.core.db.models import RuntimeInstance
from revoctl.core.drift import fingerprints
from tests.conftest import run_revoctl


def rules(requests: int) -> dict[str, Any]:
    rule = {"name": "rpm", "requests": requests, "window_seconds": 60}
    return {"limits": {"rules": [rule]}}


async def test_health_and_db_pool_name_the_instance_whose_rules_differ(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fleet.db'}"
    now = datetime.now(UTC)
    agreeing = fingerprints(Settings.model_validate(rules(10)))
    odd = fingerprints(Settings.model_validate(rules(11)))
    reports = [
        ("gw:1:runtime", agreeing, now),
        ("gw:2:runtime", agreeing, now),
        ("gw:3:runtime", odd, now),
        (
            "gw:4:runtime",
            fingerprints(Settings.model_validate(rules(12))),
            now - timedelta(hours=1),
        ),
    ]
    async with DatabaseManager(DatabaseConfig(url=url), role="test") as db:
        await upgrade(db)

        async def write(session: Any) -> None:
            for name, details, seen in reports:
                session.add(
                    RuntimeInstance(
                        instance=name, started_at=seen, seen_at=seen, pool={}, details=details
                    )
                )

        await db.transaction(write)
    env = {"REVOCTL_DATABASE__URL": url}
    health = json.loads(run_revoctl(["health", "-o", "json"], env=env).stdout)
    limiter = health["services"]["rate_limiter"]
    assert limiter["status"] == "degraded" and limiter["config_drift"] == ["gw:3:runtime"]
    assert "gw:3:runtime" in limiter["reason"]
    assert "config_drift" not in health["services"]["circuit_breakers"]
    pool = json.loads(run_revoctl(["db", "pool", "-o", "json"], env=env).stdout)
    assert pool["config_drift"] == ["gw:3:runtime"]
    assert {i["instance"]: i["config_differs"] for i in pool["instances"]} == {
        "gw:1:runtime": False,
        "gw:2:runtime": False,
        "gw:3:runtime": True,
        "gw:4:runtime": False,  # stale: left out
    }
