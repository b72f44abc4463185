"""The gateway's settings, as the runtime's modules name them; defined in
`revoctl.core.gateway.settings` so the configuration loads them without the runtime."""

from __future__ import annotations

from revoctl.core.gateway.settings import GatewayConfig, ModelConfig, ProviderConfig, ProviderKind

__all__ = ["GatewayConfig", "ModelConfig", "ProviderConfig", "ProviderKind"]
