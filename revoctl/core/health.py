"""One health report over every service: each reports a status, the worst one wins."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any, Literal

Status = Literal["healthy", "degraded", "unhealthy"]
STATUSES: tuple[Status, ...] = ("healthy", "degraded", "unhealthy")


def worst(statuses: list[Status]) -> Status:
    """The least healthy of ``statuses`` (healthy when there are none)."""
    return max(statuses, key=STATUSES.index, default="healthy")


def at_or_past(status: Status, threshold: Status) -> bool:
    """Whether ``status`` is as bad as ``threshold`` or worse (for ``--fail-on``)."""
    return STATUSES.index(status) >= STATUSES.index(threshold)


async def gather_health(checks: Mapping[str, Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run every service's check concurrently; a check that raises reports unhealthy."""
    names = list(checks)
    results = await asyncio.gather(*checks.values(), return_exceptions=True)
    services: dict[str, Any] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            result = {"status": "unhealthy", "error": f"{type(result).__name__}: {result}"}
        services[name] = result
    return {"status": worst([s["status"] for s in services.values()]), "services": services}
