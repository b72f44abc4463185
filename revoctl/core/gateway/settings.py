"""The gateway's settings: ``[gateway]``, ``[providers.NAME]`` and ``[models.NAME]``."""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from revoctl.core._settings import Section

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"

CLOSE_SECONDS_MAX = 5.0
"""The most of ``gateway.drain_seconds`` kept for the close after the requests in flight."""


class GatewayConfig(Section):
    """``[gateway]``: who may call, and what each request is charged."""

    auth: Literal["keys", "none"] = "keys"
    default_max_tokens: int = Field(1024, ge=1, le=1_000_000)
    request_rule: str = ""
    token_rule: str = ""
    keys_refresh_seconds: float = Field(0.5, gt=0, le=60)
    """How often each instance re-reads revoked keys: a revocation takes effect within it."""
    usage_buffer: int = Field(10_000, ge=1, le=1_000_000)
    """Usage rows held while the database is away; what overflows is counted and dropped."""
    drain_seconds: float = Field(30.0, gt=0, le=3600)
    """On SIGTERM, the most time the whole shutdown takes: the requests in flight get it
    less `close_seconds`, the usage flush and the services' close get the rest."""

    trusted_proxies: tuple[str, ...] = ()
    """Addresses or CIDRs of the proxies whose ``X-Forwarded-For`` / ``Forwarded`` is
    believed (`revoctl.runtime.client_address`); () = the TCP peer is the client."""

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """A string (``REVOCTL_GATEWAY__TRUSTED_PROXIES``, ``--set``) is a comma-separated list."""
        if isinstance(value, str):
            return tuple(entry.strip() for entry in value.split(",") if entry.strip())
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses_or_cidrs(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        for entry in entries:
            trusted_network(entry)
        return entries

    def trusted_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        """``trusted_proxies`` as networks (an address alone is a network of one)."""
        return tuple(trusted_network(entry) for entry in self.trusted_proxies)

    def close_seconds(self) -> float:
        """The part of ``drain_seconds`` kept for the close: a quarter, at most 5 s."""
        return min(CLOSE_SECONDS_MAX, self.drain_seconds / 4)

    def request_drain_seconds(self) -> float:
        """How long requests in flight may still run after SIGTERM before they are cut."""
        return self.drain_seconds - self.close_seconds()


def trusted_network(entry: str) -> IPv4Network | IPv6Network:
    """One ``trusted_proxies`` entry as a network.

    :raises ValueError: it is neither an address nor a CIDR, or a CIDR with host bits set.
    """
    try:
        return ip_network(entry)
    except ValueError:
        pass
    try:
        meant = ip_network(entry, strict=False)
    except ValueError:
        raise ValueError(
            f"{entry!r} is neither an IP address nor a CIDR (e.g. 10.0.0.0/8)"
        ) from None
    raise ValueError(f"{entry!r} has host bits set: {meant}?")


class ProviderKind(StrEnum):
    """The API a provider speaks."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


DEFAULT_BASE_URLS = {
    ProviderKind.OPENAI: "https://api.openai.com/v1",
    ProviderKind.ANTHROPIC: "https://api.anthropic.com",
}


class ProviderConfig(Section):
    """``[providers.NAME]``: one upstream API, its key, the breaker that guards it."""

    kind: ProviderKind = ProviderKind.OPENAI
    base_url: str = DEFAULT_BASE_URLS[ProviderKind.OPENAI]
    """Defaults to the kind's own API: ``kind = "anthropic"`` alone means Anthropic's."""
    api_key: str = ""
    breaker: str = ""
    timeout: float = Field(60.0, gt=0, le=3600)
    max_connections: int = Field(100, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _kind_default_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "base_url" not in data and "kind" in data:
            try:
                return {**data, "base_url": DEFAULT_BASE_URLS[ProviderKind(data["kind"])]}
            except ValueError:  # an unknown kind: the field's own error says so
                return data
        return data

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return url.rstrip("/")


class ModelConfig(Section):
    """``[models.NAME]``: which provider serves a model, its upstream name, prices, fallbacks."""

    provider: str
    upstream: str = ""
    input_cost_per_1k: float = Field(0.0, ge=0, le=1000)
    output_cost_per_1k: float = Field(0.0, ge=0, le=1000)
    fallbacks: tuple[str, ...] = ()
    request_rule: str = ""
    """A ``[[limits.rules]]`` name charged 1 per request to this model, per caller and model,
    on top of ``gateway.request_rule``; "" = none."""
    token_rule: str = ""
    """Likewise in tokens, on top of ``gateway.token_rule``."""

    def upstream_name(self, name: str) -> str:
        """The provider's own name for the model called ``name`` here."""
        return self.upstream or name
