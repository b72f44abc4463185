"""This instance as the fleet sees it: its report, its readiness, its system samples.

Every `INSTANCE_REPORT_SECONDS` (and at once on start) the instance writes its row in
``runtime_instances`` (its pool, for ``revoctl db pool``), under the process name every
store knows it by (`revoctl.core._process.process_name`); once a minute its CPU and memory
go to ``system_metrics``, with the host's (and the GPUs', where NVML is present); its
``details`` carry the fingerprints of its configuration (`revoctl.core.drift`), for
``db pool`` and ``health`` to flag drift. Every ``[retention] interval_seconds`` it prunes
the log tables (`retain`). Readiness (``/health/ready``) is answered from memory.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from revoctl import __version__
from revoctl.core._process import Role, process_name
from revoctl.core.drift import fingerprints

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from revoctl.core.services import Services
    from revoctl.runtime.keys import KeyRing
    from revoctl.runtime.metrics import GatewayMetrics

INSTANCE_REPORT_SECONDS = 5.0
SYSTEM_SAMPLE_SECONDS = 60.0


class Instance:
    """This process's name, start time and readiness, and its report to the fleet."""

    def __init__(self, services: Services, metrics: GatewayMetrics) -> None:
        self.services = services
        self.metrics = metrics
        self.name = process_name(Role.RUNTIME)
        self.started_at = datetime.now(UTC)
        self.ready = False
        """Set once started, cleared as it stops."""
        self.details = {"version": __version__, "pid": os.getpid()} | fingerprints(
            services.settings
        )
        """What the report says besides the pool: version, pid, configuration fingerprints."""

    async def report(self) -> None:
        """This instance's row in ``runtime_instances``: its pool, for ``revoctl db pool``;
        and once a minute its CPU and memory into ``system_metrics``."""
        from revoctl.core.db.models import RuntimeInstance, SystemMetrics

        db = self.services.db
        now = datetime.now(UTC)
        sample = (now - self.started_at).total_seconds() % SYSTEM_SAMPLE_SECONDS

        async def write(session: AsyncSession) -> None:
            await session.merge(
                RuntimeInstance(
                    instance=self.name,
                    started_at=self.started_at,
                    seen_at=now,
                    pool=db.pool_stats() or {},
                    details=self.details,
                )
            )
            if sample < INSTANCE_REPORT_SECONDS:
                process = self.metrics.sample_process()
                system = self.metrics.system_sample or self.metrics.sample_system()
                rows = {f"process_{name}": value for name, value in process.items()} | system
                for name, value in rows.items():
                    session.add(
                        SystemMetrics(
                            name=name,
                            value=value,
                            labels={"instance": self.name},
                            ts=now,
                        )
                    )

        await db.transaction(write)

    async def retain(self) -> None:
        """Apply ``[retention]`` (`revoctl.core.db.apply_retention`): delete the log tables'
        old rows, unless another instance holds the lease and is doing it."""
        from revoctl.core.db import apply_retention

        await apply_retention(self.services.db, self.services.settings.retention)

    async def rotate_secrets(self) -> None:
        """Apply ``[secrets.rotation]`` (`revoctl.core.rotation.rotate_due`), unless another
        instance holds the lease and is doing it."""
        from revoctl.core.rotation import RotationLeaseHeldError, rotate_due

        services = self.services
        config = services.settings.secrets.rotation
        with contextlib.suppress(RotationLeaseHeldError):
            await rotate_due(services.secrets, services.db, config, holder=self.name)

    def readiness(self, keys: KeyRing | None) -> dict[str, Any]:
        """Ready: started and, when keys are required, holding them (read at least once).

        The database is not asked: every instance shares it, so its outage would take every
        instance out of the load balancer at once, while each can still serve (keys are
        checked in memory, limits and breakers live in their stores, usage rows wait in the
        buffer). ``/health`` reports it; here a failing key refresh is only noted.
        """
        if not self.ready:
            return {"ready": False, "reason": "starting or stopping"}
        if keys is not None and not keys.loaded:
            return {"ready": False, "reason": f"gateway keys not read yet: {keys.last_error}"}
        if keys is not None and keys.last_error:
            return {"ready": True, "note": f"serving the keys last read: {keys.last_error}"}
        return {"ready": True}
