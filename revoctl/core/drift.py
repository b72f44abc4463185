"""Configuration drift: fingerprints of an instance's effective configuration, and the
instances of the fleet whose rules or breakers differ from the others'.

A fingerprint is the SHA-256 of the canonical JSON (keys sorted, no spaces) of a part of
the settings, so two instances with the same configuration, written in any order, agree.
Three per instance, in its ``runtime_instances`` report (``details``):

- ``config_fingerprint``: the whole configuration minus its secrets: a key that names a
  secret (``api_key``, ``admin_key``, ``password``, ...) is left out, and what looks like
  one in a value (a URL's password, a token) is masked, so neither a secret nor its change
  shows;
- ``limits_fingerprint``: the rate-limit rules (by name, in any order), their store, key
  prefix and failure mode: two instances that define one rule differently each count
  against their own limit, and the limit silently stops being exact;
- ``breakers_fingerprint``: the breakers' defaults and overrides, their store and prefix.

`fleet_drift` reads every live instance's report; `revoctl.core.db._reports.config_drift`
names those that differ from the majority (all of them on a tie). Costs one hash of a few
kilobytes at start-up and one small read per health check.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from revoctl.core.db._reports import DRIFT_PARTS, config_drift
from revoctl.core.redaction import SECRET_KEY, redact_data

if TYPE_CHECKING:
    from revoctl.core.db import DatabaseManager

__all__ = ["apply_drift", "canonical", "fingerprints", "fleet_drift"]

_KEY = re.compile(r"(?i)(?:^|_)key$")
"""A key that holds a key (``admin_key``), beside the names `SECRET_KEY` knows."""
_REPORTS = "SELECT instance, seen_at, details FROM runtime_instances"


def canonical(data: Any) -> str:
    """``data`` as canonical JSON: keys sorted, no spaces, non-JSON values as text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _digest(data: Any) -> str:
    return hashlib.sha256(canonical(data).encode()).hexdigest()


def _without_secrets(data: Any) -> Any:
    """``data`` without the keys that name secrets, and secret-looking text masked."""
    if isinstance(data, dict):
        return {
            key: _without_secrets(value)
            for key, value in data.items()
            if not (SECRET_KEY.search(str(key)) or _KEY.search(str(key)))
        }
    if isinstance(data, list):
        return [_without_secrets(item) for item in data]
    return redact_data(data)


def _parts(settings: Any) -> dict[str, Any]:
    """The settings as JSON, the rules sorted by name, split into the three fingerprinted parts."""
    whole = settings.model_dump(mode="json")
    limits = whole["limits"]
    limits["rules"] = sorted(limits["rules"], key=lambda rule: rule["name"])
    breakers = whole["breakers"]
    return {
        "config": _without_secrets(whole),
        "limits": {k: limits[k] for k in ("rules", "store", "key_prefix", "failure_mode")},
        "breakers": {k: breakers[k] for k in ("defaults", "services", "store", "key_prefix")},
    }


def fingerprints(settings: Any) -> dict[str, str]:
    """``{"config_fingerprint", "limits_fingerprint", "breakers_fingerprint"}`` of
    ``settings`` (the composed `Settings`: anything with ``model_dump`` and ``limits`` and
    ``breakers`` tables)."""
    return {f"{part}_fingerprint": _digest(data) for part, data in _parts(settings).items()}


async def fleet_drift(db: DatabaseManager) -> dict[str, list[str]]:
    """``{"limits": [...], "breakers": [...]}``: the live instances (by name) whose rules or
    breakers differ from the fleet's majority; empty lists when they agree, when fewer than
    two report, or when the table is missing.

    :raises BackendUnavailableError: the database cannot be reached.
    """
    from revoctl.core.db._errors import is_missing_table
    from revoctl.core.db._probe import INSTANCE_STALE_SECONDS, _utc

    try:
        (rows,) = await db.read(_REPORTS)
    except Exception as exc:
        if is_missing_table(exc):
            return {part: [] for part in DRIFT_PARTS}
        raise
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    instances = [
        {
            "instance": row["instance"],
            "stale": (now - _utc(row["seen_at"])).total_seconds() > INSTANCE_STALE_SECONDS,
            "details": json.loads(row["details"])
            if isinstance(row["details"], str)
            else row["details"],
        }
        for row in rows
    ]
    config_drift(instances)
    return {
        part: [i["instance"] for i in instances if part in i["differs"]] for part in DRIFT_PARTS
    }


HEALTH_KEYS = {"limits": "rate_limiter", "breakers": "circuit_breakers"}


def apply_drift(report: dict[str, Any], drift: dict[str, list[str]]) -> dict[str, Any]:
    """The health document with ``rate_limiter`` / ``circuit_breakers`` degraded (at least)
    when instances define them differently: a ``reason`` and the ``config_drift`` list."""
    from revoctl.core.health import worst

    services = report["services"]
    for part, key in HEALTH_KEYS.items():
        entry = services.get(key)
        if entry is None or not drift.get(part):
            continue
        names = drift[part]
        entry["status"] = worst([entry["status"], "degraded"])
        reason = (
            f"configuration drift: {len(names)} instance(s) define the {part} differently "
            f"from the others ({', '.join(names)})"
        )
        entry["reason"] = f"{entry['reason']}; {reason}" if entry.get("reason") else reason
        entry["config_drift"] = names
    report["status"] = worst([entry["status"] for entry in services.values()])
    return report
