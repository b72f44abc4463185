"""`Exchange`: one chat (or embeddings) request on its way through the gateway, as the route
carries it.

It holds what the request asks (checked, `revoctl.runtime.bodies`), who asks
(`revoctl.runtime.identity`), what it was charged (`revoctl.runtime.charging`), which
model answered (`revoctl.runtime.routing`) and how long the providers took, so that its
settlement and its row (`revoctl.runtime.usage`) know all of it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from revoctl.runtime.charges import Charge

if TYPE_CHECKING:
    from revoctl.runtime.identity import Caller
    from revoctl.runtime.providers import ChatRequest


@dataclass
class Exchange:
    """One request on its way through: what it asks, who asks, what it was charged."""

    model: str
    request: ChatRequest
    caller: Caller
    route: str
    request_id: str
    started: float
    charge: Charge = field(default_factory=Charge)
    embedding: bool = False
    """An embeddings request (``input``, no ``messages`` nor output tokens), not a chat one."""
    served_by: str | None = None
    deployment: str | None = None
    """The name of the deployment of ``served_by`` that answered (`revoctl.runtime.routing`)."""
    provider: str | None = None
    """The provider of that deployment."""
    retries: int = 0
    """Further attempts made on a model's deployments after a failed one."""
    provider_seconds: float = 0.0
    settled: bool = False
    """Whether its settlement (charge and row) has begun: it happens once (`Gateway.settle`)."""

    def overhead_ms(self) -> float:
        """The gateway's own time so far: all of it but the wait for the provider."""
        return round((time.perf_counter() - self.started - self.provider_seconds) * 1000, 3)

    def headers(self) -> dict[str, str]:
        """The rate-limit headers of every charged rule and the gateway's own time."""
        headers = dict(self.charge.headers())
        headers["x-revoctl-overhead-ms"] = str(self.overhead_ms())
        return headers
