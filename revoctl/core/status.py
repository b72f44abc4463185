"""`fleet_status`: the fleet as ``GET /status`` shows it, from the calls the CLI makes.

Each section is what an operator's command prints, gathered through the same component:

- ``breakers``: ``revoctl breakers status`` (the shared store's records and every process's
  last report), each with ``seconds_in_state`` since its last change;
- ``rules``: each configured rule with its busiest keys, read as ``revoctl limits inspect``
  reads them (consuming nothing): the keys with the least left, at most ``busiest`` of them;
- ``pools``: ``revoctl db pool`` (the configured pool, the live connections, every runtime
  instance's report of its pool, with ``config_differs`` where ``db pool`` flags a drifting
  configuration; every key of a report passes through untouched);
- ``secrets``: `SecretManager.serving_state` (the provider, the fallback, the cache, whether
  reads are answered stale or from the fallback): no store is asked;
- ``spend``: ``revoctl keys list``'s keys that have a budget, with the fraction spent;
- ``recent``: the latest ``request_logs`` rows of the last `RECENT_WINDOW` that were refused
  (any status but 200) and those a fallback answered (the usage row names another model
  than the request did).

A section that fails (its back end away, or slower than `SECTION_SECONDS`) is
``{"error": "..."}`` (redacted) and the others still show: the page must work best when
something is broken. Cost: one store read for the breakers, one ``limits inspect`` per rule
(a store round trip per tracked key), one connection for the pool view, two indexed queries
for the recent rows; the runtime polls the breakers often and the rest seldom
(`FAST_SECTIONS`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from revoctl.core.errors import first_line
from revoctl.core.redaction import redact

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.services import Services

SECTIONS = ("breakers", "rules", "pools", "secrets", "spend", "recent")
FAST_SECTIONS = ("breakers",)
"""What changes under an operator's hand (a trip): worth polling often."""
SECTION_SECONDS = 5.0
"""The most one section may take; past it, it is reported as an error."""
BUSIEST_KEYS = 5
RECENT_ROWS = 20
RECENT_WINDOW = timedelta(hours=1)
"""How far back the recent refusals and fallbacks are looked for (the ``ts`` index)."""


async def fleet_status(
    services: Services,
    sections: Sequence[str] = SECTIONS,
    *,
    busiest: int = BUSIEST_KEYS,
    recent: int = RECENT_ROWS,
) -> dict[str, Any]:
    """``{"generated_at", <section>: {...}, ...}`` for each of ``sections`` (see the
    module docstring), gathered at once; a failed section is ``{"error"}``.

    :raises ValueError: a section not in `SECTIONS`.
    """
    makers: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "breakers": lambda: breakers_section(services),
        "rules": lambda: rules_section(services, busiest),
        "pools": lambda: pools_section(services),
        "secrets": lambda: secrets_section(services),
        "spend": lambda: spend_section(services),
        "recent": lambda: recent_section(services, recent),
    }
    unknown = [name for name in sections if name not in makers]
    if unknown:
        raise ValueError(f"unknown status section(s): {', '.join(unknown)}")
    found = await asyncio.gather(*(_guarded(makers[name]) for name in sections))
    now = datetime.now(UTC).isoformat()
    return {"generated_at": now, **dict(zip(sections, found, strict=True))}


