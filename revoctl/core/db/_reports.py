"""What ``db health`` and ``db pool`` report, built from what a probe saw and the pool's
counters: plain data in, JSON-ready dicts out, no connection of their own."""

from __future__ import annotations

from collections import Counter
from typing import Any

from revoctl.core.db._probe import Probe
from revoctl.core.db._revisions import migration_status
from revoctl.core.db.settings import DatabaseConfig
from revoctl.core.errors import RevoctlError
from revoctl.core.redaction import redact


def health_report(backend: str, pool: dict[str, Any] | None, seen: Probe) -> dict[str, Any]:
    """``{"status", "latency_ms", "backend", "pool", "migrations", "reason"?}`` for a
    database that answered: degraded when migrations are pending (or the database is at a
    revision this revoctl does not ship) or the pool is saturated, with the reason."""
    migrations = migration_status(seen.revisions)
    reasons = []
    if migrations["pending"]:
        count = migrations["pending"]
        reasons.append(
            f"{count} migration{'s' if count > 1 else ''} pending: run 'revoctl db migrate'"
        )
    elif migrations["pending"] is None:
        reasons.append(
            f"the database is at revision {migrations['current']}, which this revoctl "
            "does not ship: upgrade revoctl"
        )
    if pool is not None and pool["saturated"]:
        reasons.append("pool saturated: every connection is checked out")
    report: dict[str, Any] = {
        "status": "degraded" if reasons else "healthy",
        "latency_ms": seen.latency_ms,
        "backend": seen.backend,
        "pool": pool,
        "migrations": migrations,
    }
    if reasons:
        report["reason"] = "; ".join(reasons)
    return report


def unhealthy_report(
    backend: str, pool: dict[str, Any] | None, error: RevoctlError
) -> dict[str, Any]:
    """The health report of a database that could not be reached (or whose URL's secret
    could not be read), the error's text redacted."""
    return {
        "status": "unhealthy",
        "latency_ms": None,
        "backend": backend,
        "pool": pool,
        "migrations": migration_status(()) | {"current": None, "pending": None},
        "error": redact(str(error)),
    }


def configured_pool(config: DatabaseConfig) -> dict[str, Any]:
    """The pool settings from the configuration, as ``db pool`` shows them."""
    return {
        "pool_size": config.pool_size,
        "max_overflow": config.max_overflow,
        "pool_timeout": config.pool_timeout,
        "pool_recycle": config.pool_recycle,
    }


def local_connections(name: str, pool: dict[str, Any] | None) -> list[dict[str, Any]]:
    """This process's own pooled connections by state, under its process ``name``."""
    if pool is None:
        return []
    counts = {"checked_out": pool["checked_out"], "idle": pool["checked_in"] or 0}
    return [
        {"application_name": name, "state": state, "count": count, "revoctl": True}
        for state, count in counts.items()
        if count
    ]


def reported_connections(instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Connections by instance and state, as each instance last reported its pool."""
    rows = []
    for report in instances:
        pool = report["pool"] or {}
        for state, count in (("checked_out", pool.get("checked_out")),
                             ("idle", pool.get("checked_in"))):  # fmt: skip
            if count:
                rows.append(
                    {
                        "application_name": report["instance"],
                        "state": state,
                        "count": count,
                        "revoctl": True,
                        "stale": report["stale"],
                    }
                )
    return rows


DRIFT_PARTS = ("limits", "breakers")
"""The parts of the configuration whose drift between instances ``db pool`` and ``health``
flag: each instance reports ``<part>_fingerprint`` (`revoctl.core.drift`)."""


def config_drift(instances: list[dict[str, Any]]) -> list[str]:
    """The live instances whose rules or breakers differ from the fleet's majority (every
    live one of a part on a tie), by name; each instance gets ``differs`` (the parts) and
    ``config_differs``. Stale instances and those that report no fingerprint are left out."""
    for report in instances:
        report["differs"], report["config_differs"] = [], False
    live = [
        i
        for i in instances
        if not i["stale"] and (i.get("details") or {}).get("limits_fingerprint")
    ]
    for part in DRIFT_PARTS:
        seen = Counter(i["details"].get(f"{part}_fingerprint") for i in live)
        if len(seen) < 2:
            continue
        (first, most), *rest = seen.most_common()
        tie = any(count == most for _, count in rest)
        for report in live:
            if tie or report["details"].get(f"{part}_fingerprint") != first:
                report["differs"].append(part)
                report["config_differs"] = True
    return [i["instance"] for i in instances if i["config_differs"]]
