"""One health report over every service: each check is cut at a deadline, the worst status wins.

The report is what `revoctl health -o json` prints and what the runtime's ``/health``
serves. Every text in it passes through the redactor here, in core, so no caller
can put a secret on stdout by printing a report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from pydantic import Field

from revoctl.core._settings import Section
from revoctl.core.redaction import redact_data

Status = Literal["healthy", "degraded", "unhealthy"]
STATUSES: tuple[Status, ...] = ("healthy", "degraded", "unhealthy")

Check = Callable[[float], Awaitable[dict[str, Any]]]
"""A service's check, given the seconds it has; returns a report with ``status``."""


class HealthConfig(Section):
    """``[health]``: how long each service's check may take before it counts as unhealthy."""

    timeout_seconds: float = Field(5, gt=0, le=300)


def worst(statuses: list[Status]) -> Status:
    """The least healthy of ``statuses`` (healthy when there are none)."""
    return max(statuses, key=STATUSES.index, default="healthy")


def at_or_past(status: Status, threshold: Status) -> bool:
    """Whether ``status`` is as bad as ``threshold`` or worse (for ``--fail-on``)."""
    return STATUSES.index(status) >= STATUSES.index(threshold)


async def gather_health(checks: Mapping[str, Check], timeout: float) -> dict[str, Any]:
    """Run every check concurrently, each cut at ``timeout`` seconds.

    A check that raises or runs out of time reports ``unhealthy`` with the reason.
    """

    async def bounded(check: Check) -> dict[str, Any]:
        try:
            async with asyncio.timeout(timeout):
                return await check(timeout)
        except TimeoutError:
            return {"status": "unhealthy", "error": f"no answer within {timeout:g}s"}
        except Exception as exc:
            return {"status": "unhealthy", "error": f"{type(exc).__name__}: {exc}"}

    results = await asyncio.gather(*(bounded(check) for check in checks.values()))
    services = dict(zip(checks, results, strict=True))
    report = {"status": worst([s["status"] for s in services.values()]), "services": services}
    redacted: dict[str, Any] = redact_data(report)
    return redacted