async def _guarded(make: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    try:
        async with asyncio.timeout(SECTION_SECONDS):
            return await make()
    except TimeoutError:
        return {"error": f"no answer within {SECTION_SECONDS:g}s"}
    except Exception as exc:  # one section's failure must not blank the page
        return {"error": redact(f"{type(exc).__name__}: {first_line(exc)}")}


async def breakers_section(services: Services) -> dict[str, Any]:
    """``breakers status``, each item with ``seconds_in_state``."""
    items = await services.breakers.status()
    now = datetime.now(UTC)
    return {"items": [_with_time_in_state(item, now) for item in items]}


def _with_time_in_state(item: dict[str, Any], now: datetime) -> dict[str, Any]:
    changed = item.get("changed_at")
    seconds = None
    if changed:
        seconds = round(max(0.0, (now - datetime.fromisoformat(changed)).total_seconds()), 3)
    fleet = [
        {key: entry.get(key) for key in ("process", "role", "state", "reported_at", "stale")}
        for entry in item.get("fleet", [])
    ]
    keep = ("name", "state", "forced", "reason", "opened_at", "until", "actor", "changed_at")
    return {
        **{key: item.get(key) for key in keep},
        "seconds_in_state": seconds,
        "failure_count": item.get("failure_count"),
        "processes": item.get("processes"),
        "open_processes": item.get("open_processes"),
        "fleet": fleet,
    }


async def rules_section(services: Services, busiest: int = BUSIEST_KEYS) -> dict[str, Any]:
    """Each configured rule and its ``busiest`` keys (least left first), as ``limits
    inspect RULE`` reads them."""
    rules = list(services.settings.limits.rules)
    inspected = await asyncio.gather(*(services.limiter.inspect(rule.name) for rule in rules))
    items = []
    for rule, states in zip(rules, inspected, strict=True):
        ranked = sorted(states, key=lambda s: (s.remaining / s.limit if s.limit else 1.0, s.key))
        items.append(
            {
                "name": rule.name,
                "algorithm": rule.algorithm.value,
                "scope": rule.scope.value,
                "requests": rule.requests,
                "window_seconds": rule.window_seconds,
                "limit": rule.capacity,
                "keys_tracked": len(states),
                "busiest": [
                    {
                        "key": s.key,
                        "limit": s.limit,
                        "remaining": s.remaining,
                        "used": max(0, s.limit - s.remaining),
                        "reset_after": s.reset_after,
                    }
                    for s in ranked[:busiest]
                ],
            }
        )
    return {"items": items}


async def pools_section(services: Services) -> dict[str, Any]:
    """``db pool``: the configured pool, the connections, each instance's report."""
    report = await services.db.pool_report()
    keep = ("backend", "configured", "instances", "connections", "config_drift")
    return {key: report[key] for key in keep if key in report}


async def secrets_section(services: Services) -> dict[str, Any]:
    """`SecretManager.serving_state`: no store is asked."""
    return services.secrets.serving_state()


async def spend_section(services: Services) -> dict[str, Any]:
    """``keys list``'s keys with a budget: spend, budget, the fraction spent, the reset."""
    items = []
    for entry in await services.accounts.list_keys():
        budget = entry.get("budget") or 0
        if not budget or entry.get("revoked"):
            continue
        spend = entry.get("spend") or 0
        items.append(
            {
                "name": entry["name"],
                "tier": entry.get("tier"),
                "spend": spend,
                "budget": budget,
                "fraction": round(spend / budget, 4),
                "resets_at": entry.get("budget_resets_at"),
            }
        )
    items.sort(key=lambda item: (-item["fraction"], item["name"]))
    return {"items": items}


async def recent_section(services: Services, limit: int = RECENT_ROWS) -> dict[str, Any]:
    """The latest refused requests and fallbacks of the last `RECENT_WINDOW`, newest first."""
    from sqlalchemy import select

    from revoctl.core.db.models import ModelUsage, RequestLog

    since = datetime.now(UTC) - RECENT_WINDOW

    async def read(session: AsyncSession) -> dict[str, Any]:
        refused = await session.execute(
            select(RequestLog)
            .where(RequestLog.ts >= since, RequestLog.status_code != 200)
            .order_by(RequestLog.id.desc())
            .limit(limit)
        )
        fell_back = await session.execute(
            select(RequestLog, ModelUsage.model)
            .join(ModelUsage, ModelUsage.request_id == RequestLog.request_id)
            .where(
                RequestLog.ts >= since,
                RequestLog.model.is_not(None),
                ModelUsage.model != RequestLog.model,
            )
            .order_by(RequestLog.id.desc())
            .limit(limit)
        )
        return {
            "since": since.isoformat(),
            "refusals": [_row(row) for row in refused.scalars()],
            "fallbacks": [_row(row) | {"served_by": model} for row, model in fell_back.all()],
        }

    return await services.db.transaction(read)


def _row(row: Any) -> dict[str, Any]:
    ts = row.ts if row.ts.tzinfo else row.ts.replace(tzinfo=UTC)
    return {
        "at": ts.isoformat(),
        "status": row.status_code,
        "code": row.error_code,
        "method": row.method,
        "path": row.path,
        "model": row.model,
        "key": row.api_key_id,
        "request_id": row.request_id,
    }
